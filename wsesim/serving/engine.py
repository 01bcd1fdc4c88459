"""The serving simulation: simpy carries the events (arrivals, a micro-batch's tokens
coming out of the pipeline, a held micro-batch's gate opening); a micro-batch's trip
through the pipeline is advanced in closed form when it enters.

Every element of the plan's timeline is a first-in first-out server (as in
:mod:`wsesim.sim.tile`); micro-batches enter at one end and keep their order, so when
one enters its start and end at every element follow from the max-plus recursion
(:func:`wsesim.sim.tile.tandem_exits`): a few numpy calls and one simpy event per
micro-batch, whatever the number of elements. Time is counted in clock cycles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from wsesim.serving.costs import BatchCosts
from wsesim.serving.kv import KVCapacity
from wsesim.serving.scheduler import MicroBatch, Scheduler
from wsesim.sim.tile import Visit, tandem_exits

TRACE_MICRO_BATCHES = 200   # micro-batches whose visit of every element a trace records
TRACE_REQUESTS = 500        # requests whose phases a trace records
GATE_TOLERANCE = 1e-12      # relative: a gate this close to now is open (rounding)
SERVICE_CACHE_FLOATS = 1 << 22   # one sequence's decode services kept by context: 32 MB


@dataclass
class ServingRun:
    """What a serving simulation recorded, in cycles (NaN: never happened)."""

    arrival: np.ndarray
    admitted: np.ndarray
    first_token: np.ndarray
    finished: np.ndarray
    rejected: np.ndarray            # bool: never fits in SRAM
    output_tokens: np.ndarray
    prompt_tokens: np.ndarray
    itl: np.ndarray                 # every gap between two tokens of a request
    timeline: np.ndarray            # rows: time, running, waiting, KV slots used (largest
                                    # share over the region kinds)
    busy: np.ndarray                # cycles each element was occupied
    events: int
    micro_batches: int
    decode_batches: int
    decode_tokens: int              # decode tokens over all decode micro-batches
    chunks: int
    max_used_slots: np.ndarray      # most slots ever taken, per region kind
    visits: list[Visit] = field(default_factory=list)   # phase: the micro-batch's kind


class Engine:
    """One run of requests through a plan's pipeline (``kv_tokens``: the tokens of KV
    each request holds)."""

    def __init__(self, costs: BatchCosts, kv: KVCapacity, arrival_cycles: np.ndarray,
                 prompt: np.ndarray, output: np.ndarray, kv_tokens: np.ndarray,
                 max_stage_batch: int, chunk_tokens: int | None,
                 trace: bool = False) -> None:
        self.costs = costs
        self.env = simpy.Environment()
        n = len(arrival_cycles)
        self.arrival = np.asarray(arrival_cycles, dtype=float)
        self.prompt = np.asarray(prompt, dtype=np.int64)
        self.output = np.asarray(output, dtype=np.int64)
        self.sched = Scheduler(self.prompt, self.output, kv.need(kv_tokens), kv.slots,
                               max_stage_batch, chunk_tokens)
        self.admitted = np.full(n, np.nan)
        self.first = np.full(n, np.nan)
        self.finished = np.full(n, np.nan)
        self.rejected = np.zeros(n, dtype=bool)
        self.last_out = [0.0] * n
        self.output_list = self.output.tolist()
        gaps = np.maximum(self.output - 1, 0)
        self.itl_at = np.concatenate([[0], np.cumsum(gaps)[:-1]]).astype(np.int64).tolist()
        self.itl = np.full(int(gaps.sum()), np.nan)
        self.free = np.zeros(costs.size)
        self.busy = np.zeros(costs.size)
        self.returning = 0
        self.running = 0
        self.events = 0
        self.counts = {"micro_batches": 0, "decode_batches": 0, "decode_tokens": 0,
                       "chunks": 0}
        self.max_used = np.zeros_like(kv.slots)
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.force = False
        self.records: list[tuple[float, int, int, float]] = [(0.0, 0, 0, 0.0)]
        self.trace = trace
        self.visits: list[Visit] = []
        self._last: tuple[Any, Any] = (None, None)   # the last decode micro-batch priced
        # one sequence's decode services kept by context, and how many times each
        # entered (their busy time is added up at the end)
        self._kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._keep_limit = max(1, SERVICE_CACHE_FLOATS // (3 * costs.size))
        self._passes: dict[int, int] = {}
        self._gap = np.zeros(costs.size)

    # ---- events --------------------------------------------------------------------
    def run(self) -> ServingRun:
        self.env.process(self._arrivals())
        self.env.run()
        for key, count in self._passes.items():
            self.busy += count * self._kept[key][0]
        timeline = np.array(self.records, dtype=float).T
        return ServingRun(self.arrival, self.admitted, self.first, self.finished,
                          self.rejected, self.output, self.prompt, self.itl, timeline,
                          self.busy, self.events, self.counts["micro_batches"],
                          self.counts["decode_batches"], self.counts["decode_tokens"],
                          self.counts["chunks"], self.max_used, self.visits)

    def _arrivals(self):
        env = self.env
        for i, t in enumerate(self.arrival):
            if t > env.now:
                yield env.timeout(t - env.now)
            self.events += 1
            if self.sched.fits_ever(i):
                self.sched.waiting.append(i)
            else:
                self.rejected[i] = True
            self._record()
            self._schedule()

    def _at(self, when: float, callback) -> None:
        """Call ``callback`` at cycle ``when`` (a simpy event)."""
        ev = self.env.timeout(max(when - self.env.now, 0.0))
        ev.callbacks.append(callback)

    def _record(self) -> None:
        slots = self.sched.slots
        share = float(np.max(self.sched.used / np.maximum(slots, 1))) if len(slots) else 0.0
        self.records.append((self.env.now, self.running, len(self.sched.waiting), share))

    def _on_timer(self, gen: int) -> None:
        self.events += 1
        if gen != self.timer_gen:
            return          # superseded by a later decision
        self.timer_at = None
        self.force = True   # the held micro-batch waited for its gate: it goes now
        self._schedule()

    # ---- the entry -----------------------------------------------------------------
    def _schedule(self) -> None:
        sched = self.sched
        now = self.env.now
        for i in sched.admit():
            self.admitted[i] = now
            self.running += 1
            self.max_used = np.maximum(self.max_used, sched.used)
            self._record()
        while True:
            mb = sched.next()
            if mb is None:
                self.force = False
                return
            occ, reach, start, key = self._service(mb)
            gap = np.subtract(self.free, start, out=self._gap)  # how late each keeps it
            gate = float(gap.max())
            late = gate > now + GATE_TOLERANCE * now
            if late and self.returning > 0 and not self.force:
                if self.timer_at != gate:
                    self.timer_gen += 1
                    self.timer_at = gate
                    gen = self.timer_gen
                    self._at(gate, lambda _e, gen=gen: self._on_timer(gen))
                return
            self.force = False
            if late:    # it waits inside: the max-plus recursion
                tandem_exits(gap, reach, now, out=self.free)
            else:       # it passes every element without waiting
                np.add(reach, now, out=self.free)
            if key is None:
                self.busy += occ
            else:
                self._passes[key] = self._passes.get(key, 0) + 1
            self._send(mb, self.free, occ)

    def _service(self, mb: MicroBatch
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """(occupancy, when it reaches the end of each element, when it would start at
        each element, relative to its entry; and the key under which it is kept, None
        if it is not) of micro-batch ``mb``."""
        if mb.kind == "decode":
            if len(mb.ids) == 1:        # one sequence: by its context, kept
                key: Any = int(mb.contexts[0])
                cached = self._kept.get(key)
                if cached is not None:
                    return (*cached, key)
            else:
                key = (mb.ids, mb.contexts.tobytes())
                if self._last[0] == key:
                    return (*self._last[1], None)
            occ, delay = self.costs.decode(mb.contexts)
            reach = np.cumsum(occ + delay)
            out = (occ, reach, reach - occ)
            if isinstance(key, int) and len(self._kept) < self._keep_limit:
                self._kept[key] = out
                return (*out, key)
            self._last = (key, out)
            return (*out, None)
        occ, delay = self.costs.chunk(mb.tokens, mb.end, mb.last)   # kept by the costs
        reach = np.cumsum(occ + delay)
        return occ, reach, reach - occ, None

    def _send(self, mb: MicroBatch, done: np.ndarray, occ: np.ndarray) -> None:
        sched = self.sched
        sched.sent(mb)
        self.counts["micro_batches"] += 1
        out = float(done[-1])
        if mb.kind == "decode":
            self.counts["decode_batches"] += 1
            self.counts["decode_tokens"] += len(mb.ids)
            ids = mb.ids
            self.returning += 1
            self._at(out, lambda _e, ids=ids: self._tokens_out(ids))
            label = f"decode x{len(mb.ids)}"
        else:
            self.counts["chunks"] += 1
            i = mb.ids[0]
            if mb.last:
                returns = sched.returns(mb)
                self.returning += returns
                self._at(out, lambda _e, i=i, r=returns: self._first_token(i, r))
            label = f"request {i} prompt to {mb.end}"
        if self.trace and len(self.visits) < TRACE_MICRO_BATCHES:
            self.visits.append(Visit(label, mb.kind, done - occ, done.copy()))

    def _first_token(self, i: int, returns: bool) -> None:
        self.events += 1
        self.returning -= returns
        now = self.env.now
        self.first[i] = now
        self.last_out[i] = now
        self.sched.produced[i] = 1
        if self.output[i] <= 1:
            self._finish(np.array([i]))
        else:
            self.sched.ready.append(i)
        self._schedule()

    def _tokens_out(self, ids: list[int]) -> None:
        self.events += 1
        self.returning -= 1
        now = self.env.now
        sched = self.sched
        produced, output, last_out = sched.produced, self.output_list, self.last_out
        itl, itl_at = self.itl, self.itl_at
        ended = []
        for i in ids:
            k = produced[i]
            itl[itl_at[i] + k - 1] = now - last_out[i]
            last_out[i] = now
            produced[i] = k + 1
            if k + 1 >= output[i]:
                ended.append(i)
            else:
                sched.ready.append(i)
        if ended:
            self._finish(np.array(ended, dtype=np.int64))
        self._schedule()

    def _finish(self, ids: np.ndarray) -> None:
        self.finished[ids] = self.env.now
        self.sched.release(ids)
        self.running -= len(ids)
        self._record()
