"""SPMD programs for the PE-level engine: every PE's list of ops (:mod:`wsesim.sim.ops`),
built part by part the way WaferLLM's kernels run, for :class:`wsesim.sim.fabric_net.Net`.

A part is local work on an area of the grid (priced per PE for its own block: uneven
cuts show), a fabric operation on the lines of an area (``wsesim.sim.collectives``:
chain, tree, two-level allreduce, multicast broadcast, a reduction into one root),
point-to-point lanes, a MeshGEMM, or a fixed cost (a switch of the reduction routes).
A PE starts each part as soon as its own previous part is done, so consecutive parts
overlap where their dependencies allow; the closed forms add the busiest PE's costs
part after part.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.perf.cost import Cost
from wsesim.perf.stages import Kernels
from wsesim.sim.collectives import (
    ACC,
    ACCN,
    BCAST,
    RECV,
    SEND,
    LinePlan,
    allreduce_plan,
    broadcast_plan,
    reduce_plan,
    ring_next,
)
from wsesim.sim.fabric_net import Net
from wsesim.sim.netrun import NetRun
from wsesim.sim.limits import too_large
from wsesim.sim.ops import (
    EAST,
    MESH_STEP,
    NORTH,
    SOUTH,
    WEST,
    op_acc,
    op_acc_any,
    op_call,
    op_fixed,
    op_fwd,
    op_instr,
    op_post,
    op_recv,
    op_recv_async,
    op_send,
    op_send_async,
    op_work,
    route_xy,
)

# Message tags are handed out in blocks: a line plan has at most a few phases per
# position (a two-level allreduce: 3, each with two sides), far below this.
TAG_BLOCK = 64


def area(row0: int, col0: int, rows: int, cols: int) -> Region:
    """A rectangle of the simulated grid (one wafer: wafer 0)."""
    return Region(0, row0, col0, rows, cols)


def make_net(kn: Kernels, rows: int, cols: int, sram: int | None = None) -> Net:
    """The engine for a ``rows x cols`` grid with the kernels' physics (refused past
    the PE fidelity's limit)."""
    why = too_large(rows, cols)
    if why:
        raise ValueError(why)
    return Net(rows, cols, kn.fabric, sram, compute=kn.pe,
               route_switch=kn.route_switch, mesh_step=kn.mesh_step)


def _branch(off: int, fwd: int, back: int, base: int) -> tuple:
    """A train ``off`` positions along a line; the receiver's tag says the side."""
    if off > 0:
        return ((fwd, off),), False, base
    return ((back, -off),), False, base + 1


def compile_line(plan: LinePlan, pos: int, w: int, fwd: int, back: int, tag: int
                 ) -> tuple:
    """The ops of position ``pos`` of a collective plan (``wsesim.sim.collectives``),
    with trains of ``w`` wavelets: at the start of every phase it takes part in, it
    posts the trains it will receive in it, paying the call's fixed cost at its first
    phase of each call; then its actions."""
    ops: list[tuple] = []
    calling = False
    for ph, actions in enumerate(plan.phases[pos]):
        if ph in plan.calls:
            calling = True
        if actions is None:
            continue
        base = tag + 2 * ph
        receives: list[int] = []
        body: list[tuple] = []
        for act in actions:
            kind = act[0]
            if kind == SEND:
                body.append(op_send((_branch(act[1], fwd, back, base),), w))
            elif kind == BCAST:
                branches = []
                if act[1]:
                    branches.append((((back, act[1]),), True, base + 1))
                if act[2]:
                    branches.append((((fwd, act[2]),), True, base))
                body.append(op_send(tuple(branches), w))
            elif kind == RECV:
                receives.append(base + act[1])
                body.append(op_recv(base + act[1]))
            elif kind == ACC:
                receives.append(base + act[1])
                body.append(op_acc(base + act[1]))
            elif kind == ACCN:
                tags = tuple(base + side for side in act[1])
                receives.extend(tags)
                body.append(op_acc_any(tags))
            else:
                receives.append(base + act[1])
                body.append(op_fwd(base + act[1], (_branch(act[2], fwd, back, base),), w))
        ops.append(op_call(receives, plan.library) if calling else op_post(receives))
        calling = False
        ops.extend(body)
    return tuple(ops)


