"""A Chrome trace (opens in Perfetto or chrome://tracing) of a run's simulated timeline:
one track per stage and path, per wafer link, in microseconds of simulated time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from wsesim import strict_json
from wsesim.result import Result
from wsesim.sim.tile import TRACE_SEQUENCES, TRACE_STEPS


def chrome_trace(result: Result) -> dict[str, Any]:
    """The trace as a dict (``traceEvents`` plus metadata)."""
    model, run = result.perf_model, result.timeline
    if model is None or run is None:
        raise ValueError("this result has no simulated timeline (run with trace=True)")
    us = 1e6 / model.clock_hz
    slots = run.pipeline.slots
    links_pid = len(model.segments)
    place = [(links_pid if s.wafer is None else s.wafer, k) for k, s in enumerate(slots)]
    events: list[dict[str, Any]] = []
    for w in range(len(model.segments)):
        events.append({"ph": "M", "name": "process_name", "pid": w,
                       "args": {"name": f"wafer {w}"}})
    events.append({"ph": "M", "name": "process_name", "pid": links_pid,
                   "args": {"name": "between wafers"}})
    for (pid, tid), slot in zip(place, slots):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": slot.name}})
    for visit in run.pipeline.visits:
        for (pid, tid), start, end in zip(place, visit.starts, visit.ends):
            if end > start:
                events.append({"ph": "X", "name": visit.who, "cat": visit.phase,
                               "pid": pid, "tid": tid, "ts": start * us,
                               "dur": (end - start) * us})
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {
        "deployment": result.name,
        "recorded": f"every prompt chunk and the first {TRACE_STEPS} decode steps of the "
                    f"first {TRACE_SEQUENCES} sequences",
        "clock_hz": model.clock_hz}}


def write_chrome_trace(result: Result, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json.dumps(chrome_trace(result)))
    return path
