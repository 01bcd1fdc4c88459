"""PE-level fabric engine: every PE, router, link and ramp of a small mesh, driven by simpy.

What it models
--------------
- A grid of ``rows x cols`` PEs, each with a router. Every router has four directed
  output links (east, west, south, north) to its neighbours and two ramps: the up-ramp
  (PE -> router) and the down-ramp (router -> PE). Every link and ramp carries one
  32-bit wavelet per cycle (``link_bytes`` per cycle): a ramp is a router port like the
  others, so a PE receives (and sends) at most one wavelet per cycle in all.
- A message is a *train* of W wavelets. Its head pays ``ramp`` cycles on each ramp,
  ``hop`` cycles per router-to-router link and ``turn`` cycles where dimension-ordered
  routing changes direction; the train then occupies every link it crosses for W
  consecutive cycles (virtual cut-through: a train held up at a busy link waits in the
  router's queue and leaves as one contiguous train; upstream links are not held).
  A train on one link is one simpy event (when its head reaches the router at the
  link's entry, the link is reserved for ``[start, start + W)``), never one per wavelet,
  so both latency (hops) and bandwidth (W) show, and contention on a link delays the
  later train by whatever the earlier one still occupies. Reservations happen at the
  simulated time the head arrives, so trains are served first come, first served.
- A multicast (router replication along a line) delivers the same train to every PE it
  passes, through each PE's down-ramp.
- PEs run SPMD programs: one list of ops per PE, run by a lightweight process driven
  by simpy events (simpy's own ``Process`` costs more per resume than a train hop). A PE
  keeps its own clock ``t`` (which may run ahead of ``env.now``: local work and sends
  need no event) and only waits when it needs a message that has not been routed to it
  yet; the delivery then wakes it with one event. Its up-ramp is private, so reserving
  it ahead of ``env.now`` keeps FIFO order on every shared link; a train enters the
  fabric at its sender's clock (an event at that time), so shared links are still
  taken in simulated-time order. A PE posts the phases it starts with its clock, so a
  train sent before its receiver's phase is taken at the same time whichever PE the
  event loop runs first (see ``Net.launch``).
- Critical-path attribution: every PE carries, next to its clock, the clock split by
  cause (compute, dequant, latency, bandwidth, overhead: :class:`wsesim.perf.cost.Cost`
  fields). A message carries its sender's split; when a message sets a PE's clock, the
  PE adopts the sender's split plus the path's latency (ramps, hops, turns, adds) and
  bandwidth (W and any queueing). The finishing PE's split is the operation's Cost.

What each PE program op costs is in :mod:`wsesim.sim.ops`: the engine charges every
fixed cost from the profile's own constant (``Net.fixed``: a fabric call, a library call,
a route switch, a MeshGEMM step) and every vector instruction from the PE's issue cost,
dependent latency and SIMD rate (``Net.rate``, ``op_cycles``, ``latency``); the programs (``wsesim.sim.program``)
only say which ops a kernel runs.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from heapq import heappush
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL, Event

from wsesim.perf.compute import PECompute
from wsesim.perf.cost import Cost
from wsesim.perf.fabric import Fabric
from wsesim.sim.netrun import NetRun
from wsesim.sim.ops import (
    ACC,
    ACCN,
    CALL,
    FIXED,
    FWD,
    INSTR,
    LIBRARY_CALL,
    MESH_STEP,
    POST,
    RECVA,
    ROUTE_SWITCH,
    SEND,
    SENDA,
    WORK,
)
# a PE's split of its clock by cause: the first five fields of Cost, in their order
COMPUTE, DEQUANT, LATENCY, BANDWIDTH, OVERHEAD = range(5)


# A train as its receiver sees it, a tuple (the hot path allocates one per delivery):
# (head, w, send_t, bd, lat): ``head`` is when its first wavelet reaches the PE, ``w``
# its wavelets (the tail follows ``w`` cycles later); ``send_t`` and ``bd`` the sender's
# clock and its split by cause when it sent; ``lat`` the pure latency of the path
# (ramps, hops, turns); any other delay on the way was queueing.
Msg = tuple


class _Branch(Event):
    """One branch of a train travelling hop by hop, and the simpy event of its head
    reaching the next router (re-armed at every hop: no new object per hop). ``steps``
    are its hops (:meth:`Net.route`: dimension-ordered routing, X then Y); ``along``:
    deliver to every PE passed (a multicast along a line), else only at the end."""

    __slots__ = (
        "_cbs",
        "along",
        "bd",
        "k",
        "lat",
        "net",
        "node",
        "send_t",
        "steps",
        "tag",
        "w",
    )

    def __init__(self, net: Net, node: int, steps: tuple, along: bool, w: int, tag: Any,
                 send_t: float, bd: tuple, lat: float) -> None:
        self.env = net.env
        self._ok = True
        self._value = None
        self._cbs = [self.arrive]
        self.callbacks = self._cbs
        self.net = net
        self.node = node
        self.steps = steps
        self.k = 0
        self.w = w
        self.tag = tag
        self.send_t = send_t
        self.bd = bd
        self.lat = lat
        self.along = along

    def arrive(self, _ev: Event) -> None:
        """The head is at router ``node`` now: deliver (multicast, or the end), then
        take the next link (reserving it for the train's W cycles from when it is
        free)."""
        net = self.net
        now = net.env._now
        k = self.k
        steps = self.steps
        if k == len(steps):
            if k or not self.along:
                net.deliver(self.node, now, self)
            return
        node = self.node
        if k and self.along:
            net.deliver(node, now, self)
        d, off, dt = steps[k]
        link = node * 4 + d
        free = net.link_free
        start = free[link]
        if start < now:
            start = now
        w = self.w
        free[link] = start + w
        net.link_busy[link] += w
        self.node = node + off
        self.k = k + 1
        self.lat += dt
        self.callbacks = self._cbs
        heappush(net.queue, (start + dt, NORMAL, next(net.eid), self))


class PE(Event):
    """One PE: its program (a list of ops) and where it is in it, its clock ``t``, the
    clock split by cause ``bd``, its inbox of routed trains, its busy cycles, its SRAM
    use; and the simpy event that wakes it when a train it waits for arrives.

    The program runs without events until it needs a train that has not been routed
    here yet; it then waits for that tag and is woken (one event) on delivery."""

    __slots__ = (
        "_cbs",
        "bd",
        "busy",
        "col",
        "held",
        "idx",
        "inbox",
        "net",
        "ops",
        "pc",
        "posted",
        "row",
        "sram_peak",
        "sram_used",
        "t",
        "taken",
        "waiting",
        "woke",
    )

    def __init__(self, net: Net, idx: int) -> None:
        self.env = net.env
        self._ok = True
        self._value = None
        self._cbs = [self._woken]
        self.callbacks = None
        self.net = net
        self.idx = idx
        self.row, self.col = divmod(idx, net.cols)
        self.t = 0.0
        self.bd = [0.0] * 5
        self.inbox: dict[Any, Msg] = {}
        self.waiting: tuple = ()        # the tags the program waits for (any one)
        self.busy = 0.0
        self.sram_used = 0
        self.sram_peak = 0
        self.ops: list[tuple] = []
        self.pc = 0
        self.taken: list[Any] = []      # tags an ACCN op has added in so far
        self.woke: Any = None           # the tag of the train that woke the PE
        self.posted: dict[Any, float] = {}  # tag of a phase the PE started -> when
        self.held: dict[Any, tuple] = {}  # trains to it waiting for their phase

    def _woken(self, _ev: Event) -> None:
        """The PE's event: run the program from ``pc`` (first handing the train that
        woke it, if any, to the op waiting for it) until it needs a train that has not
        been routed here yet. Local work and sends need no event: the PE's clock runs
        ahead of ``env.now`` (sends schedule their trains at the PE's clock; phases are
        posted with it). A receive whose train is here (or has been routed here: its
        arrival time is known) takes it at once; one that is not waits for the
        delivery to wake the PE (one event)."""
        msg = self._value
        ops = self.ops
        n = len(ops)
        i = self.pc
        net = self.net
        bd = self.bd
        t = self.t
        busy = self.busy
        posted = self.posted
        while i < n:
            op = ops[i]
            code = op[0]
            if code == WORK:
                c, d, o = op[1], op[2], op[3]
                bd[COMPUTE] += c
                bd[DEQUANT] += d
                bd[OVERHEAD] += o
                t += c + d + o
                busy += c + d + o
                if op[4]:
                    self.sram_used += op[4]
                    self.sram_peak = max(self.sram_peak, self.sram_used)
                i += 1
                continue
            if code == FIXED:       # a call, a route switch, a step: posts first
                if op[1]:
                    if self.held:
                        self._post(op[1], t)
                    else:
                        for tag in op[1]:
                            posted[tag] = t
                fixed = net.fixed[op[2]]
                bd[OVERHEAD] += fixed
                t += fixed
                busy += fixed
                i += 1
                continue
            if code == INSTR:       # dependent vector instructions
                count, length = op[1], op[2]
                if count > 0 and length > 0:
                    issue = count * net.op_cycles
                    stream = count * max(net.latency, length / net.rate)
                    bd[OVERHEAD] += issue
                    bd[COMPUTE] += stream
                    t += issue + stream
                    busy += issue + stream
                if op[3]:
                    self.sram_used += op[3]
                    self.sram_peak = max(self.sram_peak, self.sram_used)
                i += 1
                continue
            if code == SEND:
                self.t, self.bd = t, bd
                self._send(op[1], op[2])
                t, bd = self.t, self.bd
                busy += op[2]
                i += 1
                continue
            if code == SENDA:
                self.t, self.bd = t, bd
                self._send(op[1], op[2], False)
                i += 1
                continue
            if code == ACCN:        # several trains, added in as they arrive
                if op[1][0] not in posted:
                    self._post(op[1], t)
                taken = self.taken
                if msg is not None:
                    taken.append(self.woke)
                    t, bd = self._consume(msg, ACC, t, bd)
                    busy += msg[1]
                    msg = None
                while len(taken) < len(op[1]):
                    here = [(self.inbox[g][0], g) for g in op[1]
                            if g not in taken and g in self.inbox]
                    if not here:        # wait for whichever comes first
                        self.pc, self.t, self.bd, self.busy = i, t, bd, busy
                        self.waiting = tuple(g for g in op[1] if g not in taken)
                        return
                    g = min(here)[1]
                    taken.append(g)
                    m = self.inbox.pop(g)
                    t, bd = self._consume(m, ACC, t, bd)
                    busy += m[1]
                self.taken = []
                i += 1
                continue
            if msg is None:
                if op[1] not in posted:     # not announced by a phase: post it now
                    self._post((op[1],), t)
                msg = self.inbox.pop(op[1], None)
                if msg is None:     # not routed here yet: wait for it
                    self.pc, self.t, self.bd, self.busy = i, t, bd, busy
                    self.waiting = (op[1],)
                    return
            if code == RECVA:       # landed by DMA: down the ramp after the ones before
                head, w, send_t, mbd, lat = msg
                msg = None
                down = net.down_free
                start = down[self.idx]
                start = max(start, head)
                down[self.idx] = start + w
                net.down_busy[self.idx] += w
                if start + w > t:
                    bd = list(mbd)
                    bd[LATENCY] += lat
                    bd[BANDWIDTH] += start - send_t - lat + w
                    t = start + w
                i += 1
                continue
            busy += msg[1]
            if code == FWD:         # add as the stream arrives, pass the sum on
                head, w, send_t, mbd, lat = msg
                until = head + net.add
                if until > t:
                    if send_t + lat >= t:   # the sender's path sets the clock
                        bd = list(mbd)
                        bd[LATENCY] += lat + net.add
                        bd[BANDWIDTH] += head - send_t - lat
                    else:                   # the train waited for this PE
                        bd[LATENCY] += net.add
                        bd[BANDWIDTH] += head - t
                    t = until
                net.down_busy[self.idx] += w
                self.t, self.bd = t, bd
                self._send(op[2], op[3])
                t, bd = self.t, self.bd
            else:                   # RECV (a copy) or ACC (add it in)
                t, bd = self._consume(msg, code, t, bd)
            msg = None
            i += 1
        self.pc, self.t, self.bd, self.busy = n, t, bd, busy
        self.waiting = ()

    def _consume(self, msg: Msg, code: int, t: float, bd: list) -> tuple[float, list]:
        """Take a train whole: the PE takes one wavelet per cycle (through its
        down-ramp) from when it is ready and the head is there (plus the adder's
        latency for ACC): a train that came early still takes W cycles. Returns the
        PE's new clock and split by cause."""
        head, w, send_t, mbd, lat = msg
        extra = self.net.add if code == ACC else 0.0
        start = head + extra
        self.net.down_busy[self.idx] += w
        if start > t:
            if send_t + lat >= t:   # the train sets the clock: take its critical path
                bd = list(mbd)
                bd[LATENCY] += lat + extra
                bd[BANDWIDTH] += head - send_t - lat + w
            else:                   # it waited for this PE: the PE's own path, then it
                bd[LATENCY] += extra
                bd[BANDWIDTH] += head - t + w
            return start + w, bd
        bd[BANDWIDTH] += w
        return t + w, bd

    def _post(self, tags: tuple, at: float) -> None:
        """The PE starts a phase at ``at`` (its clock) in which it receives ``tags``:
        trains held for them enter the fabric then (or when sent, if later)."""
        posted, held = self.posted, self.held
        for tag in tags:
            posted[tag] = at
            train = held.pop(tag, None)
            if train is not None:
                self.net.launch(*train[:6], tag, at, train[6])

    def _send(self, branches: tuple, w: int, blocking: bool = True) -> None:
        """A train of ``w`` wavelets at the PE's clock: one up-ramp occupancy (after the
        trains before it), then each (legs, along, tag) branch from this PE's router (a
        multicast has several; each receiver finds the train under its branch's tag).
        ``blocking``: the PE streams it out, its clock moves on by ``w`` (as the
        kernels' synchronous sends); else it goes on at once (an asynchronous move)."""
        net = self.net
        idx = self.idx
        t = self.t
        bd = self.bd                # the PE's own list (updated in place if it waits)
        start = net.up_free[idx]
        if start > t:               # the up-ramp is still busy: the train waits
            sent_bd = list(bd)
            sent_bd[BANDWIDTH] += start - t
            if blocking:
                bd[BANDWIDTH] += start - t
            sent_bd = tuple(sent_bd)
        else:
            start = t
            sent_bd = tuple(bd)
        net.up_free[idx] = start + w
        net.up_busy[idx] += w
        routes = net.routes
        for legs, along, tag in branches:
            steps, delta, lat = routes.get(legs) or net.route(legs)
            posted = start
            if not along:           # one receiver: when does it start the phase for it?
                pe = net.pes[idx + delta]
                posted = pe.posted.get(tag)
                if posted is None:  # not yet: the train waits for it (see _post)
                    pe.held[tag] = (idx, steps, along, w, start, sent_bd, lat)
                    continue
            net.launch(idx, steps, along, w, start, sent_bd, tag, posted, lat)
        if blocking:
            bd[BANDWIDTH] += w
            self.t = start + w