class Program:
    """Every PE's list of ops, built part by part (SPMD: local work on an area, a
    collective on the lines of an area, point-to-point lanes). Consecutive local work
    on one area is summed into one op."""

    def __init__(self, kn: Kernels, net: Net) -> None:
        self.kn = kn
        self.net = net
        self.ops: dict[int, list[tuple]] = {}
        self._tags = 0
        self._pending: tuple[Region, Cost, Any] | None = None
        self.notes: list[str] = []

    def tag(self, count: int = TAG_BLOCK) -> int:
        """The first of ``count`` fresh message tags (two per phase of a plan: one per
        side a train can come from)."""
        t = self._tags
        self._tags += count
        return t

    def wavelets(self, elements: Any, element_bytes: float = 0.0) -> np.ndarray:
        """Wavelets of ``elements`` values in the kernels' activation type (or at least
        ``element_bytes`` each)."""
        return np.asarray(self.kn.fabric.wavelets(
            elements, max(self.kn.act_bytes, element_bytes)))

    def _nodes(self, area: Region) -> list[list[int]]:
        cols = self.net.cols
        return [[(area.row0 + r) * cols + area.col0 + c for c in range(area.cols)]
                for r in range(area.rows)]

    def _append(self, node: int, ops: Sequence[tuple]) -> None:
        lst = self.ops.get(node)
        if lst is None:
            self.ops[node] = lst = []
        lst.extend(ops)

    def _everywhere(self, area: Region, ops: Sequence[tuple]) -> None:
        self._flush()
        for row in self._nodes(area):
            for node in row:
                self._append(node, ops)

    # ---- local work -------------------------------------------------------------
    def work(self, area: Region, cost: Cost, sram: Any = None) -> None:
        """Local work of ``cost`` (per PE of ``area``, broadcastable), priced by the
        kernels' instruction model for each PE's own block."""
        p = self._pending
        if p is not None and p[0] == area:
            s = sram if p[2] is None else (p[2] if sram is None else p[2] + np.asarray(sram))
            self._pending = (area, p[1] + cost, s)
        else:
            self._flush()
            self._pending = (area, cost, sram)

    def instructions(self, area: Region, count: Any, length: Any, sram: Any = None
                     ) -> None:
        """``count`` dependent vector instructions of ``length`` elements on every PE
        of ``area`` (each broadcastable), charged by the engine instruction by
        instruction."""
        self._flush()
        shape = (area.rows, area.cols)
        counts = np.broadcast_to(np.asarray(count, np.int64), shape).ravel().tolist()
        lengths = np.broadcast_to(np.asarray(length, float), shape).ravel().tolist()
        mem = np.broadcast_to(np.asarray(0 if sram is None else sram, np.int64),
                              shape).ravel().tolist()
        nodes = [n for row in self._nodes(area) for n in row]
        for node, c, n, m in zip(nodes, counts, lengths, mem):
            self._append(node, (op_instr(c, n, m),))

    def fixed(self, area: Region, kind: int) -> None:
        """A fixed cost of ``kind`` (:mod:`wsesim.sim.ops`) on every PE of ``area``."""
        self._everywhere(area, (op_fixed(kind),))

    def _flush(self) -> None:
        if self._pending is None:
            return
        area, cost, sram = self._pending
        self._pending = None
        shape = (area.rows, area.cols)

        def grid(x: Any, dtype: Any = float) -> list:
            return np.broadcast_to(np.asarray(x, dtype), shape).ravel().tolist()
        cols = grid(cost.compute)
        deq = grid(cost.dequant)
        ovh = grid(cost.overhead)
        mem = grid(0 if sram is None else sram, np.int64)
        nodes = [n for row in self._nodes(area) for n in row]
        for node, c, d, o, m in zip(nodes, cols, deq, ovh, mem):
            self._append(node, (op_work(c, d, o, m),))

    # ---- collectives ------------------------------------------------------------
    def lines(self, area: Region, along: str, elements: Any,
              plan: Callable[[int], LinePlan], seg: int | None = None) -> None:
        """A collective on every line of ``area``: along each row (``"row"``) or each
        column, cut in segments of ``seg`` PEs, all in parallel; ``plan(n)`` gives the
        plan of a line of n PEs; ``elements`` the values of each PE's vector
        (broadcastable to the area)."""
        self._flush()
        tag = self.tag()
        full = area.cols if along == "row" else area.rows
        seg = min(seg or full, full)
        fwd, back = (EAST, WEST) if along == "row" else (SOUTH, NORTH)
        el = np.broadcast_to(np.asarray(elements, float), (area.rows, area.cols)).tolist()
        cache: dict[tuple[int, int, float], tuple] = {}
        for r, row in enumerate(self._nodes(area)):
            for c, node in enumerate(row):
                s, pos = divmod(c if along == "row" else r, seg)
                n = min(seg, full - s * seg)
                if n <= 1:
                    continue
                key = (n, pos, el[r][c])
                ops = cache.get(key)
                if ops is None:
                    p = plan(n)
                    w = int(self.wavelets(key[2], p.element_bytes))
                    ops = cache[key] = compile_line(p, pos, w, fwd, back, tag)
                if ops:
                    self._append(node, ops)

    def allreduce(self, area: Region, along: str, elements: Any, seg: int | None = None
                  ) -> tuple[str, int | None]:
        """Allreduce of ``elements`` values per PE along every row (``"row"``) or column
        of ``area``, in segments of ``seg``; the algorithm (and group count) the closed
        form picks for the busiest line, which it returns."""
        full = area.cols if along == "row" else area.rows
        n = min(seg or full, full)
        if n <= 1:
            return "none", None
        kn = self.kn
        el = np.asarray(elements, float)
        algorithm, groups = kn.fabric.choose_allreduce(n, float(el.max()), kn.act_bytes,
                                                       kn.algorithm, kn.groups)
        self.lines(area, along, el,
                   lambda length: allreduce_plan(length, algorithm, groups), seg)
        return algorithm, groups

    def broadcast(self, area: Region, along: str, elements: Any, root: int | None = None
                  ) -> None:
        """Multicast along every row or column of ``area`` from position ``root`` (the
        middle by default)."""
        full = area.cols if along == "row" else area.rows
        if full <= 1:
            return
        r = (full - 1) // 2 if root is None else root
        self.lines(area, along, elements,
                   lambda length: broadcast_plan(length, min(r, length - 1)))

    def lanes(self, lanes: Sequence[tuple[int, int, int]]) -> None:
        """One fabric call of point-to-point trains: each (src, dst, w) lane sends
        ``w`` wavelets from PE ``src`` to PE ``dst`` by dimension-ordered routing (X,
        then Y)."""
        self._flush()
        tag = self.tag(max(TAG_BLOCK, len(lanes)))
        out: dict[int, list[tuple]] = {}
        inn: dict[int, list[tuple]] = {}
        for i, (src, dst, w) in enumerate(lanes):
            out.setdefault(src, []).append(
                op_send(((route_xy(self.net, src, dst), False, tag + i),), int(w)))
            inn.setdefault(dst, []).append(op_recv(tag + i))
        for node in {*out, *inn}:
            recv = inn.get(node, ())
            self._append(node, [op_call([r[1] for r in recv]), *out.get(node, ()), *recv])

    def meshgemm(self, area: Region, mt: int, kt: int, nt: int, rounds: int,
                 fmt: Any = None) -> None:
        """WaferLLM's MeshGEMM (Cannon) on ``area``: ceil(rounds / 2) skew rounds that
        shift the left (A) tiles only, then ``rounds`` steps; in each step every PE
        sends its A tile (mt x kt) on around its row's interleaved ring and its B tile
        (kt x nt) around its column's (one or two hops, asynchronously, one after the
        other through its up-ramp), multiplies its tiles meanwhile (kt * nt dependent
        instructions over mt rows; and dequantizes ``fmt`` weights), and waits for the
        next tiles. Every round ends with the hand-off to the next (``mesh_step``)."""
        self._flush()
        kn = self.kn
        wa, wb = int(self.wavelets(mt * kt)), int(self.wavelets(kt * nt))
        product = op_instr(kt * nt, mt)
        dq = kn.pe.dequant(fmt, kt, nt) if fmt is not None else Cost()
        dequant = op_work(dq.compute, dq.dequant, dq.overhead)
        row_next, col_next = ring_next(area.cols), ring_next(area.rows)
        skew = math.ceil(rounds / 2)
        bases = [self.tag(2) for _ in range(skew + rounds)]
        step = op_fixed(MESH_STEP)
        programs: dict[tuple, list[tuple]] = {}   # PEs with the same shifts run alike
        for r, row in enumerate(self._nodes(area)):
            for c, node in enumerate(row):
                shifts = tuple(
                    (nxt[pos] - pos, w, fwd, back, i)
                    for nxt, pos, w, (fwd, back), i in (
                        (row_next, c, wa, (EAST, WEST), 0),
                        (col_next, r, wb, (SOUTH, NORTH), 1))
                    if len(nxt) > 1)
                ops = programs.get(shifts)
                if ops is None:
                    ops = programs[shifts] = []
                    for k, base in enumerate(bases):
                        moving = [s for s in shifts if k >= skew or s[4] == 0]
                        tags = [base + s[4] for s in moving]
                        ops.append(op_post(tags))
                        for off, w, fwd, back, i in moving:
                            legs = ((fwd, off),) if off > 0 else ((back, -off),)
                            ops.append(op_send_async(((legs, False, base + i),), w))
                        if k >= skew:
                            ops.append(product)
                            if fmt is not None:
                                ops.append(dequant)
                        ops.extend(op_recv_async(tag) for tag in tags)
                        ops.append(step)
                self._append(node, ops)

    def rotating_reduce(self, area: Region, mt: int, kt: int, nt: int, rounds: int
                        ) -> None:
        """The scores of WaferLLM's prefill attention (Q K^T): ``rounds`` steps, in each
        every PE multiplies its tiles (kt * nt instructions over mt rows) while its K
        tile (kt x nt) shifts on around its column's ring, then sends its partial
        scores (mt x nt) into a reduction along its row (one fabric call) to a root that
        moves one column on each step; a PE goes on once it has passed its partial sum
        on and its next K tile is in, then hands off to the next step."""
        self._flush()
        w = int(self.wavelets(mt * nt))
        wk = int(self.wavelets(kt * nt))
        product = op_instr(kt * nt, mt)
        step = op_fixed(MESH_STEP)
        n = area.cols
        col_next = ring_next(area.rows)
        tags = [self.tag(4) for _ in range(rounds)]
        programs: dict[tuple[int, int], list[tuple]] = {}
        for r, row in enumerate(self._nodes(area)):
            shift = col_next[r] - r if area.rows > 1 else 0
            for c, node in enumerate(row):
                ops = programs.get((c, shift))
                if ops is None:
                    ops = programs[(c, shift)] = []
                    for k in range(rounds):
                        ktag = tags[k] + 2   # the K tile's tag (the reduction has 2)
                        if shift:
                            legs = ((SOUTH, shift),) if shift > 0 else ((NORTH, -shift),)
                            ops.append(op_post((ktag,)))
                            ops.append(op_send_async(((legs, False, ktag),), wk))
                        line = compile_line(reduce_plan(n, k % n), c, w, EAST, WEST,
                                            tags[k]) if n > 1 else ()
                        ops.extend(line[:1])
                        ops.append(product)
                        ops.extend(line[1:])
                        if shift:
                            ops.append(op_recv_async(ktag))
                        ops.append(step)
                self._append(node, ops)

    # ---- running ----------------------------------------------------------------
    def run(self) -> NetRun:
        self._flush()
        return self.net.run(self.ops)
