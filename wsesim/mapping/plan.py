"""The plan: which stages (a layer's attention or MLP, the embeddings, the LM head) live
on which wafer, on which rectangle of PEs, and how each tensor is cut into PE blocks.

Layers go to wafers in contiguous ranges (embeddings on the first, final norm and LM
head on the last). On each wafer the stages are cut into contiguous blocks, one region
per block, whose area follows its bytes; the stages of a block share its region and run
one after another on it. ``pipeline``: one block per stage; ``sequential``: one block
per wafer, its region the whole used grid; ``grouped``: ``regions_per_wafer`` blocks.
Ranges and blocks are balanced by bytes (the fullest as light as can be) or by time
(the slowest as quick as can be).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal, Mapping

import numpy as np
import numpy.typing as npt

from wsesim.errors import KeyedError
from wsesim.mapping.layout import Region, layout_regions
from wsesim.mapping.partition import partition_contiguous
from wsesim.mapping.tiling import Axis, KVCache, TensorBlock, split_units
from wsesim.quant import QuantFormat
from wsesim.quant.sizes import block_bytes
from wsesim.specs import Deployment, TensorShape

ONE, ZERO = np.int64(1), np.int64(0)  # a buffer is one row; float formats have no groups

Part = Literal["embedding", "attention", "mlp", "lm_head"]


@dataclass(frozen=True)
class ActivationBuffers:
    """Activation buffers of a stage, one token in flight (a stated assumption): the PE's
    slice of the residual stream, the input and output slices of its largest matrix
    block (an embedding stage: its slice of the looked-up row), and in an attention
    stage one sequence's scores for its local tokens and the heads of its columns."""

    fmt: QuantFormat
    hidden_size: int
    attention_heads: int = 0  # heads whose scores this stage keeps (attention only)

    def bytes_per_pe(self, content: "StageContent", rows: int, cols: int,
                     peak: bool = False, context: int | None = None
                     ) -> npt.NDArray[np.int64]:
        """Buffer bytes per PE (broadcastable to rows x cols); ``peak``: a 1 x 1 upper
        bound on their largest, from 1-D cuts only (to rate layouts quickly);
        ``context``: scores of a sequence of that many tokens (default: as many as the
        stage's KV cache holds)."""
        kv = content.kv
        if kv is not None and context is not None:
            kv = dataclasses.replace(kv, tokens_per_sequence=context)
        return _buffer_bytes(self, content.part, content.tensors, kv, rows, cols, peak)

    def _bytes_per_pe(self, part: Part, tensors: tuple[TensorBlock, ...],
                      kv: KVCache | None, rows: int, cols: int, peak: bool
                      ) -> npt.NDArray[np.int64]:
        def fold(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            return np.max(a, keepdims=True) if peak else a

        elems = np.zeros((1, 1), np.int64)
        for tb in tensors:
            if tb.is_vector:
                continue
            k, _, n = tb.cuts(rows, cols)
            # a lookup returns a slice of one row; a matrix-vector product needs its input
            # and output slices
            elems = np.maximum(elems, fold(k) if part == "embedding" else fold(k) + fold(n))
        elems = elems + fold(split_units(self.hidden_size, rows)[:, None])
        if kv is not None and self.attention_heads:
            heads_per_col = -(-self.attention_heads // cols)
            elems = elems + fold(kv.tokens_per_pe(rows)) * heads_per_col
        return np.asarray(block_bytes(self.fmt, ONE, elems, ZERO).total)


@lru_cache(maxsize=1 << 14)
def _buffer_bytes(buffers: ActivationBuffers, part: Part, tensors: tuple[TensorBlock, ...],
                  kv: KVCache | None, rows: int, cols: int, peak: bool
                  ) -> npt.NDArray[np.int64]:
    return buffers._bytes_per_pe(part, tensors, kv, rows, cols, peak)


@dataclass(frozen=True, eq=False)
class StageContent:
    """What a stage stores: its tensors and KV cache. Every layer's attention (and every
    layer's MLP) shares one content object, so work on it is done once per plan."""

    part: Part
    tensors: tuple[TensorBlock, ...]
    buffers: ActivationBuffers
    kv: KVCache | None = None
    _peaks: dict[tuple[int, int], int] = dataclasses.field(
        default_factory=dict, repr=False)

    @cached_property
    def whole_bytes(self) -> int:
        """Bytes of everything the stage stores, packed whole (before cutting)."""
        return sum(t.whole_bytes() for t in self.tensors) + (
            self.kv.whole_bytes() if self.kv else 0)

    def peak_bytes(self, rows: int, cols: int) -> int:
        """An upper bound on the fullest PE's bytes (tensors, KV, buffers) on a rows x
        cols region: the sum of each one's largest block, cheap enough to rate layouts."""
        key = (rows, cols)
        if key not in self._peaks:
            self._peaks[key] = sum(t.peak_bytes(rows, cols) for t in self.tensors) + (
                self.kv.peak_bytes(rows, cols) if self.kv else 0) + int(
                self.buffers.bytes_per_pe(self, rows, cols, peak=True).max())
        return self._peaks[key]

    def stored_bytes_low(self, rows: int, cols: int) -> float:
        """A lower bound on the bytes the region's PEs store for this stage together
        (tensors and KV as cut, groups stored twice included; buffers left out)."""
        return sum(t.stored_bytes_low(rows, cols) for t in self.tensors) + (
            self.kv.stored_bytes_low(rows, cols) if self.kv else 0.0)

    def buffer_bytes(self, rows: int, cols: int) -> npt.NDArray[np.int64]:
        """Activation buffer bytes per PE (broadcastable to rows x cols)."""
        return self.buffers.bytes_per_pe(self, rows, cols)


@dataclass(frozen=True)
class Stage:
    """A unit of work (a layer's attention or MLP, the embeddings, the LM head) placed on
    a region of one wafer."""

    index: int
    name: str
    layer: int | None
    content: StageContent
    region: Region | None = None

    @property
    def part(self) -> Part:
        return self.content.part

    @property
    def tensors(self) -> tuple[TensorBlock, ...]:
        return self.content.tensors

    @property
    def kv(self) -> KVCache | None:
        return self.content.kv


@dataclass(frozen=True)
class WaferPlan:
    wafer: int
    stages: tuple[Stage, ...]

    @property
    def layers(self) -> tuple[int, int] | None:
        """First and last transformer layer on this wafer (None if it holds none)."""
        idx = [s.layer for s in self.stages if s.layer is not None]
        return (min(idx), max(idx)) if idx else None


@dataclass(frozen=True)
class Plan:
    deployment: Deployment
    wafers: tuple[WaferPlan, ...]
    choice: Choice                  # what the plan was made with
    notes: tuple[str, ...] = ()

    @property
    def strategy(self) -> str:
        return self.choice.strategy

    @property
    def stages(self) -> list[Stage]:
        return [s for w in self.wafers for s in w.stages]


def stage_units(dep: Deployment, wafers: int) -> tuple[list[list[Stage]], list[str]]:
    """Stages grouped into the units a wafer boundary may not cut: the embeddings, each
    layer (attention + MLP), the final norm with the LM head."""
    m, q = dep.model, dep.quantization
    wl = dep.workload
    notes: list[str] = []
    order = 0

    def stage(name: str, layer: int | None, content: StageContent) -> Stage:
        nonlocal order
        order += 1
        return Stage(order - 1, name, layer, content)

    def block(t: TensorShape, k_axis: Axis) -> TensorBlock:
        fmt = {"linear": q.weights, "embedding": q.embeddings}.get(t.kind, _FP16)
        return TensorBlock(t, fmt, k_axis)

    units: list[list[Stage]] = []
    if m.attention_window is not None:
        notes.append(
            f"sliding window: each token attends to at most the last "
            f"{m.attention_window:,} tokens, and the KV cache holds {dep.kv_tokens:,} "
            f"tokens per sequence (of a {wl.context_tokens:,}-token context)")
    buffers = ActivationBuffers(q.activations, m.hidden_size)
    shared_table = m.tie_word_embeddings and wafers == 1
    if not shared_table:
        embed = StageContent("embedding", (block(m.embedding_tensor(), "cols"),), buffers)
        units.append([stage("embeddings", None, embed)])
    if m.tie_word_embeddings:
        notes.append(
            "tied embeddings: the LM head's table also serves the token lookup"
            if shared_table else
            "tied embeddings: the table is stored twice (first wafer for the lookup, "
            "last wafer for the LM head)")
    # q/k/v and gate/up take the residual stream cut along rows; o and down take their
    # input cut along columns; a bias follows its matrix's outputs, a norm its input.
    along_cols = ("o_proj", "down_proj", "q_proj.bias", "k_proj.bias", "v_proj.bias",
                  "gate_proj.bias", "up_proj.bias")
    attention = StageContent(
        "attention",
        tuple(block(t, "cols" if t.name in along_cols else "rows")
              for t in m.attention_tensors()),
        ActivationBuffers(q.activations, m.hidden_size, m.num_attention_heads),
        KVCache(wl.batch_size, dep.kv_tokens, m.kv_dim, q.kv_cache))
    mlp = StageContent("mlp", tuple(block(t, "cols" if t.name in along_cols else "rows")
                                    for t in m.mlp_tensors()), buffers)
    for layer in range(m.num_hidden_layers):
        units.append([stage(f"layer {layer} attention", layer, attention),
                      stage(f"layer {layer} MLP", layer, mlp)])
    norm, head = m.head_tensors()
    head_content = StageContent("lm_head", (block(norm, "rows"), block(head, "rows")),
                                buffers)
    units.append([stage("final norm + LM head", None, head_content)])
    return units, notes


_FP16 = QuantFormat(bits=16)


def max_wafers(dep: Deployment) -> int:
    """More wafers than units (embeddings, layers, head) would leave a wafer empty."""
    return dep.model.wafer_units


@dataclass(frozen=True)
class Choice:
    """The mapping decisions a plan is made with: the strategy, the regions per wafer
    (grouped), and what ranges and blocks are balanced by."""

    strategy: Literal["pipeline", "sequential", "grouped"] = "pipeline"
    regions_per_wafer: int | None = None
    balance: Literal["bytes", "time"] = "bytes"

    @classmethod
    def of(cls, dep: Deployment) -> "Choice":
        """The choice a deployment asks for (``auto`` is the search's to make)."""
        m = dep.mapping
        strategy = "pipeline" if m.strategy == "auto" else m.strategy
        return cls(strategy, m.regions_per_wafer, m.balance)

    def blocks_on(self, stages: int) -> int:
        """Blocks (regions) for a wafer of ``stages`` stages."""
        if self.strategy == "sequential":
            return 1
        if self.strategy == "pipeline":
            return stages
        return max(1, min(stages, self.regions_per_wafer or 1))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Choice":
        """The choice an answer's ``mapping``, a search candidate or a plan row names."""
        return cls(row["strategy"], row.get("regions_per_wafer"), row.get("balance", "bytes"))

    def describe(self) -> str:
        """The choice in words (``grouped, 4 regions per wafer, balanced by time``)."""
        words = self.strategy
        if self.strategy == "grouped":
            words += f", {self.regions_per_wafer} regions per wafer"
        return words + (", balanced by time" if self.balance == "time" else "")


@lru_cache(maxsize=1 << 16)
def _block_peak(contents: tuple[StageContent, ...], rows: int, cols: int) -> int:
    """An upper bound on the fullest PE of a region holding these stages."""
    return sum(c.peak_bytes(rows, cols) for c in contents)


def _layout(stages: list[Stage], blocks: list[range], rows: int, cols: int
            ) -> list[Region]:
    """One region per block (the whole grid for one block), area ~ the block's bytes,
    the band layout whose fullest PE is smallest."""
    if len(blocks) == 1:
        return [Region(0, 0, 0, rows, cols)]
    contents = [tuple(stages[i].content for i in b) for b in blocks]
    try:
        return layout_regions(
            [max(sum(c.whole_bytes for c in cs), 1) for cs in contents], rows, cols,
            score=lambda i, r, c: _block_peak(contents[i], r, c))
    except ValueError as exc:
        raise KeyedError("mapping.grid", f"{exc}: too small a grid for a pipeline of "
                         "these stages; use more wafers, fewer regions per wafer or "
                         "strategy: sequential") from None


def make_plan(dep: Deployment, wafers: int, choice: Choice | None = None,
              unit_weights: list[float] | None = None,
              stage_weights: list[float] | None = None,
              units: tuple[list[list[Stage]], list[str]] | None = None) -> Plan:
    """Place every stage of ``dep`` on ``wafers`` wafers (every layer exactly once) as
    ``choice`` says (default: what the deployment asks for). Ranges of units across
    wafers and blocks of stages across regions balance ``unit_weights`` and
    ``stage_weights`` (default: the bytes each stores; the time-balanced search passes
    times). ``units``: :func:`stage_units` of the same deployment and wafer count, when
    the caller already has them (a search makes many plans of one deployment)."""
    choice = choice or Choice.of(dep)
    units, notes = units or stage_units(dep, wafers)
    if wafers > len(units):
        raise ValueError(f"{wafers} wafers exceed the {len(units)} units that can be split")
    all_stages = [s for u in units for s in u]
    if stage_weights is None:
        stage_weights = [float(s.content.whole_bytes) for s in all_stages]
    if unit_weights is None:
        unit_weights, i = [], 0
        for u in units:
            unit_weights.append(sum(stage_weights[i:i + len(u)]))
            i += len(u)
    rows, cols = dep.grid_shape
    wafer_plans = []
    layouts: dict[tuple, list[Region]] = {}  # wafers holding alike stages alike
    starts = [0]
    for u in units:
        starts.append(starts[-1] + len(u))
    for w, unit_range in enumerate(partition_contiguous(unit_weights, wafers)):
        lo, hi = starts[unit_range.start], starts[unit_range.stop]
        stages = all_stages[lo:hi]
        weights = stage_weights[lo:hi]
        blocks = partition_contiguous(weights, choice.blocks_on(len(stages)))
        alike = (tuple(id(s.content) for s in stages), tuple(len(b) for b in blocks))
        if alike not in layouts:
            layouts[alike] = _layout(stages, blocks, rows, cols)
        regions = [dataclasses.replace(r, wafer=w) for r in layouts[alike]]
        placed = [dataclasses.replace(s, region=regions[b])
                  for b, block in enumerate(blocks) for s in (stages[i] for i in block)]
        wafer_plans.append(WaferPlan(w, tuple(placed)))
    return Plan(dep, tuple(wafer_plans), choice, tuple(notes))
