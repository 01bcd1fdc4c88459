"""The serving policy at the pipeline's entry (no simulation here: the engine asks it).

Rules, in order:

1. **Admission, first come first served by KV capacity.** A request is admitted when
   the KV cache of its whole sequence (prompt plus output tokens, or the sliding window
   when one is set) fits in the token slots left in every attention region
   (:mod:`wsesim.serving.kv`); requests behind the oldest waiting one wait too (no
   overtaking). The slots are held from admission to the request's last token. A
   request that would not fit even in empty SRAM is rejected when it arrives.
2. **When memory is full, requests queue.** Nothing is preempted or swapped: SRAM is
   the only memory, and a running request keeps its slots until it ends.
3. **Micro-batches.** The entry sends either one prompt chunk (up to
   ``prefill_chunk_tokens`` tokens of the oldest admitted request with prompt left) or
   one decode micro-batch (the next token of up to ``max_stage_batch`` sequences whose
   previous token is out, oldest first). When both wait they alternate (chunked prefill
   interleaved with decode).
4. **Entry gate.** A micro-batch enters the pipeline when it would pass every element
   without waiting. While it would wait somewhere and tokens of running sequences are
   in flight (they come back to the entry and can join or follow it), it is held at
   the entry, where a decode micro-batch can still grow; otherwise it enters at once
   and queues inside, first in first out at every element.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice

import numpy as np


@dataclass
class MicroBatch:
    """What the entry would send next: a decode micro-batch (``ids``) or one chunk."""

    kind: str                      # decode | chunk
    ids: list[int]                 # decode: the sequences; chunk: [the request]
    contexts: np.ndarray | None = None   # decode: each sequence's context length
    tokens: int = 0                # chunk: prompt tokens
    end: int = 0                   # chunk: prompt position after it
    last: bool = False             # chunk: the prompt's last


class Scheduler:
    """Queues and KV slots of a serving run, and the choice of the next micro-batch."""

    def __init__(self, prompt: np.ndarray, output: np.ndarray, need: np.ndarray,
                 slots: np.ndarray, max_stage_batch: int, chunk_tokens: int | None) -> None:
        self.prompt = prompt
        self.output = output
        self.need = need                     # requests x region kinds
        self.slots = slots                   # per region kind
        self.used = np.zeros_like(slots)
        self.max_stage_batch = max_stage_batch
        self.chunk_tokens = chunk_tokens     # None: a whole prompt at once
        self.waiting: deque[int] = deque()   # arrived, not admitted
        self.prefill: deque[int] = deque()   # admitted, prompt left to send
        self.ready: deque[int] = deque()     # decoding, previous token out
        self.position = np.zeros(len(prompt), dtype=np.int64)   # prompt tokens sent
        self.produced = [0] * len(prompt)                       # output tokens out
        self._prompt = prompt.tolist()
        self.decode_next = False             # when both wait: whose turn
        self.blocked = False                 # the oldest waiting did not fit; unchanged

    def fits_ever(self, i: int) -> bool:
        """Whether request ``i`` fits in the KV slots of empty SRAM."""
        return bool(np.all(self.need[i] <= self.slots))

    def admit(self) -> list[int]:
        """Admit waiting requests first come first served while their KV fits; the
        admitted, in order."""
        out: list[int] = []
        if self.blocked:        # nothing freed since the oldest waiting did not fit
            return out
        while self.waiting:
            i = self.waiting[0]
            if np.any(self.used + self.need[i] > self.slots):
                self.blocked = True
                break
            self.waiting.popleft()
            self.used += self.need[i]
            self.prefill.append(i)
            out.append(i)
        return out

    def release(self, ids: np.ndarray) -> None:
        """Free the KV slots of requests that ended."""
        if len(ids):
            self.used -= self.need[ids].sum(axis=0)
            self.blocked = False

    def next(self) -> MicroBatch | None:
        """The micro-batch the entry would send now (None: nothing to send)."""
        decode = bool(self.ready) and (self.decode_next or not self.prefill)
        if decode:
            b = min(self.max_stage_batch, len(self.ready))
            ids = list(islice(self.ready, b))
            contexts = np.array([self._prompt[i] + self.produced[i] for i in ids],
                                dtype=np.int64)
            return MicroBatch("decode", ids, contexts)
        if not self.prefill:
            return None
        i = self.prefill[0]
        left = int(self.prompt[i] - self.position[i])
        tokens = left if self.chunk_tokens is None else min(self.chunk_tokens, left)
        end = int(self.position[i]) + tokens
        return MicroBatch("chunk", [i], None, tokens, end, end == int(self.prompt[i]))

    def sent(self, mb: MicroBatch) -> None:
        """``mb`` entered the pipeline: take it off the queues; the other kind is next."""
        if mb.kind == "decode":
            for _ in mb.ids:
                self.ready.popleft()
            self.decode_next = False
        else:
            i = mb.ids[0]
            self.position[i] = mb.end
            if mb.last:
                self.prefill.popleft()
            self.decode_next = True

    def returns(self, mb: MicroBatch) -> bool:
        """Whether prompt chunk ``mb`` brings its sequence back to the entry to decode a
        next token: it is the prompt's last and the request wants more than one output
        token (a decode micro-batch always comes back; the engine counts it itself)."""
        return mb.last and int(self.output[mb.ids[0]]) > 1
