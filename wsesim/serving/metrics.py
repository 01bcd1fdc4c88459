"""Serving metrics as vLLM's benchmark defines them, from what a run recorded.

Per request: TTFT = first token - arrival; end-to-end latency (e2e) = last token -
arrival; TPOT = (e2e - TTFT) / (output tokens - 1), for requests of more than one output
token; ITL = every gap between two consecutive tokens of a request, all requests pooled.
Each is summarized by its mean and its 50th, 90th and 99th percentiles
(``numpy.percentile``, linear interpolation). Throughputs count completed requests and
their output tokens over the duration, from the first arrival to the last token.
Goodput counts the requests meeting every SLO given (TTFT and TPOT); SLO attainment is
their share of all requests (a rejected request misses). Concurrency is the number of
admitted, unfinished requests (their KV cache is in SRAM), averaged over the duration.
Energy is every system's wall power for the whole duration (an upper bound: idle time
and the profile's maximum power included) per output token; cost the same with a
price per system-hour.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from wsesim.serving.engine import ServingRun

PERCENTILES = (50, 90, 99)
SECONDS_PER_HOUR = 3600.0


def distribution(values: np.ndarray) -> dict[str, float | None]:
    """Mean and 50th, 90th, 99th percentiles (None for no values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    out: dict[str, float | None] = {"mean": float(np.mean(v))}
    for p, x in zip(PERCENTILES, np.percentile(v, PERCENTILES)):
        out[f"p{p}"] = float(x)
    return out


def _time_average(times: np.ndarray, values: np.ndarray, start: float, end: float
                  ) -> float:
    """Average over [start, end] of a step function that takes ``values[j]`` from
    ``times[j]`` on."""
    if end <= start:
        return 0.0
    t = np.clip(np.append(times, end), start, end)
    return float(np.sum(values * np.diff(t)) / (end - start))


def per_request(run: ServingRun, hz: float) -> dict[str, np.ndarray]:
    """Each request's TTFT, TPOT, e2e and queueing time in seconds (NaN when it did not
    happen: not completed; TPOT of a one-token output)."""
    ttft = (run.first_token - run.arrival) / hz
    e2e = (run.finished - run.arrival) / hz
    steps = run.output_tokens - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(steps > 0, (e2e - ttft) / np.maximum(steps, 1), np.nan)
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e,
            "queue_s": (run.admitted - run.arrival) / hz}


def meets_slos(req: dict[str, np.ndarray], slo_ttft_s: float | None,
               slo_tpot_s: float | None) -> np.ndarray:
    """Requests that completed within every SLO given (a one-token output has no TPOT
    to miss)."""
    ok = np.isfinite(req["e2e_s"])
    if slo_ttft_s is not None:
        ok &= req["ttft_s"] <= slo_ttft_s
    if slo_tpot_s is not None:
        ok &= ~(req["tpot_s"] > slo_tpot_s)
    return ok


def run_span(run: ServingRun) -> tuple[float, float]:
    """The cycles the run's duration spans: from the first arrival to the last token out
    (to the first arrival when no request finished)."""
    done = np.isfinite(run.finished)
    start = float(np.min(run.arrival)) if len(run.arrival) else 0.0
    end = float(np.max(run.finished[done])) if done.any() else start
    return start, end


def summarize(run: ServingRun, hz: float, rate_per_s: float | None,
              slo_ttft_s: float | None, slo_tpot_s: float | None, wafers: int,
              power_w: float | None, price_per_system_hour: float | None
              ) -> dict[str, Any]:
    """The contract's serving keys (and a few more) of one run."""
    req = per_request(run, hz)
    done = np.isfinite(run.finished)
    start, end = run_span(run)
    duration = (end - start) / hz
    out_tokens = int(run.output_tokens[done].sum())

    def per_second(x: float) -> float | None:
        return x / duration if duration > 0 else None

    good = meets_slos(req, slo_ttft_s, slo_tpot_s)
    any_slo = slo_ttft_s is not None or slo_tpot_s is not None
    times, running, waiting, kv_share = run.timeline
    energy = (power_w * wafers * duration / out_tokens
              if power_w is not None and out_tokens else None)
    cost = (price_per_system_hour * wafers * duration / SECONDS_PER_HOUR / out_tokens * 1e6
            if price_per_system_hour is not None and out_tokens else None)
    n = len(run.arrival)
    return {
        "requests": n,
        "completed": int(done.sum()),
        "rejected": int(run.rejected.sum()),
        "rate_per_s": rate_per_s if rate_per_s is not None and math.isfinite(rate_per_s)
        else None,
        "duration_s": duration,
        "throughput_tokens_per_s": per_second(out_tokens),
        "request_throughput_per_s": per_second(int(done.sum())),
        "output_tokens": out_tokens,
        "prompt_tokens": int(run.prompt_tokens[done].sum()),
        "ttft_s": distribution(req["ttft_s"]),
        "tpot_s": distribution(req["tpot_s"]),
        "itl_s": distribution(run.itl / hz),
        "e2e_s": distribution(req["e2e_s"]),
        "queue_s": distribution(req["queue_s"]),
        "slo_ttft_s": slo_ttft_s,
        "slo_tpot_s": slo_tpot_s,
        "goodput_requests_per_s": per_second(int(good.sum())) if any_slo else None,
        "slo_attainment": float(good.sum() / n) if any_slo and n else None,
        "mean_concurrent": _time_average(times, running, start, end),
        "max_concurrent": int(np.max(running)) if len(running) else 0,
        "mean_waiting": _time_average(times, waiting, start, end),
        "max_waiting": int(np.max(waiting)) if len(waiting) else 0,
        "kv_occupancy": {"mean": _time_average(times, kv_share, start, end),
                         "max": float(np.max(kv_share)) if len(kv_share) else 0.0},
        "micro_batches": run.micro_batches,
        "mean_stage_batch": (run.decode_tokens / run.decode_batches
                             if run.decode_batches else None),
        "prompt_chunks": run.chunks,
        "events": run.events,
        "wafers": wafers,
        "system_power_w": power_w,
        "energy_j_per_output_token": energy,
        "price_per_system_hour": price_per_system_hour,
        "cost_per_million_output_tokens": cost,
    }
