"""A serving study's answer: one JSON object (the contract's ``serving`` keys), a text
report with units, and a Chrome trace of the run, bounded in size."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from wsesim import __version__, strict_json
from wsesim.literal import printable
from wsesim.serving.capacity import MAX_QUEUE_S, Capacity
from wsesim.serving.engine import TRACE_MICRO_BATCHES, TRACE_REQUESTS
from wsesim.serving.service import Served, Study
from wsesim.strict_json import finite_only
from wsesim.trace import element_events, write_json

ASSUMPTIONS = (
    "Arrivals: the requests and their arrival times are a model (a Poisson, gamma or "
    "evenly spaced stream, or a file), replayed exactly; the first arrives at time 0.",
    "Admission is first come first served by KV capacity: a request is admitted when "
    "the KV cache of its whole sequence (prompt plus output, or the sliding window) fits "
    "in the token slots left in every attention region, and holds them until its last "
    "token. No preemption: when SRAM is full, requests wait.",
    "Micro-batches: one prompt chunk, or the next token of up to max_stage_batch "
    "sequences, alternating when both wait. A micro-batch enters the pipeline when it "
    "would pass every element without waiting (held at the entry while tokens of running "
    "sequences are in flight); every element serves micro-batches first in first out, "
    "so a decode token behind a prompt chunk follows it through every stage.",
    "Batching b decode tokens at a stage costs the closed forms at b tokens (weights "
    "read and dequantized once where that is cheaper than b matrix-vector products); "
    "each sequence's attention to its own KV cache is done one sequence after another. "
    "Activation buffers for max_stage_batch tokens are reserved on every PE before the "
    "KV cache; a prompt chunk streams through them as in wsesim run.",
    "Energy per output token = every system's wall power (the profile's maximum) x the "
    "run's duration / output tokens: an upper bound (idle time included). Cost per "
    "million output tokens uses the price per system-hour given.",
)


def answer(study: Study, served: Served, capacity: Capacity | None = None
           ) -> dict[str, Any]:
    """The JSON answer of ``wsesim serve``."""
    r = study.result
    kv = study.kv
    serving = dict(served.summary)
    out: dict[str, Any] = {
        "wsesim_version": __version__,
        "name": r.name,
        "model": {"name": r.model.name, "parameters": r.model.parameters,
                  "layers": r.model.layers},
        "hardware": {"name": r.hardware.name, "clock_hz": r.hardware.clock_hz,
                     "system_power_w": study.deployment.hardware.system_power_w},
        "wafers": r.wafers,
        "mapping": r.mapping,
        "quantization": r.quantization,
        "memory": {"fits": r.memory.fits, "max_pe_bytes": r.memory.max_pe_bytes,
                   "pe_sram_bytes": r.memory.pe_sram_bytes},
        "kv_cache": {
            "capacity_tokens": kv.tokens,
            "binding_region": kv.binding.name if kv.binding else None,
            "buffers_for_tokens": study.spec.max_stage_batch,
            "regions": [{"rows": k.rows, "slots_per_row": k.slots, "tokens": k.tokens,
                         "bytes_per_token_per_pe": k.bytes_per_token_per_pe,
                         "binding_pe": k.name} for k in kv.kinds],
        },
    }
    if capacity is not None:
        serving["capacity_requests_per_s"] = capacity.requests_per_s
        out["capacity_requests_per_s"] = capacity.requests_per_s
        out["capacity"] = capacity.to_dict()
    out["serving"] = serving
    notes = []
    mem = r.memory
    over = (f"the deployment with its workload does not fit in SRAM (its fullest PE "
            f"needs {mem.max_pe_bytes:,} of {mem.pe_sram_bytes:,} B)")
    if kv.tokens == 0 and kv.binding is not None:
        notes.append(f"no KV slot is left on {kv.binding.name} once the weights, their "
                     f"scales and zeros, buffers for {study.spec.max_stage_batch} decode "
                     "token(s) per stage and the runtime are placed: lower "
                     "serving.max_stage_batch, or use more wafers"
                     + ("" if mem.fits else f"; {over}"))
    elif not mem.fits:
        notes.append(f"{over}; serving allocates the KV cache request by request from "
                     f"the {kv.tokens:,} tokens of room left without it")
    if serving["rejected"]:
        notes.append(f"{serving['rejected']} request(s) need more KV cache than the "
                     f"whole SRAM holds ({kv.tokens:,} tokens): rejected on arrival")
    if capacity is not None:
        notes += capacity.notes
    out["notes"] = notes
    out["assumptions"] = list(ASSUMPTIONS)
    return finite_only(out)   # the text report too reads a figure never reached as None


def render_json(doc: dict[str, Any]) -> str:
    return strict_json.dumps(doc, indent=2) + "\n"


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1e3:,.2f}"


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:,.3f}"


def _num(x: float | None, fmt: str = ",.1f", unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{unit}"


def render_text(doc: dict[str, Any], width: int = 110) -> str:
    """The answer as a report with units."""
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=False, color_system=None,
                  markup=False, emoji=False, highlight=False)

    def say(text: str) -> None:
        con.print(Text(printable(text)))

    s = doc["serving"]
    kv = doc["kv_cache"]
    con.print(Text(printable(f"wsesim serve: {doc['name']}"), style="bold"))
    say(f"model      {doc['model']['name']}, {doc['model']['parameters']:,} parameters; "
        f"{doc['hardware']['name']} x {doc['wafers']} ({doc['mapping'].get('strategy')})")
    say(f"requests   {s['requests']:,} ({s['arrivals']}) at "
        f"{_num(s['rate_per_s'], ',.4g')} requests/s; {s['completed']:,} completed, "
        f"{s['rejected']:,} rejected; max_stage_batch {s['max_stage_batch']}, prompt "
        f"chunks of {s['prefill_chunk_tokens'] or 'a whole prompt'} tokens")
    say(f"KV cache   {kv['capacity_tokens']:,} tokens in SRAM (binding: "
        f"{kv['binding_region'] or 'none'}); with buffers for {kv['buffers_for_tokens']} "
        "decode tokens per stage")
    t = Table(title="Latency per request (vLLM's definitions)", title_justify="left")
    for col in ("metric", "unit", "mean", "p50", "p90", "p99"):
        t.add_column(col, justify="left" if col in ("metric", "unit") else "right")
    for key, name, unit, fmt in (("ttft_s", "time to first token", "ms", _ms),
                                 ("tpot_s", "time per output token", "ms", _ms),
                                 ("itl_s", "inter-token latency", "ms", _ms),
                                 ("e2e_s", "end-to-end latency", "s", _s),
                                 ("queue_s", "wait for admission", "s", _s)):
        d = s[key]
        t.add_row(name, unit, *(fmt(d[k]) for k in ("mean", "p50", "p90", "p99")))
    con.print(t)
    g = Table(title="Throughput, concurrency, energy", title_justify="left")
    g.add_column("figure")
    g.add_column("value", justify="right")
    rows = [
        ("duration", _num(s["duration_s"], ",.3f", " s")),
        ("output tokens/s", _num(s["throughput_tokens_per_s"])),
        ("requests/s completed", _num(s["request_throughput_per_s"], ",.3f")),
        ("goodput (requests/s within SLOs)", _num(s["goodput_requests_per_s"], ",.3f")),
        ("SLO attainment", _num(s["slo_attainment"], ".1%")),
        ("SLOs", f"TTFT {_num(s['slo_ttft_s'], 'g', ' s')}, TPOT "
                 f"{_num(s['slo_tpot_s'], 'g', ' s')}"),
        ("concurrent requests (mean / max)", f"{s['mean_concurrent']:,.1f} / "
                                             f"{s['max_concurrent']:,}"),
        ("waiting requests (mean / max)", f"{s['mean_waiting']:,.1f} / "
                                          f"{s['max_waiting']:,}"),
        ("KV cache occupied (mean / max)", f"{s['kv_occupancy']['mean']:.1%} / "
                                           f"{s['kv_occupancy']['max']:.1%}"),
        ("decode tokens per micro-batch (mean)", _num(s["mean_stage_batch"], ".2f")),
        ("energy per output token (upper bound)",
         _num(s["energy_j_per_output_token"], ",.2f", " J")),
        ("cost per million output tokens", _num(s["cost_per_million_output_tokens"],
                                                ",.2f")),
        ("simulation events", f"{s['events']:,}"),
    ]
    busiest = max(s["element_busy"], key=lambda e: e["busy"], default=None)
    if busiest:
        rows.append(("busiest element", f"{busiest['name']}, {busiest['busy']:.1%} busy"))
    for name, value in rows:
        g.add_row(name, Text(printable(value)))
    con.print(g)
    if "capacity" in doc:
        c = doc["capacity"]
        cap = doc["capacity_requests_per_s"]
        say(f"capacity   {_num(cap, ',.4g', ' requests/s')} within p99 TTFT "
            f"{_num(s['slo_ttft_s'], 'g', ' s')} and p99 TPOT "
            f"{_num(s['slo_tpot_s'], 'g', ' s')}"
            + ("" if s["slo_ttft_s"] is not None else
               f" (and p99 wait for admission {MAX_QUEUE_S:g} s)")
            + f"; sustainable bound {c['bound_requests_per_s']:,.4g} requests/s")
        ct = Table(title="Rates tried", title_justify="left")
        for col in ("requests/s", "meets", "p99 TTFT ms", "p99 TPOT ms", "p99 e2e s"):
            ct.add_column(col, justify="right")
        for p in c["points"]:
            ct.add_row(f"{p['rate_per_s']:,.4g}", "yes" if p["meets"] else "no",
                       _ms(p["ttft_s"]["p99"]), _ms(p["tpot_s"]["p99"]),
                       _s(p["e2e_s"]["p99"]))
        con.print(ct)
    for n in doc["notes"]:
        say(f"note: {n}")
    say("assumptions:")
    for a in doc["assumptions"]:
        say(f"  - {a}")
    return buf.getvalue()


def chrome_trace(study: Study, served: Served) -> dict[str, Any]:
    """A Chrome trace (Perfetto, chrome://tracing) of the run: the phases of the first
    ``TRACE_REQUESTS`` requests (waiting, prefill, decode) and every element's span of
    the first ``TRACE_MICRO_BATCHES`` micro-batches, in microseconds."""
    run = served.run
    us = 1e6 / study.clock_hz
    slots = study.costs.slots
    wafers = [None if s.kind in ("link", "way back") or s.dst is None else s.dst.wafer
              for s in slots]
    requests_pid = max((w for w in wafers if w is not None), default=0) + 2
    events = [{"ph": "M", "name": "process_name", "pid": requests_pid,
               "args": {"name": "requests"}}]
    events += element_events([s.name for s in slots], wafers, run.visits, us,
                             links_pid=requests_pid - 1)
    for i in range(min(len(run.arrival), TRACE_REQUESTS)):
        phases = (("waiting", run.arrival[i], run.admitted[i]),
                  ("prefill", run.admitted[i], run.first_token[i]),
                  ("decode", run.first_token[i], run.finished[i]))
        for name, a, b in phases:
            if math.isfinite(a) and math.isfinite(b) and b >= a:
                events.append({"ph": "X", "name": name, "cat": "request",
                               "pid": requests_pid, "tid": i, "ts": a * us,
                               "dur": (b - a) * us})
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {
        "deployment": study.result.name,
        "recorded": f"the phases of the first {TRACE_REQUESTS} requests and every "
                    f"element's span of the first {TRACE_MICRO_BATCHES} micro-batches",
        "clock_hz": study.clock_hz}}


def write_trace(study: Study, served: Served, path: str | Path) -> Path:
    return write_json(chrome_trace(study, served), path)
