"""Capacity: the largest request rate a deployment serves within its SLOs.

A rate meets the SLOs when every request completes (none is too long for SRAM), the
p99 TTFT is within ``slo_ttft_s`` and the p99 TPOT within ``slo_tpot_s`` (those given).
Without a TTFT SLO, a rate whose requests queue for admission more than
``MAX_QUEUE_S`` at the 99th percentile does not count either (the scheduling-delay bound
of Vidur-Search): the stream is not sustained, however short its tokens come.

The same requests are replayed at every rate (their arrival pattern scaled), so the
answer moves with the rate alone. No rate above what the deployment can sustain at most
counts (its busiest element serving full micro-batches, or its KV cache holding
requests for their unloaded time): a finite run beyond it only looks sustained. The
search starts there, brackets the capacity between a rate that meets the SLOs and one
that does not, then bisects (in log space) to ``TOLERANCE``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wsesim.errors import KeyedError
from wsesim.serving.arrivals import Pattern
from wsesim.serving.service import Served, Study, serve

TOLERANCE = 0.02        # relative width of the final bracket
MAX_RUNS = 24           # serving runs one search may take
MAX_QUEUE_S = 5.0       # p99 wait for admission when no TTFT SLO is given


@dataclass
class Capacity:
    """The capacity found and every rate tried."""

    requests_per_s: float | None      # None: not even the lowest rate tried meets
    points: list[dict[str, Any]]      # rate, meets, p50/p90/p99 of TTFT, TPOT, e2e
    at_capacity: Served | None        # the run at the capacity
    bound_per_s: float                # what the pipeline and the KV cache sustain at most
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"requests_per_s": self.requests_per_s, "bound_requests_per_s":
                self.bound_per_s, "tolerance": TOLERANCE,
                "max_queue_s": MAX_QUEUE_S, "points": self.points, "notes": self.notes}


def _check(summary: dict[str, Any], slo_ttft_s: float | None, slo_tpot_s: float | None
           ) -> bool:
    if summary["completed"] < summary["requests"]:
        return False
    p99 = {k: summary[k]["p99"] for k in ("ttft_s", "tpot_s", "queue_s")}
    if slo_ttft_s is not None and (p99["ttft_s"] is None or p99["ttft_s"] > slo_ttft_s):
        return False
    if slo_tpot_s is not None and p99["tpot_s"] is not None and p99["tpot_s"] > slo_tpot_s:
        return False
    if slo_ttft_s is None and p99["queue_s"] is not None and p99["queue_s"] > MAX_QUEUE_S:
        return False
    return True


def sustainable_rate(study: Study) -> float:
    """An upper bound on the requests per second the deployment can sustain: its
    busiest element serving a mean request's chunks and its decode tokens in full
    micro-batches, and its KV slots holding as many mean requests as fit for their
    unloaded time in the pipeline."""
    pat, costs = study.pattern, study.costs
    prompt = int(round(float(np.mean(pat.prompt_tokens))))
    output = int(round(float(np.mean(pat.output_tokens))))
    chunk = study.chunk_tokens or prompt
    occ = np.zeros(costs.size)
    pos = 0
    while pos < prompt:
        t = min(chunk, prompt - pos)
        occ += costs.chunk(t, pos + t, pos + t == prompt)[0]
        pos += t
    b = study.spec.max_stage_batch
    occ += (output - 1) / b * costs.decode(np.full(b, prompt + output // 2))[0]
    by_pipeline = study.clock_hz / float(np.max(occ))
    e2e = _unloaded(study)["e2e_s"]["mean"] or math.inf
    need = study.kv.need(study.kv_tokens(np.array([prompt + output])))[0]
    fit = int(np.min(study.kv.slots // np.maximum(need, 1))) if len(need) else 0
    return min(by_pipeline, fit / e2e)   # 0 when not even one request fits


def _unloaded(study: Study) -> dict[str, Any]:
    """One mean request alone through the pipeline."""
    pat = study.pattern
    one = Pattern(np.zeros(1), np.array([int(round(float(np.mean(pat.prompt_tokens))))]),
                  np.array([int(round(float(np.mean(pat.output_tokens))))]), 1.0, "one")
    return serve(replace(study, pattern=one), 1.0).summary


def find_capacity(study: Study) -> Capacity:
    """The largest rate whose p99 TTFT and TPOT meet the study's SLOs."""
    spec = study.spec
    if spec.slo_ttft_s is None and spec.slo_tpot_s is None:
        raise KeyedError("serving.slo_tpot_s", "a capacity needs an SLO to meet: "
                         "slo_ttft_s or slo_tpot_s (--slo-ttft, --slo-tpot)")
    if not math.isfinite(study.pattern.rate_per_s):
        raise KeyedError("serving.arrivals_file", "the file's requests all arrive at "
                         "once: there is no rate to vary")
    points: list[dict[str, Any]] = []
    runs: dict[float, Served] = {}

    def meets(rate: float) -> bool:
        served = serve(study, rate)
        s = served.summary
        ok = _check(s, spec.slo_ttft_s, spec.slo_tpot_s)
        runs[rate] = served
        points.append({"rate_per_s": rate, "meets": ok,
                       **{k: s[k] for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s")},
                       "completed": s["completed"], "requests": s["requests"],
                       "throughput_tokens_per_s": s["throughput_tokens_per_s"]})
        return ok

    notes: list[str] = []
    bound = sustainable_rate(study)
    if bound <= 0:
        return Capacity(None, points, None, 0.0, ["not even one request of the mean "
                                                  "length fits in the KV cache"])
    hi = bound
    if meets(hi):   # a finite run above the bound only looks sustained
        notes.append(f"the SLOs hold up to {hi:.4g} requests/s, what the deployment "
                     "can sustain at most (its busiest element with full micro-batches, "
                     "or its KV cache for one request's unloaded time): the capacity "
                     "is that bound")
        return Capacity(hi, _sorted(points), runs[hi], bound, notes)
    lo = hi / 4
    while not meets(lo):
        hi = lo
        if len(runs) >= MAX_RUNS // 2:
            notes.append(f"even {lo:.4g} requests/s misses the SLOs (the latency of "
                         "a lightly loaded pipeline exceeds them)")
            return Capacity(None, _sorted(points), None, bound, notes)
        lo /= 8
    while hi / lo > 1 + TOLERANCE and len(runs) < MAX_RUNS:
        mid = math.sqrt(lo * hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return Capacity(lo, _sorted(points), runs[lo], bound, notes)


def _sorted(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(points, key=lambda p: p["rate_per_s"])
