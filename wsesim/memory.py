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

import numpy as np
import numpy.typing as npt

from wsesim.mapping.layout import Region
from wsesim.mapping.plan import Plan, Stage
from wsesim.quant import PackedBytes, packed_bytes

CATEGORIES = ("weights", "quant_metadata", "kv_cache", "activations")
Array = npt.NDArray[np.int64]


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
        int(np.broadcast_to(packed.payload, shape).sum()),
        int(np.broadcast_to(packed.metadata, shape).sum()),
        int(whole.payload), int(whole.metadata),
        int(total.max()) * total.size - int(total.sum()))


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
        packed = packed_bytes(tb.fmt, *_nkg(tb, rows, cols))
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


def _nkg(tb, rows: int, cols: int):
    k, groups, n = tb.cuts(rows, cols)
    return n, k, groups


@dataclass
class WaferMemory:
    """Per-PE bytes on one wafer's used grid, by category (int64 arrays, rows x cols)."""

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
    """Per-PE SRAM of a whole plan, with totals and the split waste."""

    plan: Plan
    wafers: list[WaferMemory]
    by_tensor: dict[str, TensorTotals]  # summed over every stage holding the tensor

    @property
    def pe_sram_bytes(self) -> int:
        return self.plan.deployment.hardware.pe_sram_bytes

    def total(self, category: str) -> int:
        if category == "runtime_reserved":
            return sum(w.reserve_bytes * w.weights.size for w in self.wafers)
        return int(sum(int(getattr(w, category).sum()) for w in self.wafers))

    def fullest_pe(self) -> FullestPE:
        best = max(self.wafers, key=lambda w: int(w.used.max()))
        used = best.used
        row, col = np.unravel_index(int(np.argmax(used)), used.shape)
        sid = int(best.stage_map[row, col])
        stage_name = ("several stages (sequential)" if sid == -2 else
                      "no stage" if sid == -1 else self.plan.stages[sid].name)
        by_cat = {c: int(getattr(best, c)[row, col]) for c in CATEGORIES}
        by_cat["runtime_reserved"] = best.reserve_bytes
        return FullestPE(best.wafer, int(row), int(col), int(used[row, col]), by_cat,
                         stage_name)

    @property
    def fits(self) -> bool:
        return self.fullest_pe().bytes <= self.pe_sram_bytes


def _stage_key(stage: Stage) -> tuple:
    r = stage.region
    assert r is not None
    return (stage.content, r.rows, r.cols)


RegionStages = list[tuple[StageBytes, list[Stage]]]


def _by_region(plan: Plan, stages: list[Stage], cache: dict[tuple, StageBytes]
               ) -> dict[Region, RegionStages]:
    """Stages grouped by region, identical stages (every layer's attention, say) sharing
    one StageBytes, computed once."""
    regions: dict[Region, dict[tuple, tuple[StageBytes, list[Stage]]]] = {}
    for stage in stages:
        key = _stage_key(stage)
        if key not in cache:
            cache[key] = stage_bytes(stage)
        assert stage.region is not None
        group = regions.setdefault(stage.region, {})
        group.setdefault(key, (cache[key], []))[1].append(stage)
    return {r: list(g.values()) for r, g in regions.items()}


def _window(r: Region) -> tuple[slice, slice]:
    return (slice(r.row0, r.row0 + r.rows), slice(r.col0, r.col0 + r.cols))


def build_ledger(plan: Plan) -> MemoryLedger:
    """Per-PE arrays for every wafer of a plan."""
    dep = plan.deployment
    rows, cols = dep.grid_shape
    reserve = dep.hardware.runtime_reserve_bytes
    cache: dict[tuple, StageBytes] = {}
    by_tensor: dict[str, TensorTotals] = {}
    wafers = []
    for wp in plan.wafers:
        arrays = {c: np.zeros((rows, cols), np.int64) for c in CATEGORIES}
        stage_map = np.full((rows, cols), -1, np.int32)
        for region, groups in _by_region(plan, list(wp.stages), cache).items():
            window = _window(region)
            for sb, stages in groups:
                m = len(stages)
                for c in ("weights", "quant_metadata", "kv_cache"):
                    arrays[c][window] += getattr(sb, c) * m
                np.maximum(arrays["activations"][window], sb.activations,
                           out=arrays["activations"][window])
                for name, totals in sb.by_tensor.items():
                    by_tensor.setdefault(name, TensorTotals()).add(totals, m)
            only = groups[0][1][0].index if len(groups) == 1 and len(groups[0][1]) == 1 \
                else -2
            stage_map[window] = only
        wafers.append(WaferMemory(wp.wafer, arrays["weights"], arrays["quant_metadata"],
                                  arrays["kv_cache"], arrays["activations"], reserve,
                                  stage_map))
    return MemoryLedger(plan, wafers, by_tensor)


def fullest_pe_bytes(plan: Plan) -> int:
    """Bytes of the fullest PE, region by region, without whole-wafer arrays (what the
    search for the fewest wafers needs; equals ``build_ledger(plan).fullest_pe().bytes``)."""
    cache: dict[tuple, StageBytes] = {}
    fullest = 0
    for region, groups in _by_region(plan, plan.stages, cache).items():
        stored = sum((sb.weights + sb.quant_metadata + sb.kv_cache) * len(stages)
                     for sb, stages in groups)
        act = np.maximum.reduce([sb.activations for sb, _ in groups])
        fullest = max(fullest, int(np.max(stored + act)))
    return fullest + plan.deployment.hardware.runtime_reserve_bytes
