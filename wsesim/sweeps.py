"""What-if sweeps: one deployment varied along dotted key paths, every point simulated,
one flat row per point in ``results.jsonl`` and ``results.csv``, and charts.

A sweep file::

    name: wafers-bits                 # optional; default: the file's stem
    base: llama-3.1-70b-w3.5-1x-wse3.yaml   # a deployment path (relative to this file)
                                      # or an inline deployment mapping
    grid:                             # the full cartesian product of these lists
      wafers: [1, 2, 4]
      quantization.weights.bits: [16, 8, 4, 3.5]
    zip:                              # optional: equal-length lists varied together
      workload.prompt_tokens: [1024, 2048]
      workload.context_length: [2048, 4096]
    performance: true                 # optional; false: memory and fit only (faster)

Setting ``quantization.<tensor>.bits`` (weights, embeddings, kv_cache, activations)
keeps the rest of the base format where it still applies: bits 16 or 32 give a float
format (no groups, scales, zeros; the base's fp16/bf16 flavour kept); bits 8, 4 or 3.5
keep the base's ``group_size``, ``scale_bits`` and ``zero_bits`` when the base is an
integer format, and take groups of 128 with fp16 scales and zeros (the ``*-g128``
presets) when the base is a float format; ``packing: byte`` is kept only for 4 and 3.5
bits. Other keys set in the same point (``quantization.weights.group_size``) apply
after the bits. A point whose deployment is invalid (3.5 bits with odd groups, more
wafers than units) is recorded as failed, with its one-line error, and the sweep goes on.

Points run in parallel (``workers`` processes, or a Dask cluster); rows are appended
and flushed point by point, so an interrupted sweep loses nothing, and re-running into
the same output folder skips the points already there (failed ones included: delete
their rows to retry).
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import json
import math
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from wsesim.errors import KeyedError, SpecError, SweepInterrupted
from wsesim.specs.yamlio import did_you_mean

SWEEP_KEYS = ("name", "base", "grid", "zip", "performance")
FORMAT_TENSORS = ("weights", "embeddings", "kv_cache", "activations")
# groups given to an integer format swept from a float base: those of the *-g128 presets
DEFAULT_INT_PRESET = "int4-g128"

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
TAIL_COLUMNS = ("error", "point")
DASK_CONNECT_TIMEOUT_S = 10   # before a scheduler that does not answer is an error
MAX_ERROR_CHARS = 500   # of a failed point's error line (keeps CSV rows readable)


# ------------------------------------------------------------------------- the spec
@dataclass
class SweepSpec:
    """A validated sweep: the base deployment mapping and the axes to vary."""

    name: str
    source: str                                  # the sweep file (or "<sweep>")
    base: dict[str, Any]                         # the base deployment, as read
    base_source: str                             # where deployment errors point
    base_dir: str                                # relative paths in the base resolve here
    axes: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = field(default_factory=list)
    performance: bool = True                     # False: memory and fit only (faster)

    @property
    def param_keys(self) -> list[str]:
        return [k for keys, _ in self.axes for k in keys]

    def points(self) -> list[dict[str, Any]]:
        """Every point's parameters (dotted key -> value), grid axes varying slowest
        first in file order, each zip group as one axis."""
        out = []
        for combo in itertools.product(*(values for _, values in self.axes)):
            params: dict[str, Any] = {}
            for (keys, _), values in zip(self.axes, combo):
                params.update(zip(keys, values))
            out.append(params)
        return out


def point_key(params: Mapping[str, Any]) -> str:
    """The identity of a point (its ``point`` column): canonical JSON of its parameters."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def _fields_of(cls: Any) -> dict[str, Any] | None:
    fields = getattr(cls, "__pydantic_fields__", None)
    if fields is None:
        fields = getattr(cls, "model_fields", None)
    return fields if isinstance(fields, dict) else None


