"""Reading and validating a sweep file, and its points as a lazy sequence (never the
whole cartesian product in memory)."""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from wsesim.errors import SpecError
from wsesim.specs.bounds import MAX_NESTING
from wsesim.specs.yamlio import did_you_mean
from wsesim.sweeps.points import apply_point

SWEEP_KEYS = ("name", "base", "grid", "zip", "performance")
# a real study (3 models x 4 bit widths x 8 wafer counts x 10 contexts x 5 batch sizes
# is 4,800 points) stays far below; at ~5 KB a row in memory, the bound is ~0.5 GB
MAX_SWEEP_POINTS = 100_000

Axis = tuple[tuple[str, ...], list[tuple[Any, ...]]]


def point_key(params: Mapping[str, Any]) -> str:
    """The identity of a point (its ``point`` column): canonical JSON of its parameters."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def _value_key(values: Sequence[Any]) -> str:
    return point_key({"v": list(values)})


class Points(Sequence[dict[str, Any]]):
    """Every point's parameters (dotted key -> value), grid axes varying slowest first
    in file order, each zip group as one axis: a sequence computed on demand (length,
    iteration, indexing, and :meth:`locate` of a ``point`` string)."""

    def __init__(self, axes: Sequence[Axis]) -> None:
        self._axes = list(axes)
        self._sizes = [len(values) for _, values in self._axes]
        self._count = math.prod(self._sizes)
        self._where: list[dict[str, int]] | None = None

    def __len__(self) -> int:
        return self._count

    def _params(self, combo: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for (keys, _), values in zip(self._axes, combo):
            params.update(zip(keys, values))
        return params

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for combo in itertools.product(*(values for _, values in self._axes)):
            yield self._params(combo)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("points are indexed by integers only")
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        combo = []
        for size, (_, values) in zip(reversed(self._sizes), reversed(self._axes)):
            index, i = divmod(index, size)
            combo.append(values[i])
        return self._params(combo[::-1])

    def locate(self, point: str) -> int | None:
        """The index of the point whose ``point`` column is ``point``, or None when this
        sweep has no such point."""
        if self._where is None:
            self._where = [{_value_key(v): i for i, v in enumerate(values)}
                           for _, values in self._axes]
        try:
            params = json.loads(point)
        except (ValueError, RecursionError):
            return None
        keys = [k for ks, _ in self._axes for k in ks]
        if not isinstance(params, dict) or sorted(params) != sorted(keys):
            return None
        index = 0
        for (ks, _), size, where in zip(self._axes, self._sizes, self._where):
            i = where.get(_value_key([params[k] for k in ks]))
            if i is None:
                return None
            index = index * size + i
        return index


@dataclass
class SweepSpec:
    """A validated sweep: the base deployment mapping and the axes to vary."""

    name: str
    source: str                                  # the sweep file (or "<sweep>")
    base: dict[str, Any]                         # the base deployment, as read
    base_source: str                             # where deployment errors point
    base_dir: str                                # relative paths in the base resolve here
    axes: list[Axis] = field(default_factory=list)
    performance: bool = True                     # False: memory and fit only (faster)

    @property
    def param_keys(self) -> list[str]:
        return [k for keys, _ in self.axes for k in keys]

    def points(self) -> Points:
        """The points, computed as they are read (see :class:`Points`)."""
        return Points(self.axes)

    def wafers_group_size(self) -> int:
        """Points sharing one fewest-wafers search: those that differ only in ``wafers``
        (and ``name``), i.e. along the axes that vary nothing else."""
        return math.prod(len(values) for keys, values in self.axes
                         if set(keys) <= {"wafers", "name"})


def _fields_of(cls: Any) -> dict[str, Any] | None:
    fields = getattr(cls, "__pydantic_fields__", None)
    if fields is None:
        fields = getattr(cls, "model_fields", None)
    return fields if isinstance(fields, dict) else None


def check_key_path(key: Any, source: str, where: str) -> None:
    """A dotted key must name a deployment field (``workload.context_length``); a typo
    is a bad sweep file, not a hundred failed points."""
    from wsesim.specs import Deployment
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise SpecError(source, where, f"expected a dotted key path like "
                        f"'workload.context_length', got {key!r}"[:300])
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


def _check_value(value: Any, source: str, where: str) -> None:
    """A swept value holds finite numbers and text keys only, and is not nested deeper
    than a file may be (``MAX_NESTING``; a mapping given through the Python API has not
    been through the file reader's checks)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SpecError(source, where, f"a value nested more than {MAX_NESTING} "
                            "levels deep")
        if isinstance(v, float) and not math.isfinite(v):
            raise SpecError(source, where, f"{v} is not a finite number")
        if isinstance(v, Mapping):
            if not all(isinstance(k, str) for k in v):
                raise SpecError(source, where, "the keys of a mapping must be text")
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, depth + 1) for x in v)