class Net:
    """A ``rows x cols`` mesh of PEs and routers on one simpy environment."""

    def __init__(self, rows: int, cols: int, params: Fabric,
                 sram_bytes: int | None = None, compute: PECompute | None = None,
                 route_switch: float = 0.0, mesh_step: float = 0.0) -> None:
        """``params``: hop, ramp, turn latencies, a chain stage's receive-add-forward,
        the fixed costs of a fabric and a library call; ``compute``: the PE's vector
        instructions (needed by ``INSTR`` ops); ``route_switch``, ``mesh_step``: the
        kernels' fixed costs of re-routing reductions and of a MeshGEMM step."""
        if rows < 1 or cols < 1:
            raise ValueError(f"a grid needs at least one PE, got {rows} x {cols}")
        self.rows, self.cols = rows, cols
        self.hop, self.ramp, self.turn = params.hop, params.ramp, params.turn
        self.add = params.add
        fixed = {POST: 0.0, CALL: params.call, LIBRARY_CALL: params.library_call,
                 ROUTE_SWITCH: route_switch, MESH_STEP: mesh_step}
        self.fixed = tuple(float(fixed[k]) for k in range(len(fixed)))
        self.rate = compute.rate if compute else float("nan")
        self.op_cycles = compute.op_cycles if compute else float("nan")
        self.latency = compute.latency if compute else float("nan")
        self.sram_bytes = sram_bytes
        self.env = simpy.Environment()
        # The hot paths schedule events as ``Environment.schedule`` does, inlined: a
        # push of (time, priority, id, event) on simpy's queue (simpy 4's internals).
        self.queue, self.eid = self.env._queue, self.env._eid
        if not isinstance(self.queue, list):  # pragma: no cover - another simpy
            raise TypeError("wsesim.sim.fabric_net needs simpy 4's event queue")
        n = rows * cols
        self.offset = (1, -1, cols, -cols)
        self.routes: dict[tuple, tuple[tuple, int, float]] = {}
        self.link_free = [0.0] * (4 * n)
        self.link_busy = [0.0] * (4 * n)
        self.up_free = [0.0] * n
        self.down_free = [0.0] * n      # asynchronous receives: the down-ramp's queue
        self.up_busy = [0.0] * n
        self.down_busy = [0.0] * n
        self.pes = [PE(self, i) for i in range(n)]

    def route(self, legs: tuple) -> tuple[tuple, int, float]:
        """A route of (direction, hops) legs as (steps, the receiver's index minus the
        sender's, the head's latency from PE to PE without queueing); each step (direction, the step to the next router's index, cycles
        until the head is there: ``hop``, plus ``turn`` where dimension-ordered routing
        changes direction). Cached in ``routes``."""
        out: list[tuple] = []
        last = None
        for d, hops in legs:
            for _ in range(hops):
                turn = self.turn if last is not None and d != last else 0.0
                out.append((d, self.offset[d], self.hop + turn))
                last = d
        route = self.routes[legs] = (tuple(out), sum(step[1] for step in out),
                                     sum(step[2] for step in out) + 2 * self.ramp)
        return route

    def launch(self, src: int, steps: tuple, along: bool, w: int, start: float, bd: tuple,
               tag: Any, posted: float, lat: float = 0.0) -> None:
        """A train sent at ``start`` whose receiver starts its phase at ``posted``, on
        a path of ``lat`` cycles. Its head may wait at the receiver (in the input queue
        of its color, the receive-add pipeline primed), but its wavelets flow only as
        the receiver takes them (flow control: a stalled train takes no link
        bandwidth), so it enters the fabric at the later of ``start`` and ``posted -
        lat - add``: a receiver that starts its phase late takes the train at once.
        Its head is at the sender's router a ramp later (one event per link from
        there)."""
        ready = posted - lat - self.add
        at = start if start > ready else ready
        heappush(self.queue, (at + self.ramp, NORMAL, next(self.eid),
                              _Branch(self, src, steps, along, w, tag, start, bd,
                                      self.ramp)))

    def node(self, row: int, col: int) -> int:
        return row * self.cols + col

    def deliver(self, node: int, now: float, br: _Branch) -> None:
        """The head is at ``node``'s router: it goes down the ramp to the PE's queue for
        its color (the inbox), or wakes the PE if it is waiting for it. The down-ramp
        is not reserved here: it interleaves colors wavelet by wavelet, and what limits
        it is the PE taking one wavelet per cycle as its program consumes trains."""
        ramp = self.ramp
        msg = (now + ramp, br.w, br.send_t, br.bd, br.lat + ramp)
        pe = self.pes[node]
        tag = br.tag
        if tag in pe.waiting:      # the program waits for it: wake it (one event)
            pe.waiting = ()
            pe.woke = tag
            pe._value = msg
            pe.callbacks = pe._cbs
            heappush(self.queue, (now, NORMAL, next(self.eid), pe))
        elif tag in pe.inbox:
            raise RuntimeError(f"PE {pe.row},{pe.col}: two trains tagged {tag!r}")
        else:
            pe.inbox[tag] = msg

    def run(self, programs: Mapping[int, Sequence[tuple]] | Callable[[PE], Sequence[tuple]]
            ) -> NetRun:
        """Run every PE's program (a mapping node -> ops, or a function of the PE
        giving its ops) to the end; returns the timing. Every program starts with an
        event at cycle 0; simpy then processes the trains' hops and the PEs' wake-ups
        in time order."""
        t0 = time.perf_counter()
        env = self.env
        gc_was = gc.isenabled()
        gc.disable()   # many short-lived objects; nothing cyclic needs collecting mid-run
        try:
            items = programs.items() if isinstance(programs, Mapping) else \
                ((pe.idx, programs(pe)) for pe in self.pes)
            for node, ops in items:
                if not ops:
                    continue
                pe = self.pes[node]
                pe.ops = ops if isinstance(ops, list) else list(ops)
                pe._value = None
                pe.callbacks = pe._cbs
                heappush(self.queue, (0.0, NORMAL, next(self.eid), pe))
            t1 = time.perf_counter()
            env.run()
            sim_s = time.perf_counter() - t1
        finally:
            if gc_was:
                gc.enable()
        wall = time.perf_counter() - t0
        eid = getattr(env, "_eid", None)
        events = next(eid) if eid is not None else -1
        stuck = [pe for pe in self.pes if pe.pc < len(pe.ops) or pe.held]
        if stuck:
            pe = stuck[0]
            raise RuntimeError(f"{len(stuck)} PEs wait for messages never sent (PE "
                               f"{pe.row},{pe.col} waits for {pe.waiting!r})")
        rows, cols = self.rows, self.cols
        finish = np.array([pe.t for pe in self.pes]).reshape(rows, cols)
        last = self.pes[int(np.argmax(finish))]
        cycles = float(last.t)
        cost = Cost(*map(float, last.bd))
        notes = []
        if self.sram_bytes is not None:
            over = [pe for pe in self.pes if pe.sram_peak > self.sram_bytes]
            if over:
                notes.append(f"{len(over)} PEs hold more than their {self.sram_bytes:,} B "
                             f"of SRAM (fullest {max(p.sram_peak for p in over):,} B)")
        return NetRun(
            cycles=cycles, cost=cost, events=events, wall_s=wall, sim_s=sim_s, rows=rows,
            cols=cols,
            pe_busy=np.array([pe.busy for pe in self.pes]).reshape(rows, cols),
            link_busy=np.array(self.link_busy).reshape(rows, cols, 4),
            ramp_up_busy=np.array(self.up_busy).reshape(rows, cols),
            ramp_down_busy=np.array(self.down_busy).reshape(rows, cols),
            finish=finish,
            sram_peak=np.array([pe.sram_peak for pe in self.pes]).reshape(rows, cols),
            notes=notes)