def check_key_path(key: str, source: str, where: str) -> None:
    """A dotted key must name a deployment field (``workload.context_length``); a typo
    is a bad sweep file, not a hundred failed points."""
    from wsesim.specs import Deployment
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise SpecError(source, where, f"expected a dotted key path like "
                        f"'workload.context_length', got {key!r}")
    owner: Any = Deployment
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = _fields_of(owner)
        if fields is None:
            done = ".".join(parts[:i])
            raise SpecError(source, f"{where}", f"'{done}' takes a value, not keys")
        if part not in fields:
            inside = ".".join(parts[:i]) or "a deployment"
            raise SpecError(source, where, f"'{part}' is not a key of {inside}"
                            f"{did_you_mean(part, list(fields))}; known keys: "
                            f"{', '.join(fields)}")
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        owner = next((c for c in candidates if _fields_of(c) is not None), None)


def _list(value: Any, source: str, where: str, unique: bool = False) -> list[Any]:
    """A non-empty list of values (``unique``: none twice)."""
    if not isinstance(value, list) or not value:
        raise SpecError(source, where, "expected a non-empty list of values")
    seen = set()
    for v in value if unique else ():
        k = point_key({"v": v})
        if k in seen:
            raise SpecError(source, where, f"value {v!r} appears twice")
        seen.add(k)
    return value


