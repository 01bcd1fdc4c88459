"""One point of a sweep: its resolved deployment and the key that identifies it, its
simulation, and its row (the one place rows are built: :func:`result_row`)."""
from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from wsesim.errors import KeyedError, SpecError
from wsesim.sweeps.points import apply_point
from wsesim.sweeps.spec import point_key

MEMORY_NUMBERS = (
    "weights_bytes", "quant_metadata_bytes", "kv_cache_bytes", "activation_bytes",
    "runtime_reserved_bytes", "total_bytes", "capacity_bytes", "pe_sram_bytes",
    "max_pe_bytes",
)
# columns every row has (None when the point failed), after the point's parameters
RESULT_COLUMNS = (
    "name", "model_name", "parameters", "hardware_name", "strategy", "wafers", "fits",
    "min_wafers", *MEMORY_NUMBERS, "wafer_capacity_bytes", "max_wafer_used_bytes",
)
# after the performance columns: who made the row and what exactly it answers
PROVENANCE_COLUMNS = ("wsesim_version", "key")
TAIL_COLUMNS = ("error", "point")
MAX_ERROR_CHARS = 500   # of a failed point's error line (keeps CSV rows readable)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_row(result: Any, serving: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat numbers of a Result: names, fit, every memory contract number, the
    bytes of the fullest wafer, every scalar of ``result.performance`` and, when the
    point serves a stream of requests, every scalar of its ``serving`` summary as
    ``serving.<key>`` (``serving.ttft_s.p99``)."""
    m = result.memory
    parts = result.partition
    row: dict[str, Any] = {
        "name": result.name, "model_name": result.model.name,
        "parameters": result.model.parameters, "hardware_name": result.hardware.name,
        "strategy": result.strategy, "wafers": result.wafers, "fits": bool(m.fits),
        "min_wafers": result.min_wafers,
    }
    for k in MEMORY_NUMBERS:
        row[k] = _plain(getattr(m, k))
    row["wafer_capacity_bytes"] = max((p.capacity_bytes for p in parts), default=None)
    row["max_wafer_used_bytes"] = max((p.used_bytes for p in parts), default=None)
    perf = result.performance
    if isinstance(perf, Mapping):
        flat: dict[str, Any] = {}
        _flatten("", perf, flat)
        reserved = {*TAIL_COLUMNS, *PROVENANCE_COLUMNS}
        for k, v in flat.items():
            row[f"performance.{k}" if k in row or k in reserved else k] = v
    if isinstance(serving, Mapping):
        flat = {}
        _flatten("serving.", serving, flat)
        row.update(flat)
    return row


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}{k}.", v, out)
        return
    value = _plain(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        out[prefix[:-1]] = value


def error_line(exc: BaseException) -> str:
    """An exception as one line: a SpecError's ``key: what``, else ``Type: message``."""
    if isinstance(exc, (SpecError, KeyedError)):
        text = exc.keyed()
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text[:MAX_ERROR_CHARS]


def _digest(identity: dict[str, Any], performance: bool) -> str:
    """sha256 of canonical JSON of what a row answers, with how and by which wsesim."""
    from wsesim import __version__
    whole = {**identity, "performance": performance, "wsesim_version": __version__}
    try:
        text = json.dumps(whole, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):   # a cyclic or absurd mapping
        text = json.dumps({"unserialisable": repr(whole)[:10_000]})
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def resolve_point(base: Mapping[str, Any], params: Mapping[str, Any], source: str,
                  base_dir: str, performance: bool = True
                  ) -> tuple[Any, BaseException | None, str]:
    """The point's validated deployment (None when it does not validate), the error
    that stopped it, and its key: sha256 of the whole deployment with the model and
    hardware resolved to their full specs (``Deployment.model_dump``), ``performance``
    and the wsesim version; a point that does not validate is keyed by the mapping its
    values give (or the base and the point when they cannot be applied). An arrivals
    file of a ``serving:`` section is keyed by its contents."""
    from wsesim.specs import deployment_from_mapping

    data = None
    try:
        data = apply_point(base, params, base_dir)
        dep = deployment_from_mapping(data, source, Path(base_dir))
    except Exception as exc:  # noqa: BLE001 - the point's own error
        applied = data if data is not None else {"base": base, "point": params}
        return None, exc, _digest({"applied": applied}, performance)
    identity = {"deployment": dep.model_dump(mode="json")}
    serving = getattr(dep, "serving", None)
    if serving is not None and serving.arrivals_file is not None:
        # the requests are the file's contents, not its name
        from wsesim.serving.arrivals import arrivals_path
        path = arrivals_path(serving.arrivals_file, Path(base_dir))
        identity["arrivals"] = _file_digest(path) if path.is_file() else None
    return dep, None, _digest(identity, performance)


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _file_digest_of(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _file_digest_of(path: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, read once per version of it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_point(base: Mapping[str, Any], params: Mapping[str, Any], source: str,
              base_dir: str, find_min_wafers: bool = True,
              performance: bool = True) -> dict[str, Any]:
    """Simulate one point and return its row; any failure becomes the row's ``error``.
    Runs in a worker process: it sends back the row only, never the plan or ledger.
    ``find_min_wafers=False`` leaves ``min_wafers`` empty (the sweep computes it once
    for all points that differ only in ``wafers``); ``performance=False`` skips the
    performance simulation (memory and fit only)."""
    from wsesim import __version__
    from wsesim.run import simulate

    row: dict[str, Any] = dict(params)
    row.update({k: row.get(k) for k in RESULT_COLUMNS})
    dep, failure, key = resolve_point(base, params, source, base_dir, performance)
    if failure is not None:
        row["error"] = error_line(failure)
    else:
        try:
            result = simulate(dep, with_performance=performance,
                              find_min_wafers=find_min_wafers)
            row.update(result_row(result, _serve(dep, result, source, base_dir)
                                   if performance else None))
            row["error"] = ""
        except Exception as exc:  # noqa: BLE001 - a failed point is a result, not a crash
            row["error"] = error_line(exc)
    for k, v in params.items():  # the requested value stays visible if a result column
        if row.get(k) is None:    # of the same name (wafers, name) is empty
            row[k] = v
    row["wsesim_version"] = __version__
    row["key"] = key
    row["point"] = point_key(params)
    return row


def _serve(dep: Any, result: Any, source: str, base_dir: str) -> dict[str, Any] | None:
    """The serving summary of a point whose deployment has a ``serving:`` section."""
    if dep.serving is None:
        return None
    from wsesim.errors import located
    from wsesim.serving import prepare, serve

    with located(source):
        study = prepare(dep, result, Path(base_dir), source)
        summary = dict(serve(study).summary)
    summary.pop("element_busy", None)   # one entry per element: not a column
    return summary


def min_wafers_task(base: Mapping[str, Any], params: Mapping[str, Any], source: str,
                    base_dir: str) -> tuple[int | None, str]:
    """Fewest wafers of the base with a point's keys set (its ``wafers`` ignored), shared
    by every point of a sweep that differs only in ``wafers``; and the error, "" if
    none. Runs in a worker, like the points."""
    from wsesim.run import fewest_wafers_search
    from wsesim.specs import deployment_from_mapping

    try:
        data = apply_point(base, params, base_dir)
        dep = deployment_from_mapping({**data, "wafers": "auto"}, source, Path(base_dir))
        return fewest_wafers_search(dep).wafers, ""
    except Exception as exc:  # noqa: BLE001 - reported in the rows that need it
        return None, error_line(exc)
