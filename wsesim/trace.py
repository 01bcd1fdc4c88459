"""A Chrome trace (opens in Perfetto or chrome://tracing) of a run's simulated timeline:
one track per stage and path, per wafer link, in microseconds of simulated time."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wsesim.result import Result
from wsesim.sim.tile import TRACE_SEQUENCES, TRACE_STEPS


def chrome_trace(result: Result) -> dict[str, Any]:
    """The trace as a dict (``traceEvents`` plus metadata)."""
    model, run = result.perf_model, result.timeline
    if model is None or run is None:
        raise ValueError("this result has no simulated timeline (run with trace=True)")
    us = 1e6 / model.clock_hz
    events: list[dict[str, Any]] = []
    for w, (seg, server) in enumerate(zip(model.segments, run.servers)):
        events.append({"ph": "M", "name": "process_name", "pid": w,
                       "args": {"name": f"wafer {w}"}})
        for k, element in enumerate(seg.elements):
            events.append({"ph": "M", "name": "thread_name", "pid": w, "tid": k,
                           "args": {"name": element.name}})
        for visit in server.visits:
            for k, (start, end) in enumerate(zip(visit.starts, visit.ends)):
                if end > start:
                    events.append({"ph": "X", "name": visit.who, "cat": visit.phase,
                                   "pid": w, "tid": k, "ts": start * us,
                                   "dur": (end - start) * us})
    links_pid = len(model.segments)
    if run.link_uses:
        events.append({"ph": "M", "name": "process_name", "pid": links_pid,
                       "args": {"name": "inter-wafer links"}})
    for use in run.link_uses:
        events.append({"ph": "X", "name": use.who, "cat": "link", "pid": links_pid,
                       "tid": use.link, "ts": use.start * us,
                       "dur": (use.end - use.start) * us})
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {
        "deployment": result.name,
        "recorded": f"every prompt chunk and the first {TRACE_STEPS} decode steps of the "
                    f"first {TRACE_SEQUENCES} sequences",
        "clock_hz": model.clock_hz}}


def write_chrome_trace(result: Result, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chrome_trace(result)))
    return path
