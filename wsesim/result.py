"""What a run answers, as plain JSON-serialisable dataclasses (no arrays, no YAML)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wsesim import __version__


@dataclass
class ModelSummary:
    name: str
    parameters: int
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    source: str | None


@dataclass
class HardwareSummary:
    name: str
    grid: list[int]          # rows, cols used on each wafer
    pe_sram_bytes: int
    runtime_reserve_bytes: int
    clock_hz: float


@dataclass
class FullestPESummary:
    wafer: int
    row: int
    col: int
    stage: str
    bytes: int
    by_category: dict[str, int]


@dataclass
class MemorySummary:
    """Bytes summed over every PE of every wafer, as stored (after cutting tensors into
    PE blocks), plus the per-PE fit."""

    weights_bytes: int            # every stored parameter payload, no scales/zeros
    quant_metadata_bytes: int     # scales and zero points
    kv_cache_bytes: int
    activation_bytes: int
    runtime_reserved_bytes: int
    total_bytes: int
    capacity_bytes: int           # wafers x PEs x SRAM per PE
    pe_sram_bytes: int
    max_pe_bytes: int             # the fullest PE, runtime reserve included
    fits: bool
    limiting: str
    items: dict[str, int]         # the itemized breakdown behind the totals
    fullest_pe: FullestPESummary
    naive_weights_bytes: int      # parameters x weight bits / 8: the envelope figure


@dataclass
class MinWafersDetail:
    """By how much the last wafer count that did not fit missed: the count just below
    ``min_wafers``, or, when no count fits, the largest count tried."""

    wafers: int                   # the count that does not fit
    over_bytes: int               # bytes above SRAM on its fullest PE
    exact: bool                   # False: over_bytes is a lower bound (not planned)
    fullest_pe: FullestPESummary | None   # where, when exact
    summary: str                  # the same in words


@dataclass
class RegionSummary:
    stage: str
    row: int
    col: int
    rows: int
    cols: int
    max_pe_bytes: int


@dataclass
class WaferSummary:
    wafer: int
    layers: list[int] | None      # [first, last] transformer layer, inclusive
    holds: list[str]              # embeddings / layers / LM head, in words
    used_bytes: int
    capacity_bytes: int
    max_pe_bytes: int
    fits: bool
    regions: list[RegionSummary]


@dataclass
class Result:
    name: str
    model: ModelSummary
    hardware: HardwareSummary
    wafers: int
    strategy: str
    quantization: dict[str, str]
    workload: dict[str, int]
    memory: MemorySummary
    partition: list[WaferSummary]
    min_wafers: int | None
    min_wafers_detail: MinWafersDetail | None = None
    performance: dict[str, Any] | None = None
    mapping: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wsesim_version: str = __version__   # the version that computed this answer
    # the arrays behind the numbers (heatmaps, traces); not part of the JSON
    plan: Any = field(default=None, repr=False, compare=False, metadata={"internal": True})
    ledger: Any = field(default=None, repr=False, compare=False, metadata={"internal": True})
    perf_model: Any = field(default=None, repr=False, compare=False,
                            metadata={"internal": True})
    timeline: Any = field(default=None, repr=False, compare=False,
                          metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable answer (the contract's keys and the itemized detail),
        the version that computed it first."""
        out = {"wsesim_version": self.wsesim_version}
        out.update((f.name, _plain(getattr(self, f.name))) for f in dataclasses.fields(self)
                   if not f.metadata.get("internal") and f.name != "wsesim_version")
        return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
