"""A Chrome trace (opens in Perfetto or chrome://tracing) of a run's simulated timeline:
one track per stage and path, per wafer link, in microseconds of simulated time."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wsesim import strict_json
from wsesim.result import Result
from wsesim.sim.tile import TRACE_SEQUENCES, TRACE_STEPS, Visit


def element_events(names: list[str], wafers: list[int | None], visits: Iterable[Visit],
                   us_per_cycle: float, links_pid: int) -> list[dict[str, Any]]:
    """The tracks of a timeline's elements (one per element, under its wafer's process;
    ``links_pid`` for a link between wafers or the way back) and the spans of ``visits``
    on them: what the traces of ``wsesim run`` and ``wsesim serve`` share."""
    place = [links_pid if w is None else w for w in wafers]
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": w, "args": {"name": f"wafer {w}"}}
        for w in sorted(set(wafers) - {None})]
    events.append({"ph": "M", "name": "process_name", "pid": links_pid,
                   "args": {"name": "between wafers"}})
    for tid, (pid, name) in enumerate(zip(place, names)):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": name}})
    for visit in visits:
        for tid, (pid, start, end) in enumerate(zip(place, visit.starts, visit.ends)):
            if end > start:
                events.append({"ph": "X", "name": visit.who, "cat": visit.phase,
                               "pid": pid, "tid": tid, "ts": start * us_per_cycle,
                               "dur": (end - start) * us_per_cycle})
    return events


def chrome_trace(result: Result) -> dict[str, Any]:
    """The trace as a dict (``traceEvents`` plus metadata)."""
    model, run = result.perf_model, result.timeline
    if model is None or run is None:
        raise ValueError("this result has no simulated timeline (run with trace=True)")
    slots = run.pipeline.slots
    events = element_events([s.name for s in slots], [s.wafer for s in slots],
                            run.pipeline.visits, 1e6 / model.clock_hz,
                            links_pid=len(model.segments))
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {
        "deployment": result.name,
        "recorded": f"every prompt chunk and the first {TRACE_STEPS} decode steps of the "
                    f"first {TRACE_SEQUENCES} sequences",
        "clock_hz": model.clock_hz}}


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    """Write a trace (strict JSON: Perfetto refuses NaN and Infinity), making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json.dumps(doc))
    return path


def write_chrome_trace(result: Result, path: str | Path) -> Path:
    return write_json(chrome_trace(result), path)
