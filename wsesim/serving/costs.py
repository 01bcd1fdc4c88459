"""Cycles of one micro-batch at every element of a plan's timeline (the same elements,
in the same order, as the run's simulation: :class:`wsesim.sim.tile.Pipeline`).

A micro-batch is either one prompt chunk of one request, or the decode tokens of b
sequences (each its next token). A prompt chunk costs what ``wsesim run`` prices it at.
b decode tokens at a stage cost the closed forms at b tokens (``stage_cost(..., tokens=b)``:
one matrix-matrix product, the weights read and dequantized once, where that is cheaper
than b matrix-vector products) except for what attention does per sequence: each
sequence's scores and weighted values against its own KV cache, one sequence after
another, at its own context length. So an attention stage costs
``P(b) + sum_i (A(c_i) - A(0))``, with ``P(b)`` the stage at b tokens and no context (its
projections, norms and collectives, the collectives of all sequences in one call each)
and ``A(c)`` one token at context ``c``; at b = 1 it is exactly the run's cost. Paths,
links and the way back carry b tokens' activations (b token ids).

Each element's costs are computed once per batch size (and per prompt chunk) with numpy
and cached, attention's one-token cost once per context length (a table over every
element when it holds at most ``MAX_CONTEXT_TABLE`` values, else one per attention
shape); a micro-batch's costs are then a few array lookups. What grows with the
requests (prompt chunks, the pieces they are made of) is kept in one cache of at most
``MAX_KEPT_BYTES``, least recently used dropped first; what grows with the batch size is
bounded by ``serving.max_stage_batch``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.mapping.plan import Plan, Stage
from wsesim.perf.cost import Cost
from wsesim.perf.model import (  # the run's own path and edge costs: both price alike
    TOKEN_ID_BYTES,
    edge_out,
    group_name,
    hops_between,
    region_groups,
    region_path,
)
from wsesim.perf.stages import Kernels, lm_head_cost, prefill_cost, stage_cost

MAX_CONTEXT_TABLE = 1 << 22   # elements x context lengths kept as one table (32 MB)
MAX_KEPT_BYTES = 1 << 27      # the cache of prompt chunks and their pieces: 128 MB
# Bytes of one cache entry besides its arrays' data: its key, its value's tuple, the
# arrays' headers and the dict's link (385 to 540 bytes measured with tracemalloc).
ENTRY_BYTES = 512


class _Kept:
    """Values by key, the least recently used dropped once they take more than
    ``limit`` bytes (each entry ``ENTRY_BYTES`` and its arrays' data)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        """The value kept under ``key`` (None: none)."""
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[0]

    def put(self, key: Any, value: Any) -> Any:
        """Keep ``value`` (a float or a tuple) under ``key``; returns it."""
        size = ENTRY_BYTES + sum(v.nbytes for v in value if isinstance(v, np.ndarray)) \
            if isinstance(value, tuple) else ENTRY_BYTES
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.limit and self._items:
            self.bytes -= self._items.popitem(last=False)[1][1]
        return value


@dataclass(frozen=True)
class _Slot:
    """One element: what it is and what it needs to be priced."""

    kind: str                       # way back | link | path | stages
    name: str                       # as the run's timeline names it
    src: Region | None = None       # path: from (None: the wafer's edge); link: last region
    dst: Region | None = None       # path: into
    stages: tuple[Stage, ...] = ()  # stages: the region's stages, run one after another
    alone: bool = True              # stages: one stage alone on its region


@dataclass
class _AttentionShape:
    """Attention stages alike (content and region shape): their one-token costs over
    local context lengths and their b-token costs without context."""

    stage: Stage
    rows: int
    one: np.ndarray                       # A(l * rows): one token, l local tokens


class BatchCosts:
    """Occupancy and delay (cycles, one entry per element) of micro-batches of a plan."""

    def __init__(self, plan: Plan, max_context: int, window: int | None = None) -> None:
        dep = plan.deployment
        self.plan = plan
        # the serving window (the model's, or kv_window_tokens if shorter) is what every
        # attention step of these costs attends to: Kernels.attended clips to it
        kn = replace(Kernels.of(dep), window=window)
        self._kernels = {alone: replace(kn, shares_region=not alone)
                         for alone in (True, False)}
        self._kn = kn
        self._hidden = dep.model.hidden_size
        self._grid_cols = dep.grid_shape[1]
        self._multi = len(plan.wafers) > 1
        head = plan.wafers[-1].stages[-1].region
        embed = plan.wafers[0].stages[0].region
        self._feedback_route = hops_between(head, embed)
        rows, cols = dep.grid_shape
        slots: list[_Slot] = [_Slot("way back", "way back to the embeddings")]
        for wp in plan.wafers:
            w = wp.wafer
            if w > 0:
                slots.append(_Slot("link", f"link wafer {w - 1} -> {w}",
                                   src=plan.wafers[w - 1].stages[-1].region))
            prev: Region | None = None
            for group in region_groups(wp.stages):
                region = group[0].region
                assert region is not None
                alone = len(group) == 1
                name = group_name(group, w, region.pes == rows * cols)
                if prev is not None or w > 0:
                    slots.append(_Slot("path", f"path into {name}", src=prev, dst=region))
                slots.append(_Slot("stages", name, dst=region, stages=tuple(group),
                                   alone=alone))
                prev = region
        self.slots = slots
        self.size = len(slots)
        # attention shapes and how many of each every element runs
        shapes: dict[tuple, int] = {}
        self._shapes: list[_AttentionShape] = []
        counts: list[list[tuple[int, int]]] = []
        for slot in slots:
            mine: dict[int, int] = {}
            for s in slot.stages:
                if s.part != "attention":
                    continue
                key = (id(s.content), s.region.rows, s.region.cols)
                if key not in shapes:
                    shapes[key] = len(self._shapes)
                    self._shapes.append(self._attention_shape(s, max_context))
                mine[shapes[key]] = mine.get(shapes[key], 0) + 1
            counts.append(list(mine.items()))
        self._matt = np.zeros((self.size, len(self._shapes)))
        for k, row in enumerate(counts):
            for s, n in row:
                self._matt[k, s] = n
        # one token's attention cost by local context length, a row per shape
        width = max((len(sh.one) for sh in self._shapes), default=1)
        self._one = np.zeros((len(self._shapes), width))
        for s, sh in enumerate(self._shapes):
            self._one[s, :len(sh.one)] = sh.one
        self._rows = np.array([sh.rows for sh in self._shapes], dtype=np.int64)
        self._shape_index = np.arange(len(self._shapes))[:, None]
        self._att_batch: dict[int, np.ndarray] = {}
        self._decode: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # every element's attention cycles of one token at each context length, when
        # the table is small enough to keep (else computed per micro-batch)
        self._per_context: np.ndarray | None = None
        top = int(self._kn.attended(max_context)) + 1
        if self._shapes and top * self.size <= MAX_CONTEXT_TABLE:
            ctx = np.arange(top)
            one = self._one[self._shape_index, -(-ctx // self._rows[:, None])]
            self._per_context = (self._matt @ one).T.copy()
        self._decode_base: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._kept = _Kept(MAX_KEPT_BYTES)   # prompt chunks, their bases, stages, paths
        # attention stages alike for a prompt chunk (content, region shape, alone on it
        # or not: the kernel differs) and how many of each every element runs
        prefill: dict[tuple, int] = {}
        self._prefill_shapes: list[tuple[Stage, bool]] = []
        cells: list[tuple[int, int]] = []
        for k, slot in enumerate(slots):
            for st in slot.stages:
                if st.part != "attention":
                    continue
                r = st.region
                key = (id(st.content), r.rows, r.cols, slot.alone)
                if key not in prefill:
                    prefill[key] = len(self._prefill_shapes)
                    self._prefill_shapes.append((st, slot.alone))
                cells.append((k, prefill[key]))
        self._matt_prefill = np.zeros((self.size, len(self._prefill_shapes)))
        for k, j in cells:
            self._matt_prefill[k, j] += 1

    # ---- building blocks ---------------------------------------------------------
    def _attention_shape(self, stage: Stage, max_context: int) -> _AttentionShape:
        r = stage.region
        assert r is not None
        top = math.ceil(self._kn.attended(max_context) / r.rows)
        local = np.arange(top + 1) * r.rows
        one = np.asarray(stage_cost(self._kn, stage.content, r.rows, r.cols, local).total,
                         dtype=float)
        return _AttentionShape(stage, r.rows, np.broadcast_to(one, local.shape).copy())

    def _stage(self, stage: Stage, alone: bool, what: str, tokens: int,
               end: int = 0, last: bool = False) -> float:
        """Cycles of one non-attention stage (decode: ``tokens`` tokens) or of any stage
        for a prompt chunk of ``tokens`` tokens ending at ``end``."""
        r = stage.region
        assert r is not None
        part = stage.part
        if what == "decode":
            key: tuple = (what, id(stage.content), r.rows, r.cols, tokens)
        elif part == "lm_head":     # only the prompt's last chunk needs logits
            key = (what, id(stage.content), r.rows, r.cols, last)
        else:
            key = (what, id(stage.content), r.rows, r.cols, alone, tokens,
                   end if part == "attention" else 0)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        kn = self._kernels[alone]
        if what == "decode":
            cost = stage_cost(kn, stage.content, r.rows, r.cols, 0, tokens)
        elif part == "lm_head":
            cost = lm_head_cost(kn, stage.content, r.rows, r.cols, 1) if last else Cost()
        else:
            cost = prefill_cost(kn, stage.content, r.rows, r.cols, tokens,
                                int(self._kn.attended(end)))
        return self._kept.put(key, float(np.max(cost.total)))

    def _carry(self, slot: _Slot, tokens: int) -> tuple[float, float]:
        """(occupancy, delay) of a path or link carrying ``tokens`` tokens."""
        key = (slot.kind, slot.src, slot.dst, tokens)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        kn = self._kn
        if slot.kind == "path":
            assert slot.dst is not None
            c = region_path(kn, slot.src, slot.dst, self._hidden, tokens)
            occ, total = float(c.bandwidth), float(c.total)
        else:
            assert slot.src is not None
            nbytes = self._hidden * kn.act_bytes * tokens
            occ = float(kn.fabric.interwafer_occupancy(nbytes))
            total = float((edge_out(kn, slot.src, self._grid_cols, self._hidden, tokens)
                           + kn.fabric.interwafer(nbytes)).total)
        return self._kept.put(key, (occ, total - occ))

    def _way_back(self, ids: int) -> tuple[float, float]:
        """(occupancy, delay) of ``ids`` sampled tokens' ids back to the embeddings."""
        fabric = self._kn.fabric
        cost = fabric.transfer(*self._feedback_route, ids, TOKEN_ID_BYTES)
        occ = 0.0
        if self._multi:
            cost = cost + fabric.interwafer(TOKEN_ID_BYTES * ids)
            occ = float(fabric.interwafer_occupancy(TOKEN_ID_BYTES * ids))
        return occ, float(cost.total) - occ

    # ---- micro-batches ---------------------------------------------------------------
    def _base(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Occupancy (attention stages left out) and delay of b decode tokens."""
        if b not in self._decode_base:
            occ = np.zeros(self.size)
            delay = np.zeros(self.size)
            for k, slot in enumerate(self.slots):
                if slot.kind == "way back":
                    occ[k], delay[k] = self._way_back(b)
                elif slot.kind in ("path", "link"):
                    occ[k], delay[k] = self._carry(slot, b)
                else:
                    occ[k] = sum(self._stage(s, slot.alone, "decode", b)
                                 for s in slot.stages if s.part != "attention")
            self._decode_base[b] = (occ, delay)
        return self._decode_base[b]

    def _at_batch(self, b: int) -> np.ndarray:
        """Each attention shape's cost of b tokens without context: P(b) - b A(0)."""
        if b not in self._att_batch:
            at = np.empty(len(self._shapes))
            for s, shape in enumerate(self._shapes):
                r = shape.stage.region
                assert r is not None
                at[s] = float(np.max(stage_cost(self._kn, shape.stage.content, r.rows,
                                                r.cols, 0, b).total))
            self._att_batch[b] = at - b * self._one[:, 0]
        return self._att_batch[b]

    def decode(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(occupancy, delay) per element of one decode token of each of
        ``len(contexts)`` sequences, the i-th attending to ``contexts[i]`` tokens."""
        b = len(contexts)
        if b not in self._decode:
            occ, delay = self._base(b)
            if self._shapes and b > 1:
                occ = occ + self._matt @ self._at_batch(b)
            self._decode[b] = (occ, delay)
        occ, delay = self._decode[b]
        if not self._shapes:
            return occ, delay
        ctx = self._kn.attended(contexts)
        if self._per_context is not None:
            rows = self._per_context[ctx]
            return occ + (rows[0] if b == 1 else rows.sum(axis=0)), delay
        one = self._one[self._shape_index, -(-ctx // self._rows[:, None])]
        return occ + self._matt @ (one[:, 0] if b == 1 else one.sum(axis=1)), delay

    def _chunk_base(self, tokens: int, last: bool) -> tuple[np.ndarray, np.ndarray]:
        """Occupancy (attention stages left out) and delay of a prompt chunk."""
        key = ("chunk base", tokens, last)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        occ = np.zeros(self.size)
        delay = np.zeros(self.size)
        for k, slot in enumerate(self.slots):
            if slot.kind in ("path", "link"):
                occ[k], delay[k] = self._carry(slot, tokens)
            elif slot.kind == "stages":
                occ[k] = sum(self._stage(s, slot.alone, "prefill", tokens, 0, last)
                             for s in slot.stages if s.part != "attention")
        return self._kept.put(key, (occ, delay))

    def chunk(self, tokens: int, end: int, last: bool) -> tuple[np.ndarray, np.ndarray]:
        """(occupancy, delay) per element of a prompt chunk of ``tokens`` tokens ending
        at prompt position ``end`` (``last``: the prompt's last chunk, which needs
        logits)."""
        key = ("chunk", tokens, end, last)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        occ, delay = self._chunk_base(tokens, last)
        if self._prefill_shapes:
            att = np.array([self._stage(stage, alone, "prefill", tokens, end, last)
                            for stage, alone in self._prefill_shapes])
            occ = occ + self._matt_prefill @ att
        return self._kept.put(key, (occ, delay))