def load_sweep(spec: "str | Path | Mapping[str, Any] | SweepSpec",
               base_dir: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep (a file path or a mapping); every problem is a located
    one-line :class:`SpecError`."""
    from wsesim.specs.yamlio import read_mapping

    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        data = read_mapping(path)
        source, here, default_name = str(path), path.parent, path.stem
    elif isinstance(spec, Mapping):
        data = dict(spec)
        source, here, default_name = "<sweep>", Path(base_dir or "."), "sweep"
    else:
        raise SpecError("<sweep>", "", "expected a sweep file path or a mapping")
    for key in data:
        if key not in SWEEP_KEYS:
            hint = did_you_mean(str(key), list(SWEEP_KEYS))
            raise SpecError(source, str(key), f"unknown key{hint}"
                            f" (known keys: {', '.join(SWEEP_KEYS)})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise SpecError(source, "name", "expected a non-empty string")
    if "base" not in data:
        raise SpecError(source, "base", "required key is missing (a deployment path or "
                        "an inline deployment)")
    base = data["base"]
    if isinstance(base, str):
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = here / base_path
        if not base_path.is_file():
            raise SpecError(source, "base", f"no deployment file '{base}' "
                            f"(looked for {base_path})")
        base_map = read_mapping(base_path)
        base_map.setdefault("name", base_path.stem)
        base_source, base_dir_used = str(base_path), base_path.parent
    elif isinstance(base, dict):
        base_map = copy.deepcopy(base)
        base_map.setdefault("name", name)
        base_source, base_dir_used = source, here
    else:
        raise SpecError(source, "base", "expected a deployment file path or an inline "
                        "deployment mapping")

    axes: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = []
    varied: set[str] = set()

    def vary(key: str, where: str) -> None:
        check_key_path(key, source, where)
        if key in varied:
            raise SpecError(source, where, "the same key is varied twice (grid and zip)")
        varied.add(key)

    grid = data.get("grid")
    if grid is not None:
        if not isinstance(grid, dict):
            raise SpecError(source, "grid", "expected a mapping of dotted keys to lists")
        for key, values in grid.items():
            vary(key, f"grid.{key}")
            axes.append(((key,), [(v,) for v in _list(values, source, f"grid.{key}",
                                                       unique=True)]))
    zipped = data.get("zip")
    if zipped is not None:
        groups = zipped if isinstance(zipped, list) else [zipped]
        for gi, group in enumerate(groups):
            where = "zip" if isinstance(zipped, dict) else f"zip.{gi}"
            if not isinstance(group, dict) or not group:
                raise SpecError(source, where, "expected a mapping of dotted keys to "
                                "lists of equal length")
            lists = {}
            for key, values in group.items():
                vary(key, f"{where}.{key}")
                lists[key] = _list(values, source, f"{where}.{key}")
            first = next(iter(lists))
            for key, values in lists.items():
                if len(values) != len(lists[first]):
                    raise SpecError(source, f"{where}.{key}", f"{len(values)} values, but "
                                    f"{where}.{first} has {len(lists[first])} (zipped "
                                    "lists must have equal length)")
            tuples = list(zip(*lists.values()))
            if len({point_key({"v": list(t)}) for t in tuples}) != len(tuples):
                raise SpecError(source, where, "two zipped points are the same")
            axes.append((tuple(lists), tuples))
    performance = data.get("performance", True)
    if not isinstance(performance, bool):
        raise SpecError(source, "performance", "expected true or false")
    if not axes:
        raise SpecError(source, "grid", "nothing to sweep: give grid (and/or zip) with "
                        "lists of values")
    spec = SweepSpec(name.strip(), source, base_map, base_source, str(base_dir_used), axes,
                     performance)
    _check_base_keys(spec)
    return spec


def _check_base_keys(spec: SweepSpec) -> None:
    """An unknown key in the base deployment is a bad file whatever the point: one
    located line now, not every point failing with it. (Other problems may hold for
    some points only; those become the points' errors.)"""
    from wsesim.specs import deployment_from_mapping
    try:
        deployment_from_mapping(apply_point(spec.base, spec.points()[0], spec.base_dir),
                                spec.base_source, Path(spec.base_dir))
    except SpecError as exc:
        if exc.message.startswith("unknown key"):
            raise
    except Exception:  # noqa: BLE001 - the point's own error, reported with its row
        pass


# ------------------------------------------------------------------ applying a point
def format_with_bits(current: Any, bits: Any) -> dict[str, Any]:
    """A full format mapping with ``bits`` set, from the base's format (a preset name, a
    mapping, ``{preset: ..., overrides}`` or None = fp16), by the rule in this module's
    docstring."""
    from wsesim.quant import QuantFormat, preset
    from wsesim.specs.quantization import resolve_format

    whole = {"bits": 16} if current is None else resolve_format(current)
    if isinstance(whole, QuantFormat):
        whole = dataclasses.asdict(whole)
    if not isinstance(whole, dict):
        raise ValueError(f"cannot set bits on a format given as {current!r}")
    base: dict[str, Any] = whole
    out: dict[str, Any] = {"bits": bits}
    if "float16" in base:
        out["float16"] = base["float16"]
    if bits in (16, 32):
        return out
    if base.get("bits") in (16, 32, None):
        groups = dataclasses.asdict(preset(DEFAULT_INT_PRESET))
        out.update({k: groups[k] for k in ("group_size", "scale_bits", "zero_bits")})
    else:
        out.update({k: base[k] for k in ("group_size", "scale_bits", "zero_bits")
                    if k in base})
    if bits in (4, 3.5) and base.get("packing") in ("dense", "byte"):
        out["packing"] = base["packing"]
    return out


def _as_mapping(path: list[str], value: Any, base_dir: Path) -> dict[str, Any]:
    """An intermediate value given in short form, as a mapping so a key under it can be
    set: a bare quantization preset, a format preset, a shipped model/profile name."""
    where = ".".join(path)
    if path == ["quantization"]:
        return {"weights": value}
    if len(path) == 2 and path[0] == "quantization":
        return {"preset": value}
    if path in (["model"], ["hardware"]):
        from wsesim.specs import load_hardware, load_model
        loader = load_model if path == ["model"] else load_hardware
        return loader(value, base_dir, key=where).model_dump(exclude_none=True)
    raise ValueError(f"{where} is {value!r}, not a mapping: cannot set keys inside it")


def _order(key: str) -> tuple[int, int]:
    parts = key.split(".")
    return (len(parts), 0 if parts[-1] == "bits" else 1)


def apply_point(base: Mapping[str, Any], params: Mapping[str, Any],
                base_dir: str | Path = ".") -> dict[str, Any]:
    """The base deployment mapping with a point's dotted keys set (shallower keys first,
    so ``quantization: int4-g128`` applies before ``quantization.weights.bits``)."""
    data = copy.deepcopy(dict(base))
    here = Path(base_dir)
    for key in sorted(params, key=_order):
        value = copy.deepcopy(params[key])
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "quantization" and parts[2] == "bits" \
                and parts[1] in FORMAT_TENSORS:
            node = _walk(data, parts[:1], here)
            node[parts[1]] = format_with_bits(node.get(parts[1]), value)
            continue
        node = _walk(data, parts[:-1], here)
        node[parts[-1]] = value
    return data


def _walk(data: dict[str, Any], parts: list[str], here: Path) -> dict[str, Any]:
    node = data
    for i, part in enumerate(parts):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            child = _as_mapping(parts[:i + 1], child, here)
        node[part] = child   # apply_point's deep copy: safe to change in place
        node = child
    return node


# --------------------------------------------------------------------- one point
def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_row(result: Any) -> dict[str, Any]:
    """The flat numbers of a Result: names, fit, every memory contract number, the
    bytes of the fullest wafer, and every scalar of ``result.performance``."""
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
        for k, v in flat.items():
            row[f"performance.{k}" if k in row or k in TAIL_COLUMNS else k] = v
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


def run_point(base: Mapping[str, Any], params: Mapping[str, Any], source: str,
              base_dir: str, find_min_wafers: bool = True,
              performance: bool = True) -> dict[str, Any]:
    """Simulate one point and return its row; any failure becomes the row's ``error``.
    Runs in a worker process: it sends back the row only, never the plan or ledger.
    ``find_min_wafers=False`` leaves ``min_wafers`` empty (the sweep computes it once
    for all points that differ only in ``wafers``); ``performance=False`` skips the
    performance simulation (memory and fit only)."""
    from wsesim.run import simulate
    from wsesim.specs import deployment_from_mapping

    row: dict[str, Any] = dict(params)
    row.update({k: row.get(k) for k in RESULT_COLUMNS})
    try:
        data = apply_point(base, params, base_dir)
        dep = deployment_from_mapping(data, source, Path(base_dir))
        row.update(result_row(simulate(dep, with_performance=performance,
                                       find_min_wafers=find_min_wafers)))
        row["error"] = ""
    except Exception as exc:  # noqa: BLE001 - a failed point is a result, not a crash
        row["error"] = error_line(exc)
    for k, v in params.items():  # the requested value stays visible if a result column
        if row.get(k) is None:    # of the same name (wafers, name) is empty
            row[k] = v
    row["point"] = point_key(params)
    return row


def min_wafers_task(base: Mapping[str, Any], params: Mapping[str, Any], source: str,
                    base_dir: str) -> tuple[int | None, str]:
    """Fewest wafers of the base with a point's keys set (its ``wafers`` ignored), shared
    by every point of a sweep that differs only in ``wafers``; and the error, "" if
    none. Runs in a worker, like the points."""
    from wsesim.fit import fewest_wafers
    from wsesim.specs import deployment_from_mapping

    try:
        data = apply_point(base, params, base_dir)
        dep = deployment_from_mapping({**data, "wafers": "auto"}, source, Path(base_dir))
        return fewest_wafers(dep), ""
    except Exception as exc:  # noqa: BLE001 - reported in the rows that need it
        return None, error_line(exc)


def _min_wafers_group(spec: "SweepSpec", params: Mapping[str, Any]
                      ) -> tuple[str, dict[str, Any]] | None:
    """The key of the points sharing this point's fewest wafers (its parameters other
    than ``wafers`` and ``name``) and those parameters, or None when the point asks for
    ``wafers: auto`` (its simulation finds them anyway)."""
    if params.get("wafers", spec.base.get("wafers", "auto")) == "auto":
        return None
    rest = {k: v for k, v in params.items() if k not in ("wafers", "name")}
    return point_key(rest), rest


# ------------------------------------------------------------------------ storage
def column_order(columns: Iterable[str], param_keys: Sequence[str]) -> list[str]:
    """Parameters, the fixed result columns, other columns (performance) in the order
    first seen, then error and point."""
    cols = list(dict.fromkeys(columns))
    head = [*param_keys, *(c for c in RESULT_COLUMNS if c not in param_keys)]
    rest = [c for c in cols if c not in head and c not in TAIL_COLUMNS]
    return [*head, *rest, *TAIL_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _repair_tail(path: Path) -> None:
    """Drop a last line cut short by an interrupted write."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


class ResultStore:
    """``results.jsonl`` and ``results.csv`` in one folder, appended and flushed row by
    row. The CSV's header is written once (the canonical column order of the first
    row); a later row with columns the header lacks fills the known ones, and at
    :meth:`close` the CSV is rewritten from the JSONL with every column."""

    def __init__(self, out: str | Path, param_keys: Sequence[str]) -> None:
        self.out = Path(out)
        self.jsonl = self.out / "results.jsonl"
        self.csv = self.out / "results.csv"
        self.param_keys = list(param_keys)
        self.columns: list[str] | None = None
        self.stale = False
        self._jf = self._cf = self._writer = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Rows already present, by point key (repairing a cut-off last line)."""
        self.out.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.jsonl)
        _repair_tail(self.csv)
        rows = self._read_jsonl()
        header, count = self._read_csv_shape()
        if rows and (header is None or count != len(rows)):
            self._rewrite_csv(rows)
        elif header is not None:
            self.columns = header
        return {r["point"]: r for r in rows if isinstance(r, dict) and "point" in r}

    def _read_jsonl(self) -> list[dict[str, Any]]:
        rows = []
        if self.jsonl.is_file():
            with open(self.jsonl, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return rows

    def _read_csv_shape(self) -> tuple[list[str] | None, int]:
        if not self.csv.is_file():
            return None, 0
        with open(self.csv, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            return header, sum(1 for _ in reader)

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        cols = column_order((c for r in rows for c in r), self.param_keys)
        tmp = self.csv.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in cols])
        os.replace(tmp, self.csv)
        self.columns = cols

    def append(self, row: Mapping[str, Any]) -> None:
        if self._jf is None:
            self._jf = open(self.jsonl, "a", encoding="utf-8")
            self._cf = open(self.csv, "a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._cf)
        self._jf.write(json.dumps(row, default=str) + "\n")
        self._jf.flush()
        if self.columns is None:
            self.columns = column_order(row, self.param_keys)
            self._writer.writerow(self.columns)
        if any(c not in self.columns for c in row):
            self.stale = True
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._cf.flush()

    def close(self) -> None:
        for f in (self._jf, self._cf):
            if f is not None:
                f.close()
        self._jf = self._cf = self._writer = None
        if self.stale:
            self._rewrite_csv(self._read_jsonl())
            self.stale = False


# ---------------------------------------------------------------------- executors
def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _dask_client(address: str, source: str = "<command line>") -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise SpecError(source, "--executor", "a Dask executor needs the "
                        "distributed extra: pip install 'wsesim[distributed]'") from None
    target = "tcp://" + address.removeprefix("dask://")
    try:
        return Client(target, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SpecError(source, "--executor",
                        f"cannot connect to the Dask scheduler at {target}: "
                        f"{error_line(exc)}") from None


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "submit")


def _process_pool(workers: int) -> Executor:
    """Worker processes: forked where that is safe (Linux, no other thread in this
    process: a script needs no ``if __name__ == "__main__"`` guard), else started from a
    fork server or spawned (a script must guard its top level, as multiprocessing
    requires)."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # workers fork from a server that has imported the simulator once
        ctx.set_forkserver_preload(["wsesim.sweeps", "wsesim.run", "wsesim.specs"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def execute(spec: SweepSpec, todo: Sequence[Mapping[str, Any]], workers: int = 1,
            executor: Any = None) -> Iterator[dict[str, Any]]:
    """Rows of ``todo`` as they complete: in this process (``workers=1``), in a process
    pool, on a Dask cluster (``"dask://HOST:PORT"`` or a ``distributed.Client``), or on
    any ``concurrent.futures.Executor``.

    The fewest wafers do not depend on ``wafers``: points that differ only in it share
    one search (a task of its own), and each point simulates just its own wafer count."""
    if not todo:
        return
    if isinstance(executor, str):  # dask://HOST:PORT, checked by run_sweep
        client = _dask_client(executor, spec.source)
        try:
            yield from _run_tasks(spec, todo, _DaskBackend(client))
        finally:
            client.close()
        return
    if executor is not None and _is_dask_client(executor):
        yield from _run_tasks(spec, todo, _DaskBackend(executor))
        return
    if executor is None and (workers <= 1 or len(todo) == 1):
        yield from _run_tasks(spec, todo, _SerialBackend())
        return
    own = executor is None
    pool = _process_pool(min(workers, len(todo))) if own else executor
    try:
        yield from _run_tasks(spec, todo, _PoolBackend(pool))
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


class _Deferred:
    """A task run in this process when its turn comes (see _SerialBackend)."""

    __slots__ = ("fn", "args", "value", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.value, self.error = fn, args, None, None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except Exception as exc:  # noqa: BLE001
            self.error = exc


class _SerialBackend:
    """Runs the tasks one by one, in order, as they are asked for."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Deferred:
        return _Deferred(fn, args)

    def completed(self, futures: list[_Deferred]) -> Iterator[_Deferred]:
        for fut in futures:
            fut.run()
            yield fut

    @staticmethod
    def outcome(fut: _Deferred) -> Any:
        if fut.error is not None:
            raise fut.error
        return fut.value

    def cancel(self, futures: list[Any]) -> None:
        pass


class _PoolBackend:
    def __init__(self, pool: Executor) -> None:
        self.pool = pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def completed(self, futures: list[Any]) -> Iterator[Any]:
        from concurrent.futures import as_completed
        return as_completed(futures)

    @staticmethod
    def outcome(fut: Any) -> Any:
        return fut.result()

    def cancel(self, futures: list[Any]) -> None:
        for f in futures:
            f.cancel()


class _DaskBackend(_PoolBackend):
    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def completed(self, futures: list[Any]) -> Iterator[Any]:
        from distributed import as_completed
        return as_completed(futures)


def _run_tasks(spec: SweepSpec, todo: Sequence[Mapping[str, Any]],
               backend: Any) -> Iterator[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    member: dict[int, str] = {}
    for i, params in enumerate(todo):
        g = _min_wafers_group(spec, params)
        if g is not None:
            member[i] = g[0]
            groups.setdefault(g[0], g[1])
    counts = Counter(member.values())
    shared = {g for g, n in counts.items() if n > 1}  # one point: its run finds them
    args = (spec.base_source, spec.base_dir)
    futures: dict[Any, tuple[str, Any]] = {}
    submitted: set[str] = set()
    for i, params in enumerate(todo):
        g = member.get(i)
        grouped = g in shared
        if grouped and g not in submitted:  # a group's search just before its points
            submitted.add(g)
            futures[backend.submit(min_wafers_task, spec.base, groups[g],
                                   *args)] = ("group", g)
        futures[backend.submit(run_point, spec.base, dict(params), *args,
                               not grouped, spec.performance)] = ("point", i)
    found: dict[str, tuple[int | None, str]] = {}   # group -> (min wafers, error)
    waiting: dict[str, list[dict[str, Any]]] = {}
    try:
        for fut in backend.completed(list(futures)):
            kind, ref = futures[fut]
            try:  # the tasks catch every error of a point: this is the workers failing
                value = backend.outcome(fut)
            except Exception as exc:  # noqa: BLE001
                raise SweepInterrupted(
                    f"the sweep's workers failed ({error_line(exc)}); the points done so "
                    "far are saved, run the sweep again to resume") from exc
            if kind == "group":
                found[ref] = value
                for row in waiting.pop(ref, []):
                    yield _with_min_wafers(row, *found[ref])
                continue
            row = value
            g = member.get(ref)
            if g in shared and not row.get("error"):
                if g in found:
                    yield _with_min_wafers(row, *found[g])
                else:
                    waiting.setdefault(g, []).append(row)
            else:
                yield row
    finally:
        backend.cancel(list(futures))


def _with_min_wafers(row: dict[str, Any], value: int | None, error: str) -> dict[str, Any]:
    row["min_wafers"] = value
    if error and not row.get("error"):
        row["error"] = f"min_wafers: {error}"
    return row


# --------------------------------------------------------------------- the sweep
@dataclass
class SweepOutcome:
    """What a sweep did: every row of its points (in point order) and a summary."""

    name: str
    out: Path | None
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    seconds: float
    charts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]

    @property
    def reasons(self) -> dict[str, int]:
        """Distinct failure messages and how many points failed with each."""
        return dict(Counter(r["error"] for r in self.failed_rows).most_common())

    def summary(self) -> str:
        lines = [f"sweep {self.name}: {len(self.rows)} points; {self.ran} run in "
                 f"{self.seconds:.1f} s, {self.skipped} skipped (already present), "
                 f"{len(self.failed_rows)} failed"]
        for reason, count in self.reasons.items():
            lines.append(f"  {count} x {reason}")
        if self.out is not None:
            lines.append(f"results: {self.out / 'results.csv'}, "
                         f"{self.out / 'results.jsonl'}")
        lines += [f"chart: {p}" for p in self.charts]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _progress(enabled: bool | None, total: int, name: str):
    import contextlib
    if enabled is None:
        enabled = sys.stdout.isatty()
    if not enabled or total == 0:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    # redrawn point by point (no refresh thread: worker processes fork safely)
    return Progress(TextColumn(f"sweep {name}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                    auto_refresh=False)


def run_sweep(spec: "str | Path | Mapping[str, Any] | SweepSpec",
              out: str | Path | None = None, workers: int = 1, executor: Any = None,
              progress: bool | None = None, charts: bool = True,
              chart_format: str = "png") -> SweepOutcome:
    """Run every point of a sweep not already in ``out`` and return the outcome.

    ``out`` None keeps rows in memory only (no files, no resume, no charts).
    ``workers`` > 1 runs points in that many processes; ``executor`` may be
    ``"dask://HOST:PORT"``, a ``distributed.Client`` or a ``concurrent.futures``
    executor. ``progress`` None shows a bar only when stdout is a terminal."""
    spec = load_sweep(spec)
    if isinstance(executor, str) and (not executor.startswith("dask://")
                                      or len(executor) <= len("dask://")):
        raise SpecError(spec.source, "--executor",
                        f"expected dask://HOST:PORT, got {executor!r}")
    t0 = time.perf_counter()
    points = spec.points()
    store = ResultStore(out, spec.param_keys) if out is not None else None
    present = store.load() if store else {}
    keys = [point_key(p) for p in points]
    todo = [p for p, k in zip(points, keys) if k not in present]
    new: dict[str, dict[str, Any]] = {}
    try:
        with _progress(progress, len(todo), spec.name) as bar:
            task = bar.add_task("points", total=len(todo)) if bar else None
            for row in execute(spec, todo, workers, executor):
                if store:
                    store.append(row)
                new[row["point"]] = row
                if bar:
                    bar.advance(task)
                    bar.refresh()
    finally:
        if store:
            store.close()
    rows = [present.get(k) or new[k] for k in keys if k in present or k in new]
    outcome = SweepOutcome(spec.name, Path(out) if out is not None else None, rows,
                           ran=len(new), skipped=len(points) - len(todo),
                           seconds=time.perf_counter() - t0)
    if store and charts:
        from wsesim.plots import write_sweep_charts
        paths, notes = write_sweep_charts(rows, store.out, spec.param_keys, chart_format,
                                          linked=[keys for keys, _ in spec.axes])
        outcome.charts, outcome.notes = paths, notes
    return outcome


def rows_to_dataframe(rows: Sequence[Mapping[str, Any]]) -> Any:
    """The rows as a pandas DataFrame (pandas is optional)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("rows_to_dataframe needs pandas: pip install pandas") from None
    return pd.DataFrame(list(rows))


def slug(name: str, default: str = "sweep") -> str:
    """A name as a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or default
