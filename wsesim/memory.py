"""The memory ledger: what occupies each PE's SRAM, as numpy arrays over the grid.

Per PE it counts the blocks of every tensor its stage holds (packed payload and, apart,
quantization scales and zeros, in the sizes the real packers produce), the stage's
share of the KV cache, activation buffers, and the runtime's reserve. A deployment fits
only if every PE fits.

Activation buffers (a stated assumption): one token in flight per stage, so a PE holds
its slice of the residual stream, the input and output slices of its largest matrix
block, and, in an attention stage, one sequence's scores for its local tokens and heads,
all at the activation precision. Buffers are reused from one operation to the next, so
a PE that holds several stages (``sequential``) needs the largest, not the sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from wsesim.mapping.layout import Region
from wsesim.mapping.plan import Plan, Stage
from wsesim.quant import PackedBytes

CATEGORIES = ("weights", "quant_metadata", "kv_cache", "activations")
Array = npt.NDArray[np.int64]
_SAFE = 2**62   # |partial sum| below this cannot wrap int64


def exact_sum(values: npt.ArrayLike) -> int:
    """The sum of an integer array as an exact Python int.

    Per-PE bytes fit int64 (the specs' bounds keep them below 2**55), but their sum over
    millions of PEs and thousands of wafers need not: numpy's int64 sum would wrap
    silently. Fast path: one numpy sum when ``max |value| x size < 2**62``; otherwise
    numpy sums of chunks short enough not to wrap, added as Python ints."""
    a = np.asarray(values).ravel()
    if a.size == 0:
        return 0
    peak = max(abs(int(a.max())), abs(int(a.min())))
    if peak == 0:
        return 0
    if peak * a.size < _SAFE:
        return int(a.sum(dtype=np.int64))
    chunk = _SAFE // peak
    if chunk < 2:
        return sum(int(v) for v in a.tolist())
    return sum(int(a[i:i + chunk].sum(dtype=np.int64)) for i in range(0, a.size, chunk))


@dataclass
class StageBytes:
    """Per-PE bytes of one stage over its region, by category (arrays of its shape)."""

    weights: Array
    quant_metadata: Array
    kv_cache: Array
    activations: Array
    by_tensor: dict[str, "TensorTotals"] = field(default_factory=dict)


@dataclass
class TensorTotals:
    """One tensor (or a layer's KV cache) summed over the PEs that hold it."""

    payload_bytes: int = 0          # over all PEs, as cut
    metadata_bytes: int = 0         # scales and zeros over all PEs, as cut
    whole_payload_bytes: int = 0    # packed as one tensor, one copy
    whole_metadata_bytes: int = 0
    imbalance_bytes: int = 0        # PEs x largest block - sum of blocks

    def add(self, other: "TensorTotals", times: int = 1) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + times * getattr(other, name))


def _totals(packed: PackedBytes, whole: PackedBytes, shape: tuple[int, int]
            ) -> TensorTotals:
    total = np.broadcast_to(packed.total, shape)
    return TensorTotals(
        exact_sum(np.broadcast_to(packed.payload, shape)),
        exact_sum(np.broadcast_to(packed.metadata, shape)),
        int(whole.payload), int(whole.metadata),
        int(total.max()) * total.size - exact_sum(total))


def stage_bytes(stage: Stage) -> StageBytes:
    """Per-PE bytes of a stage, by category, over its region."""
    region = stage.region
    assert region is not None
    rows, cols = region.rows, region.cols
    shape = (rows, cols)
    weights = np.zeros(shape, np.int64)
    meta = np.zeros(shape, np.int64)
    by_tensor: dict[str, TensorTotals] = {}
    for tb in stage.tensors:
        packed = tb.blocks(rows, cols)
        weights += packed.payload
        meta += packed.metadata
        by_tensor[tb.tensor.name] = _totals(packed, tb.whole(), shape)
    kv = np.zeros(shape, np.int64)
    if stage.kv is not None:
        packed = stage.kv.blocks(rows, cols)
        kv += packed.total
        by_tensor["kv_cache"] = _totals(packed, stage.kv.whole(), shape)
    act = np.broadcast_to(stage.content.buffer_bytes(rows, cols), shape)
    return StageBytes(weights, meta, kv, act, by_tensor)


@dataclass
class RegionBytes:
    """Per-PE bytes of a region's contents by category: int64 arrays of its shape. Regions
    of the same shape holding the same stages (every layer's MLP, say) share one."""

    weights: Array
    quant_metadata: Array
    kv_cache: Array
    activations: Array
    reserve_bytes: int
    sram_bytes: int

    @cached_property
    def used(self) -> Array:
        """Bytes per PE including the runtime reserve."""
        return (self.weights + self.quant_metadata + self.kv_cache + self.activations
                + self.reserve_bytes)

    @cached_property
    def peak(self) -> int:
        return int(self.used.max())

    @cached_property
    def total(self) -> int:
        return exact_sum(self.used)

    @cached_property
    def free_and_overflow(self) -> tuple[int, int]:
        """SRAM left on PEs that fit; bytes above SRAM on PEs that do not."""
        return (exact_sum(np.maximum(self.sram_bytes - self.used, 0)),
                exact_sum(np.maximum(self.used - self.sram_bytes, 0)))


@dataclass
class RegionMemory:
    """One region of one wafer (a stage's, or in ``sequential`` the whole grid shared by
    several stages) and its per-PE bytes."""

    region: Region
    stages: list[Stage]
    bytes: RegionBytes

    weights = property(lambda self: self.bytes.weights)
    quant_metadata = property(lambda self: self.bytes.quant_metadata)
    kv_cache = property(lambda self: self.bytes.kv_cache)
    activations = property(lambda self: self.bytes.activations)
    used = property(lambda self: self.bytes.used)

    @property
    def label(self) -> str:
        return self.stages[0].name if len(self.stages) == 1 else \
            f"{len(self.stages)} stages sharing the grid"


@dataclass
class WaferMemory:
    """Per-PE bytes on one wafer's used grid, by category (int64 arrays, rows x cols);
    PEs outside every region hold only the runtime reserve."""

    wafer: int
    weights: Array
    quant_metadata: Array
    kv_cache: Array
    activations: Array
    reserve_bytes: int
    stage_map: npt.NDArray[np.int32]  # stage index per PE; -1 none; -2 several (sequential)

    @cached_property
    def used(self) -> Array:
        """Bytes per PE including the runtime reserve."""
        return (self.weights + self.quant_metadata + self.kv_cache + self.activations
                + self.reserve_bytes)


@dataclass(frozen=True)
class FullestPE:
    wafer: int
    row: int
    col: int
    bytes: int
    by_category: dict[str, int]
    stage: str


@dataclass
class MemoryLedger:
    """Per-PE SRAM of a whole plan, region by region, with totals and the cut waste.
    Whole-wafer arrays (for heatmaps) are assembled on demand by :meth:`wafer`."""

    plan: Plan
    regions: list[RegionMemory]
    by_tensor: dict[str, TensorTotals]  # summed over every stage holding the tensor
    _wafers: dict[int, WaferMemory] = field(default_factory=dict, repr=False)

    @property
    def deployment(self):
        return self.plan.deployment

    @property
    def pe_sram_bytes(self) -> int:
        return self.deployment.hardware.pe_sram_bytes

    @property
    def reserve_bytes(self) -> int:
        return self.deployment.hardware.runtime_reserve_bytes

    @property
    def pes_per_wafer(self) -> int:
        rows, cols = self.deployment.grid_shape
        return rows * cols

    def total(self, category: str) -> int:
        """Bytes of one category summed over every PE of every wafer."""
        if category == "runtime_reserved":
            return self.reserve_bytes * self.pes_per_wafer * len(self.plan.wafers)
        return sum(exact_sum(getattr(r, category)) for r in self.regions)

    def idle_pes(self, wafer: int | None = None) -> int:
        """PEs that hold no stage (only the runtime)."""
        wafers = range(len(self.plan.wafers)) if wafer is None else [wafer]
        return sum(self.pes_per_wafer - sum(r.region.pes for r in self.regions
                                            if r.region.wafer == w) for w in wafers)

    def free_and_overflow_bytes(self) -> tuple[int, int]:
        """SRAM left free on PEs that fit, and bytes above SRAM on PEs that do not."""
        sram = self.pe_sram_bytes
        free = self.idle_pes() * (sram - self.reserve_bytes)
        over = 0
        for r in self.regions:
            f, o = r.bytes.free_and_overflow
            free, over = free + f, over + o
        return free, over

    def fullest_pe(self) -> FullestPE:
        best = max(self.regions, key=lambda r: r.bytes.peak)
        row, col = np.unravel_index(int(np.argmax(best.used)), best.used.shape)
        by_cat = {c: int(getattr(best, c)[row, col]) for c in CATEGORIES}
        by_cat["runtime_reserved"] = self.reserve_bytes
        reg = best.region
        return FullestPE(reg.wafer, reg.row0 + int(row), reg.col0 + int(col),
                         int(best.used[row, col]), by_cat, best.label)

    @property
    def fits(self) -> bool:
        return self.fullest_pe().bytes <= self.pe_sram_bytes

    def _paint(self, index: int, fill: Any, dtype: Any, value: Callable) -> Array:
        """A whole-grid array of one wafer: ``fill`` off every region, ``value(region)``
        on each region's PEs."""
        out = np.full(self.deployment.grid_shape, fill, dtype)
        for r in self.regions:
            if r.region.wafer == index:
                out[_window(r.region)] = value(r)
        return out

    def used_map(self, index: int) -> Array:
        """Bytes per PE of one wafer, runtime reserve included (not cached)."""
        return self._paint(index, self.reserve_bytes, np.int64, lambda r: r.used)

    def stage_map(self, index: int) -> npt.NDArray[np.int32]:
        """Stage index per PE of one wafer: -1 none, -2 several (``sequential``)."""
        return self._paint(index, -1, np.int32,
                           lambda r: r.stages[0].index if len(r.stages) == 1 else -2)

    def wafer(self, index: int) -> WaferMemory:
        """Whole-grid arrays of one wafer by category (built once, on first use)."""
        if index not in self._wafers:
            arrays = [self._paint(index, 0, np.int64, lambda r, c=c: getattr(r, c))
                      for c in CATEGORIES]
            self._wafers[index] = WaferMemory(index, *arrays, self.reserve_bytes,
                                              self.stage_map(index))
        return self._wafers[index]

    @property
    def wafers(self) -> list[WaferMemory]:
        return [self.wafer(w) for w in range(len(self.plan.wafers))]


def _stage_key(stage: Stage) -> tuple:
    r = stage.region
    assert r is not None
    return (stage.content, r.rows, r.cols)


def _window(r: Region) -> tuple[slice, slice]:
    return (slice(r.row0, r.row0 + r.rows), slice(r.col0, r.col0 + r.cols))


def build_ledger(plan: Plan) -> MemoryLedger:
    """Per-PE bytes of every region of a plan. Stages alike in content and region shape
    (every layer's attention, say) are computed once; stages sharing a region (the
    ``sequential`` strategy) add up, except activation buffers, which are reused."""
    reserve = plan.deployment.hardware.runtime_reserve_bytes
    stage_cache: dict[tuple, StageBytes] = {}
    by_region: dict[Region, dict[tuple, list[Stage]]] = {}
    for stage in plan.stages:
        key = _stage_key(stage)
        if key not in stage_cache:
            stage_cache[key] = stage_bytes(stage)
        assert stage.region is not None
        by_region.setdefault(stage.region, {}).setdefault(key, []).append(stage)
    counts: dict[tuple, int] = {}
    region_cache: dict[tuple, RegionBytes] = {}
    regions = []
    for region, groups in by_region.items():
        contents = tuple((key, len(stages)) for key, stages in groups.items())
        if contents not in region_cache:
            sums = {c: np.zeros((region.rows, region.cols), np.int64) for c in CATEGORIES}
            for key, times in contents:
                sb = stage_cache[key]
                for c in ("weights", "quant_metadata", "kv_cache"):
                    sums[c] += getattr(sb, c) * times
                np.maximum(sums["activations"], sb.activations, out=sums["activations"])
            region_cache[contents] = RegionBytes(*(sums[c] for c in CATEGORIES), reserve,
                                                 plan.deployment.hardware.pe_sram_bytes)
        for key, times in contents:
            counts[key] = counts.get(key, 0) + times
        regions.append(RegionMemory(region, [s for g in groups.values() for s in g],
                                    region_cache[contents]))
    by_tensor: dict[str, TensorTotals] = {}
    for key, times in counts.items():
        for name, totals in stage_cache[key].by_tensor.items():
            by_tensor.setdefault(name, TensorTotals()).add(totals, times)
    return MemoryLedger(plan, regions, by_tensor)


def fullest_pe_bytes(plan: Plan) -> int:
    """Bytes of the fullest PE of a plan (what the search for the fewest wafers asks)."""
    return build_ledger(plan).fullest_pe().bytes
