"""How many tokens of KV cache the plan's SRAM holds, from the same per-PE ledger as a
run: on every PE of every region that holds attention, what is left once the weights,
their scales and zeros, the activation buffers and the runtime reserve are placed (the
KV cache the deployment's own workload provisions is left out: serving allocates it
request by request).

A layer's KV cache puts each sequence's tokens along its region's rows and each
token's K and V vectors along its columns (as the ledger does), so a request of T tokens
takes ceil(T / rows) token slots on the fullest row of every attention region; a region
offers as many slots as its fullest PE can hold. Requests are admitted while their slots
fit in every region (the binding one sets the capacity).

Activation buffers while serving: a stage that takes b decode tokens at once holds b
tokens' input, output and residual slices, so ``max_stage_batch`` tokens' worth is
reserved, plus one sequence's attention scores at the longest context served
(sequences are attended one after another). A prompt chunk streams through a stage's
buffers token by token, as ``wsesim run`` assumes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wsesim.mapping.plan import Stage
from wsesim.memory import MemoryLedger


@dataclass(frozen=True)
class RegionKV:
    """The KV slots of attention regions alike in rows (the least of them binds)."""

    rows: int                 # tokens of a sequence are cut over this many rows
    slots: int                # tokens per row its fullest PE can still hold
    name: str                 # the binding region, in words
    bytes_per_token_per_pe: int   # on the PE that binds (K and V, every layer it holds)

    @property
    def tokens(self) -> int:
        """Tokens of KV (of sequences of whole rows) the region kind holds."""
        return self.slots * self.rows


@dataclass(frozen=True)
class KVCapacity:
    """Every kind of attention region and its token slots."""

    kinds: tuple[RegionKV, ...]

    @property
    def rows(self) -> np.ndarray:
        return np.array([k.rows for k in self.kinds], dtype=np.int64)

    @property
    def slots(self) -> np.ndarray:
        return np.array([k.slots for k in self.kinds], dtype=np.int64)

    def need(self, kv_tokens: np.ndarray) -> np.ndarray:
        """Slots each request of ``kv_tokens`` tokens takes in each kind of region
        (requests x kinds): its fullest row's share, ceil(tokens / rows)."""
        t = np.asarray(kv_tokens, dtype=np.int64)[:, None]
        return -(-t // self.rows[None, :])

    @property
    def tokens(self) -> int:
        """Tokens of KV the deployment holds: the binding region's."""
        return min((k.tokens for k in self.kinds), default=0)

    @property
    def binding(self) -> RegionKV | None:
        return min(self.kinds, key=lambda k: k.tokens, default=None)


def _kv_bytes_per_token(stage: Stage, cols: int) -> np.ndarray:
    """K plus V bytes of one token on each column of the stage's region (1 x cols)."""
    assert stage.kv is not None
    one = replace(stage.kv, sequences=1, tokens_per_sequence=1).blocks(1, cols)
    return np.asarray(one.total, dtype=np.int64)


def _buffers(stage: Stage, rows: int, cols: int, batch: int, context: int) -> np.ndarray:
    """Activation bytes per PE while serving: ``batch`` tokens' slices, and one
    sequence's attention scores at ``context`` tokens (attention stages)."""
    content = stage.content
    own = content.buffers
    one = own.bytes_per_pe(content, rows, cols, context=context)   # with the scores
    slices = replace(own, attention_heads=0).bytes_per_pe(content, rows, cols)
    return np.broadcast_to(one + (batch - 1) * slices, (rows, cols))


def kv_capacity(ledger: MemoryLedger, batch: int, context: int) -> KVCapacity:
    """The token slots of every attention region of ``ledger``'s plan, with buffers
    for ``batch`` decode tokens at once and scores of one sequence of ``context``
    tokens. A region whose PEs overflow without any KV has no slot."""
    sram = ledger.pe_sram_bytes
    reserve = ledger.reserve_bytes
    best: dict[int, RegionKV] = {}
    for rm in ledger.regions:
        attention = [s for s in rm.stages if s.kv is not None]
        if not attention:
            continue
        rows, cols = rm.region.rows, rm.region.cols
        buffers = np.zeros((rows, cols), np.int64)
        for s in rm.stages:  # buffers are reused from one stage to the next
            np.maximum(buffers, _buffers(s, rows, cols, batch, context), out=buffers)
        free = sram - reserve - rm.weights - rm.quant_metadata - buffers
        per_token = np.broadcast_to(
            sum(_kv_bytes_per_token(s, cols) for s in attention), (rows, cols))
        holds = per_token > 0
        if np.any(free < 0):
            slots = 0
            where = np.unravel_index(int(np.argmin(free)), free.shape)
        else:
            per_pe = np.where(holds, free // np.maximum(per_token, 1),
                              np.iinfo(np.int64).max)
            where = np.unravel_index(int(np.argmin(per_pe)), per_pe.shape)
            slots = int(per_pe[where])
        name = (f"{rm.label} (wafer {rm.region.wafer}, PE row "
                f"{rm.region.row0 + int(where[0])} col {rm.region.col0 + int(where[1])})")
        kind = RegionKV(rows, slots, name, int(per_token[where]))
        if rows not in best or kind.slots < best[rows].slots:
            best[rows] = kind
    return KVCapacity(tuple(best[r] for r in sorted(best)))