def _list(value: Any, source: str, where: str, unique: bool = False) -> list[Any]:
    """A non-empty list of finite values (``unique``: none twice)."""
    if not isinstance(value, list) or not value:
        raise SpecError(source, where, "expected a non-empty list of values")
    if len(value) > MAX_SWEEP_POINTS:
        raise SpecError(source, where, f"{len(value):,} values: more than the "
                        f"{MAX_SWEEP_POINTS:,} points a sweep may have")
    seen = set()
    for i, v in enumerate(value):
        _check_value(v, source, f"{where}.{i}")
        if unique:
            k = point_key({"v": v})
            if k in seen:
                raise SpecError(source, where, f"value {k[5:-1][:80]} appears twice")
            seen.add(k)
    return value


def _check_count(axes: Sequence[Axis], source: str, where: str) -> None:
    """Refuse more points than MAX_SWEEP_POINTS before any work."""
    sizes = [len(values) for _, values in axes]
    total = math.prod(sizes)
    if total > MAX_SWEEP_POINTS:
        shape = " x ".join(f"{n:,}" for n in sizes)
        raise SpecError(source, where, f"{total:,} points ({shape}) is more than the "
                        f"{MAX_SWEEP_POINTS:,} a sweep may have: split it into several "
                        "sweeps or take fewer values")


def _read(spec: "str | Path | Mapping[str, Any]", base_dir: str | Path | None
          ) -> tuple[dict[str, Any], str, Path, str]:
    from wsesim.specs.yamlio import read_mapping
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        return read_mapping(path), str(path), path.parent, path.stem
    if isinstance(spec, Mapping):
        return dict(spec), "<sweep>", Path(base_dir or "."), "sweep"
    raise SpecError("<sweep>", "", "expected a sweep file path or a mapping")


def _base(data: Mapping[str, Any], source: str, here: Path, name: str
          ) -> tuple[dict[str, Any], str, Path]:
    from wsesim.specs.yamlio import read_mapping
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
        return base_map, str(base_path), base_path.parent
    if isinstance(base, dict):
        base_map = copy.deepcopy(base)
        base_map.setdefault("name", name)
        return base_map, source, here
    raise SpecError(source, "base", "expected a deployment file path or an inline "
                    "deployment mapping")


def load_sweep(spec: "str | Path | Mapping[str, Any] | SweepSpec",
               base_dir: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep (a file path or a mapping); every problem is a located
    one-line :class:`SpecError`, found before any point runs."""
    if isinstance(spec, SweepSpec):
        return spec
    data, source, here, default_name = _read(spec, base_dir)
    for key in data:
        if key not in SWEEP_KEYS:
            hint = did_you_mean(str(key), list(SWEEP_KEYS))
            raise SpecError(source, str(key)[:100], f"unknown key{hint}"
                            f" (known keys: {', '.join(SWEEP_KEYS)})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise SpecError(source, "name", "expected a non-empty string")
    base_map, base_source, base_dir_used = _base(data, source, here, name)

    axes: list[Axis] = []
    varied: set[str] = set()

    def vary(key: Any, where: str) -> None:
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
            _check_count(axes, source, "grid")
    zipped = data.get("zip")
    if zipped is not None:
        groups = zipped if isinstance(zipped, list) else [zipped]
        for gi, group in enumerate(groups):
            where = "zip" if isinstance(zipped, dict) else f"zip.{gi}"
            axes.append(_zip_axis(group, source, where, vary))
            _check_count(axes, source, "grid" if grid else where)
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


def _zip_axis(group: Any, source: str, where: str, vary: Any) -> Axis:
    if not isinstance(group, dict) or not group:
        raise SpecError(source, where, "expected a mapping of dotted keys to lists of "
                        "equal length")
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
    if len({_value_key(t) for t in tuples}) != len(tuples):
        raise SpecError(source, where, "two zipped points are the same")
    return tuple(lists), tuples


def _check_base_keys(spec: SweepSpec) -> None:
    """An unknown key in the base deployment is a bad file whatever the point: one
    located line now, not every point failing with it. (Other problems may hold for
    some points only; those become the points' errors.)"""
    from wsesim.specs import deployment_from_mapping
    try:
        deployment_from_mapping(apply_point(spec.base, spec.points()[0], spec.base_dir),
                                spec.base_source, Path(spec.base_dir))
    except SpecError as exc:
        # a key under a swept key is that value's own error, reported with its row
        swept = any(exc.key == k or exc.key.startswith(k + ".") for k in spec.param_keys)
        if exc.message.startswith("unknown key") and not swept:
            raise
    except Exception:  # noqa: BLE001 - the point's own error, reported with its row
        pass
