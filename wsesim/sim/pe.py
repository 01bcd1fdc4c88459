"""PE-level fidelity: the operations of a decode layer simulated PE by PE and link by
link (``wsesim.sim.fabric_net``), the referee of the closed forms in ``wsesim.perf``.

Every operation is an SPMD program: each PE of a region runs the same list of *parts*,
each part either local work (priced by the same instruction model as
:class:`wsesim.perf.compute.PECompute`, for the PE's own block: uneven cuts show) or a
fabric collective on the lines of the region (``wsesim.sim.collectives``: chain, tree,
two-level allreduce, multicast broadcast, point-to-point lanes). A PE starts each part as
soon as its own previous part is done, so consecutive phases overlap where their
dependencies allow; the closed forms add the busiest PE's costs phase after phase.

Public API (cycles, by cause, with the closed form beside them, as an ``OpResult``):
``broadcast``, ``allreduce``, ``gemv``, ``transfer`` (activations between regions),
``stage`` (a layer's attention or MLP, the LM head, the embeddings, at a context and a
number of tokens), ``layer`` (attention then MLP), ``prefill`` (a prompt through a
stage spread over the whole grid by MeshGEMM), ``decode_token`` (a whole small model,
every stage and the paths between them, one decode step); ``kernels_for`` builds the
kernels and plan of a LLaMA-shaped model for them. ``pe_stage_costs`` is the
``StageCoster`` that ``simulation: {fidelity: pe}`` uses, and ``pe_utilization(result)``
gives the busy fractions of such a run in the ledger's grid shape.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.mapping.plan import make_plan
from wsesim.mapping.tiling import TensorBlock, split_units
from wsesim.perf.cost import Cost, stack
from wsesim.perf.fabric import group_layout
from wsesim.perf.model import _path
from wsesim.perf.paths import lane_plan
from wsesim.perf.stages import (
    Kernels,
    attention_cost,
    attention_prefill_meshgemm,
    find_tensor,
    fused,
    linear,
    local_products,
    meshgemm_tiles,
    mlp_cost,
    mlp_prefill_meshgemm,
    needs_logits,
    sequential_prefill,
    stage_cost,
)
from wsesim.quant import QuantFormat
from wsesim.sim.collectives import (
    ACC,
    ACCN,
    BCAST,
    RECV,
    SEND,
    allreduce_plan,
    broadcast_plan,
    reduce_plan,
    ring_next,
)
from wsesim.sim.fabric_net import (
    EAST,
    NORTH,
    SOUTH,
    WEST,
    Net,
    NetRun,
    op_acc,
    op_acc_any,
    op_fwd,
    op_recv,
    op_recv_async,
    op_send,
    op_send_async,
    op_step,
    op_work,
    route_xy,
)
from wsesim.sim.limits import too_large
from wsesim.specs import TensorShape, deployment_from_mapping

# Context lengths (and prefill chunk ends) simulated per stage at most; others are
# interpolated linearly between them (attention's cost is linear in the context, up to
# the one-token steps of how the tokens split over the rows).
MAX_SAMPLES = 4
# Message tags are handed out in blocks: a line plan has at most a few phases per
# position (a two-level allreduce: 3, each with two sides), far below this.
TAG_BLOCK = 64


def area(row0: int, col0: int, rows: int, cols: int) -> Region:
    """A rectangle of the simulated grid (one wafer: wafer 0)."""
    return Region(0, row0, col0, rows, cols)


# ---------------------------------------------------------------------- programs
def _branch(off: int, fwd: int, back: int, base: int) -> tuple:
    """A train ``off`` positions along a line; the receiver's tag says the side."""
    if off > 0:
        return ((fwd, off),), False, base
    return ((back, -off),), False, base + 1


def compile_line(phases: tuple, w: int, fwd: int, back: int, tag: int) -> tuple:
    """The ops of one position of a collective plan (``wsesim.sim.collectives``): a
    phase cost at the start of every phase it takes part in (posting the trains it
    will receive in it), then its actions."""
    ops: list[tuple] = []
    for ph, actions in enumerate(phases):
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
        ops.append(op_step(receives))
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

    def wavelets(self, elements: Any) -> np.ndarray:
        return np.asarray(self.kn.fabric.wavelets(elements, self.kn.act_bytes))

    def _nodes(self, area: Region) -> list[list[int]]:
        cols = self.net.cols
        return [[(area.row0 + r) * cols + area.col0 + c for c in range(area.cols)]
                for r in range(area.rows)]

    def _append(self, node: int, ops: Sequence[tuple]) -> None:
        lst = self.ops.get(node)
        if lst is None:
            self.ops[node] = lst = []
        lst.extend(ops)

    # ---- local work -------------------------------------------------------------
    def work(self, area: Region, cost: Cost, sram: Any = None) -> None:
        p = self._pending
        if p is not None and p[0] == area:
            s = sram if p[2] is None else (p[2] if sram is None else p[2] + np.asarray(sram))
            self._pending = (area, p[1] + cost, s)
        else:
            self._flush()
            self._pending = (area, cost, sram)

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
    def lines(self, area: Region, along: str, w: Any, plan: Callable[[int], tuple],
              seg: int | None = None) -> None:
        """A collective on every line of ``area``: along each row (``"row"``) or each
        column, cut in segments of ``seg`` PEs, all in parallel; ``plan(n)`` gives the
        phases of each position of a line of n PEs; ``w`` the wavelets of each PE's
        vector (broadcastable to the area)."""
        self._flush()
        tag = self.tag()
        full = area.cols if along == "row" else area.rows
        seg = min(seg or full, full)
        fwd, back = (EAST, WEST) if along == "row" else (SOUTH, NORTH)
        wl = np.broadcast_to(np.asarray(w, np.int64), (area.rows, area.cols)).tolist()
        cache: dict[tuple[int, int, int], tuple] = {}
        for r, row in enumerate(self._nodes(area)):
            for c, node in enumerate(row):
                s, pos = divmod(c if along == "row" else r, seg)
                n = min(seg, full - s * seg)
                if n <= 1:
                    continue
                key = (n, pos, wl[r][c])
                ops = cache.get(key)
                if ops is None:
                    ops = cache[key] = compile_line(plan(n)[pos], key[2], fwd, back, tag)
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
        self.lines(area, along, self.wavelets(el),
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
        self.lines(area, along, self.wavelets(elements),
                   lambda length: broadcast_plan(length, min(r, length - 1)))

    def lanes(self, lanes: Sequence[tuple[int, int, int]]) -> None:
        """One synchronized phase of point-to-point trains: each (src, dst, w) lane
        sends ``w`` wavelets from PE ``src`` to PE ``dst`` by dimension-ordered
        routing (X, then Y)."""
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
            self._append(node, [op_step([r[1] for r in recv]), *out.get(node, ()), *recv])

    def meshgemm(self, area: Region, mt: int, kt: int, nt: int, rounds: int,
                 fmt: Any = None) -> None:
        """WaferLLM's MeshGEMM (Cannon) on ``area``: ceil(rounds / 2) skew rounds, then
        ``rounds`` steps; in each, every PE sends its A tile (mt x kt) on around its
        row's interleaved ring and its B tile (kt x nt) around its column's (one or two
        hops, asynchronously, one after the other through its up-ramp), multiplies its
        tiles meanwhile (and dequantizes ``fmt`` weights), and waits for the next
        tiles. Every step starts with the kernel's phase cost."""
        self._flush()
        kn = self.kn
        wa, wb = int(self.wavelets(mt * kt)), int(self.wavelets(kt * nt))
        local = kn.pe.gemm(mt, kt, nt)
        if fmt is not None:
            local = local + kn.pe.dequant(fmt, kt * nt)
        work = op_work(local.compute, local.dequant, local.overhead)
        row_next, col_next = ring_next(area.cols), ring_next(area.rows)
        skew = math.ceil(rounds / 2)
        bases = [self.tag(2) for _ in range(skew + rounds)]
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
                        tags = [base + i for *_, i in shifts]
                        ops.append(op_step(tags))
                        for off, w, fwd, back, i in shifts:
                            legs = ((fwd, off),) if off > 0 else ((back, -off),)
                            ops.append(op_send_async(((legs, False, base + i),), w))
                        if k >= skew:
                            ops.append(work)
                        ops.extend(op_recv_async(tag) for tag in tags)
                self._append(node, ops)

    def rotating_reduce(self, area: Region, local: Cost, elements: int, rounds: int) -> None:
        """``rounds`` steps of local work followed by a reduction of its result along
        each row into a root that moves one column on each step (the scores of
        WaferLLM's prefill attention); a PE goes on to the next step once it has passed
        its partial sum on."""
        self._flush()
        w = int(self.wavelets(elements))
        work = op_work(local.compute, local.dequant, local.overhead)
        n = area.cols
        tags = [self.tag(2) for _ in range(rounds)]
        columns: list[list[tuple]] = []   # every row's PEs in column c run alike
        for c in range(n):
            ops: list[tuple] = []
            for k in range(rounds):
                line = compile_line(reduce_plan(n, k % n)[c], w, EAST, WEST, tags[k]) \
                    if n > 1 else (op_step(),)
                ops.append(line[0])
                ops.append(work)
                ops.extend(line[1:])
            columns.append(ops)
        for row in self._nodes(area):
            for c, node in enumerate(row):
                self._append(node, columns[c])

    # ---- running ----------------------------------------------------------------
    def run(self) -> NetRun:
        self._flush()
        return self.net.run(self.ops)


# ------------------------------------------------------------------ stage programs
class _Stage:
    """Builds a stage's parts on ``area`` as the closed forms compose them."""

    def __init__(self, prog: Program, area: Region, tokens: int) -> None:
        self.p = prog
        self.kn = prog.kn
        self.pe = prog.kn.pe
        self.a = area
        self.R, self.C = area.rows, area.cols
        self.tokens = tokens

    def work(self, cost: Cost, sram: Any = None) -> None:
        self.p.work(self.a, cost, sram)

    def norm(self, h: Any) -> None:
        t = self.tokens
        self.work(self.pe.vector(h * t, 2))
        self.p.allreduce(self.a, "col", np.full((1, 1), t))
        self.work(self.pe.elementwise_op("rsqrt", t) + self.pe.vector(h * t, 2))

    def linear(self, tb: TensorBlock) -> None:
        k, _, n = tb.cuts(self.R, self.C)
        t = self.tokens
        self.work(local_products(self.pe, t, k, n, tb.fmt),
                  sram=np.broadcast_to(tb.blocks(self.R, self.C).total, (self.R, self.C)))
        self.p.allreduce(self.a, "col" if tb.k_axis == "rows" else "row", n * t)

    def bias(self, content: Any, name: str, n: Any) -> None:
        if find_tensor(content, name + ".bias") is not None:
            self.work(self.pe.vector(n * self.tokens))

    # ---- the parts of a layer ---------------------------------------------------
    def attention(self, content: Any, context: int) -> None:
        kn, pe, R, C, t = self.kn, self.pe, self.R, self.C, self.tokens
        qkv = fused(content, ("q_proj", "k_proj", "v_proj"))
        o = find_tensor(content, "o_proj")
        k_qkv, _, n_qkv = qkv.cuts(R, C)
        h = k_qkv                                              # hidden slice per row
        q_cols = find_tensor(content, "q_proj").cuts(R, C)[2]        # type: ignore[union-attr]
        kv_cols = find_tensor(content, "k_proj").cuts(R, C)[2]       # type: ignore[union-attr]
        heads = kn.attention_heads
        heads_per_col = math.ceil(heads / C)
        cols_per_head = math.ceil(C / heads)
        local = split_units(int(context), R)[:, None].astype(float)
        scores = local * heads_per_col * t
        kv = content.kv
        self.norm(h)
        self.linear(qkv)
        self.bias(content, "q_proj", n_qkv)
        self.work(pe.elementwise_op("rope", (q_cols + kv_cols) * t))
        self.work(pe.vector(2 * kv_cols * t),
                  sram=None if kv is None else kv.blocks(R, C).total)      # append K, V
        self.work(local_products(pe, t, q_cols, local))                      # q . K
        self.p.allreduce(self.a, "row", scores, seg=cols_per_head)
        self.work(pe.vector(scores) + pe.vector(scores))                   # scale, max
        self.p.allreduce(self.a, "col", np.full((1, 1), heads_per_col * t))
        self.work(pe.vector(scores) + pe.elementwise_op("exp", scores) + pe.vector(scores))
        self.p.allreduce(self.a, "col", np.full((1, 1), heads_per_col * t))
        self.work(pe.vector(scores))                                        # normalize
        self.work(local_products(pe, t, local, q_cols))                      # weights . V
        self.p.allreduce(self.a, "col", q_cols * t)
        self.linear(o)  # type: ignore[arg-type]
        self.bias(content, "o_proj", h)
        self.work(pe.vector(h * t))                                         # residual

    def mlp(self, content: Any) -> None:
        pe, R, C, t = self.pe, self.R, self.C, self.tokens
        gate_up = fused(content, ("gate_proj", "up_proj"))
        down = find_tensor(content, "down_proj")
        k, _, both = gate_up.cuts(R, C)
        f = both // 2 + both % 2
        self.norm(k)
        self.linear(gate_up)
        self.bias(content, "gate_proj", both)
        self.work(pe.elementwise_op("silu", f * t) + pe.vector(f * t))
        self.linear(down)  # type: ignore[arg-type]
        self.bias(content, "down_proj", k)
        self.work(pe.vector(k * t))

    def lm_head(self, content: Any) -> None:
        head = find_tensor(content, "lm_head")
        k, _, v = head.cuts(self.R, self.C)  # type: ignore[union-attr]
        self.norm(k)
        self.linear(head)  # type: ignore[arg-type]
        self.work(self.pe.vector(v * self.tokens))                         # local argmax
        self.p.allreduce(self.a, "row", np.full((1, 1), 2 * self.tokens))

    def embedding(self, content: Any) -> None:
        k, _, _ = content.tensors[0].cuts(self.R, self.C)
        self.work(self.pe.vector(k * self.tokens))

    # ---- prefill on a whole grid: WaferLLM's MeshGEMM -------------------------------
    def _mesh_linear(self, tb: TensorBlock, rounds: int) -> None:
        _, mt, kt, nt = meshgemm_tiles(self.R, self.C, self.tokens, tb.tensor.cols,
                                       tb.tensor.rows)
        self.p.meshgemm(self.a, mt, kt, nt, rounds, tb.fmt)

    def _mesh_norm(self, hidden_slice: int, mt: int) -> None:
        pe = self.pe
        self.work(pe.vector(hidden_slice * mt, 2))
        self.p.allreduce(self.a, "row", np.full((1, 1), mt))
        self.work(pe.elementwise_op("rsqrt", mt) + pe.vector(hidden_slice * mt, 2))

    def attention_prefill(self, content: Any, rounds: int, context: int) -> None:
        """A chunk of ``tokens`` prompt tokens attending to ``context`` tokens through a
        layer's attention on the whole grid, as
        ``wsesim.perf.stages.attention_prefill_meshgemm`` composes it, every product a
        MeshGEMM of ``rounds`` steps (max(rows, cols) in the kernel)."""
        pe, R, C, tokens = self.pe, self.R, self.C, self.tokens
        q, o = find_tensor(content, "q_proj"), find_tensor(content, "o_proj")
        steps = max(R, C)
        mt = math.ceil(tokens / R)
        hidden_slice = math.ceil(q.tensor.cols / C)       # type: ignore[union-attr]
        d = q.tensor.rows                                 # type: ignore[union-attr]
        kt, nt = math.ceil(d / steps), math.ceil(context / C)
        self._mesh_norm(hidden_slice, mt)
        for name in ("q_proj", "k_proj", "v_proj"):
            self._mesh_linear(find_tensor(content, name), rounds)   # type: ignore[arg-type]
        self.work(pe.elementwise_op("rope", 2 * mt * math.ceil(d / C)))
        self.p.rotating_reduce(self.a, pe.gemm(mt, kt, nt), mt * nt, rounds)   # Q K^T
        self.work(pe.vector(mt * nt, 4) + pe.elementwise_op("exp", mt * nt))
        self.p.allreduce(self.a, "row", np.full((1, 1), mt))
        self.p.allreduce(self.a, "row", np.full((1, 1), mt))
        self.p.meshgemm(self.a, mt, math.ceil(context / steps), math.ceil(d / C), rounds)
        self._mesh_linear(o, rounds)                      # type: ignore[arg-type]
        self.work(pe.vector(mt * hidden_slice))

    def mlp_prefill(self, content: Any, rounds: int) -> None:
        """A prompt through a layer's MLP on the whole grid (as
        ``wsesim.perf.stages.mlp_prefill_meshgemm``)."""
        pe, R, C, tokens = self.pe, self.R, self.C, self.tokens
        gate, up, down = (find_tensor(content, n) for n in ("gate_proj", "up_proj", "down_proj"))
        mt = math.ceil(tokens / R)
        hidden_slice = math.ceil(gate.tensor.cols / C)    # type: ignore[union-attr]
        f_slice = math.ceil(gate.tensor.rows / C)         # type: ignore[union-attr]
        self._mesh_norm(hidden_slice, mt)
        self._mesh_linear(gate, rounds)                   # type: ignore[arg-type]
        self._mesh_linear(up, rounds)                     # type: ignore[arg-type]
        self.work(pe.elementwise_op("silu", mt * f_slice) + pe.vector(mt * f_slice))
        self._mesh_linear(down, rounds)                   # type: ignore[arg-type]
        self.work(pe.vector(mt * hidden_slice))

    def part(self, content: Any, context: int) -> None:
        {"attention": lambda: self.attention(content, context),
         "mlp": lambda: self.mlp(content),
         "lm_head": lambda: self.lm_head(content),
         "embedding": lambda: self.embedding(content)}[content.part]()


# ------------------------------------------------------------------------ results
@dataclass
class OpResult:
    """One operation at both fidelities: the PE-level run and the closed form."""

    op: str
    pe: Cost                  # PE-level critical path by cause
    model: Cost               # the closed form (tile fidelity)
    run: NetRun
    notes: list[str] = field(default_factory=list)

    @property
    def pe_cycles(self) -> float:
        return float(np.asarray(self.pe.total))

    @property
    def model_cycles(self) -> float:
        return float(np.asarray(self.model.total))

    @property
    def ratio(self) -> float:
        """PE-level cycles over closed-form cycles."""
        return self.pe_cycles / self.model_cycles if self.model_cycles else float("nan")

    @property
    def events(self) -> int:
        return self.run.events

    @property
    def wall_s(self) -> float:
        return self.run.wall_s

    def utilization(self) -> dict[str, np.ndarray]:
        return self.run.utilization()

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "pe_cycles": self.pe_cycles,
                "model_cycles": self.model_cycles, "ratio": self.ratio,
                "events": self.events, "wall_s": self.wall_s,
                "pe_by_cause": {k: float(np.asarray(v)) for k, v in self.pe.by_cause().items()},
                "model_by_cause": {k: float(np.asarray(v))
                                   for k, v in self.model.by_cause().items()},
                "grid": [self.run.rows, self.run.cols], "notes": list(self.notes)}


def _scalar(c: Cost) -> Cost:
    return Cost(*(float(np.max(getattr(c, f.name))) for f in fields(Cost)))


def _net(kn: Kernels, rows: int, cols: int, sram: int | None = None) -> Net:
    why = too_large(rows, cols)
    if why:
        raise ValueError(why)
    return Net(rows, cols, kn.fabric, sram)


def _result(op: str, prog: Program, model: Cost) -> OpResult:
    run = prog.run()
    return OpResult(op, run.cost, _scalar(model), run, [*prog.notes, *run.notes])


# ------------------------------------------------------------------- single ops
def broadcast(kn: Kernels, rows: int, cols: int, elements: int, along: str = "row",
              root: int | None = None) -> OpResult:
    """Every row (``along="row"``) or column multicasts ``elements`` values from its
    ``root`` PE (the middle by default) to the rest of the line, all lines at once."""
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    whole = area(0, 0, rows, cols)
    n = cols if along == "row" else rows
    r = (n - 1) // 2 if root is None else root
    prog.broadcast(whole, along, elements, r)
    model = kn.fabric.broadcast(max(r, n - 1 - r), elements, kn.act_bytes) if n > 1 \
        else Cost()
    return _result("broadcast", prog, model)


def allreduce(kn: Kernels, rows: int, cols: int, elements: int, along: str = "row"
              ) -> OpResult:
    """Every row (or column) allreduces a vector of ``elements`` values with the
    algorithm of ``kn`` (``auto``: the one the closed form finds fastest)."""
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    n = cols if along == "row" else rows
    algorithm, groups = prog.allreduce(area(0, 0, rows, cols), along,
                                       np.full((1, 1), elements))
    if algorithm == "two-level" and groups is not None:   # as many as the line allows
        algorithm += f", {group_layout(n, groups)[1]} groups"
    prog.notes.append(f"algorithm: {algorithm}")
    return _result("allreduce", prog, kn.allreduce(n, elements))


def gemv(kn: Kernels, rows: int, cols: int, outputs: int, inputs: int,
         fmt: Any = None) -> OpResult:
    """y = W x with W (``outputs`` x ``inputs``) cut in 2-D blocks over ``rows x cols``
    (inputs along rows, outputs along columns, as WaferLLM's MeshGEMV): each row's
    slice of x is multicast from the row's middle PE, every PE multiplies its block
    (one multiply-accumulate instruction per input over its outputs, plus the
    dequantization of ``fmt`` weights), and every column allreduces its partial sums."""
    fmt = fmt or QuantFormat(bits=16)
    tb = TensorBlock(TensorShape("w", outputs, inputs, "linear"), fmt, "rows")
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    whole = area(0, 0, rows, cols)
    k, _, _ = tb.cuts(rows, cols)
    st = _Stage(prog, whole, 1)
    prog.broadcast(whole, "row", k)
    st.linear(tb)
    model = (kn.fabric.broadcast(math.ceil((cols - 1) / 2), int(k.max()), kn.act_bytes)
             if cols > 1 else Cost()) + linear(kn, tb, rows, cols, 1)
    return _result("gemv", prog, model)


def stage(kn: Kernels, content: Any, rows: int, cols: int, context: int,
          sram: int | None = None) -> OpResult:
    """One stage (a layer's attention or MLP, the LM head, the embeddings) on its own
    ``rows x cols`` region for one token at ``context``: PE level and the closed form
    of ``wsesim.perf.stages.stage_cost``."""
    net = _net(kn, rows, cols, sram)
    prog = Program(kn, net)
    _Stage(prog, area(0, 0, rows, cols), 1).part(content, context)
    model = stage_cost(kn, content, rows, cols, context)
    return _result(content.part, prog, model)


def layer(kn: Kernels, attention_content: Any, mlp_content: Any, rows: int, cols: int,
          context: int, sram: int | None = None) -> OpResult:
    """A decode layer (attention then MLP) on one ``rows x cols`` grid, one run."""
    net = _net(kn, rows, cols, sram)
    prog = Program(kn, net)
    st = _Stage(prog, area(0, 0, rows, cols), 1)
    st.attention(attention_content, context)
    st.mlp(mlp_content)
    model = attention_cost(kn, attention_content, rows, cols, context) + \
        mlp_cost(kn, mlp_content, rows, cols)
    return _result("layer", prog, model)


def _lanes(prog: Program, src: Region | None, dst: Region, hidden: int) -> Cost:
    """Activations from region ``src`` (None: the west edge) into region ``dst`` by the
    lane plan the closed form ``wsesim.perf.model._path`` prices
    (:func:`wsesim.perf.paths.lane_plan`): every lane a train from its source PE to its
    destination PE (dimension-ordered routing; lanes on one track queue), then each
    destination row multicasts its slice. Adds the parts; returns that closed form."""
    net = prog.net
    plan = lane_plan(src, dst)
    per_lane = math.ceil(hidden / plan.lanes)
    w = int(prog.wavelets(per_lane))
    prog.lanes([(net.node(*a), net.node(*b), w) for a, b in plan.routes if a != b])
    prog.broadcast(area(dst.row0, dst.col0, plan.lanes, dst.cols), "row", per_lane,
                   (dst.cols - 1) // 2)
    return _path(prog.kn, src, dst, hidden, 1)


def transfer(kn: Kernels, rows: int, cols: int, elements: int,
             src: Region | None = None, dst: Region | None = None) -> OpResult:
    """Moving a vector of ``elements`` activations from one region to another on a
    ``rows x cols`` grid (by default the west half to the east half), lane by lane."""
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    half = max(1, cols // 2)
    src = src or area(0, 0, rows, half)
    dst = dst or area(0, half, rows, cols - half)
    model = _lanes(prog, src, dst, elements)
    return _result("transfer", prog, model)


def decode_token(plan: Any, context: int | None = None) -> OpResult:
    """A whole model's decode step on one wafer, every stage and every path between
    stages in one PE-level run (single-wafer plans; the stages and paths of
    ``wsesim.perf.model.build_model``, without the sampled token's way back)."""
    dep = plan.deployment
    if len(plan.wafers) != 1:
        raise ValueError("decode_token simulates one wafer; this plan has "
                         f"{len(plan.wafers)}")
    kn = Kernels.of(dep)
    rows, cols = dep.grid_shape
    ctx = int(context or dep.workload.prompt_tokens + 1)
    net = _net(kn, rows, cols, dep.hardware.pe_sram_bytes)
    prog = Program(kn, net)
    model = Cost()
    prev: Region | None = None
    for s in plan.wafers[0].stages:
        r = s.region
        here = area(r.row0, r.col0, r.rows, r.cols)
        if dep.mapping.strategy == "pipeline" and prev is not None:
            model = model + _lanes(prog, prev, here, dep.model.hidden_size)
        _Stage(prog, here, 1).part(s.content, ctx)
        model = model + stage_cost(kn, s.content, r.rows, r.cols, ctx)
        prev = here
    return _result("decode_token", prog, model)


# Prefill on a whole grid runs max(rows, cols) identical MeshGEMM steps per product: up
# to this many are simulated; beyond, half and all of them are, and the rest
# extrapolated linearly (every step shifts and multiplies the same tiles, so the total
# is linear in their count; 12 keeps a prefill on the largest grid allowed to seconds).
MESH_ROUNDS = 12


def _mesh_run(kn: Kernels, content: Any, rows: int, cols: int, tokens: int, context: int,
              rounds: int) -> NetRun:
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    st = _Stage(prog, area(0, 0, rows, cols), tokens)
    if content.part == "attention":
        st.attention_prefill(content, rounds, context)
    else:
        st.mlp_prefill(content, rounds)
    return prog.run()


def _mesh_prefill(kn: Kernels, content: Any, rows: int, cols: int, tokens: int,
                  context: int) -> tuple[Cost, NetRun]:
    """A prompt chunk attending to ``context`` tokens through a sequential stage by
    MeshGEMM at PE level (every step simulated up to ``MESH_ROUNDS``, else
    extrapolated from two shorter runs)."""
    steps = max(rows, cols)
    if steps <= MESH_ROUNDS:
        run = _mesh_run(kn, content, rows, cols, tokens, context, steps)
        return run.cost, run
    r0, r1 = MESH_ROUNDS // 2, MESH_ROUNDS
    a = _mesh_run(kn, content, rows, cols, tokens, context, r0)
    b = _mesh_run(kn, content, rows, cols, tokens, context, r1)
    k = (steps - r1) / (r1 - r0)
    return b.cost * (1 + k) + a.cost * (-k), b


def prefill(kn: Kernels, content: Any, rows: int, cols: int, tokens: int) -> OpResult:
    """A prompt of ``tokens`` tokens through a layer's attention or MLP spread over the
    whole ``rows x cols`` grid, every product a MeshGEMM (``mapping: sequential``), at
    PE level and in closed form (``wsesim.perf.stages.*_prefill_meshgemm``)."""
    cost, run = _mesh_prefill(kn, content, rows, cols, tokens, tokens)
    closed = attention_prefill_meshgemm if content.part == "attention" else \
        mlp_prefill_meshgemm
    notes = [] if max(rows, cols) <= MESH_ROUNDS else [
        (f"{MESH_ROUNDS // 2} and {MESH_ROUNDS} of the {max(rows, cols)} MeshGEMM steps "
         "simulated; the rest extrapolated")]
    return OpResult(f"prefill {content.part}", cost,
                    _scalar(closed(kn, content, rows, cols, tokens)), run, notes)


# ------------------------------------------------------------ the stage coster
_STAGE_RUNS: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()


def _sample(values: np.ndarray, limit: int = MAX_SAMPLES) -> np.ndarray:
    uniq = np.unique(values.astype(np.int64))
    if len(uniq) <= limit:
        return uniq
    return np.unique(np.round(np.linspace(uniq[0], uniq[-1], limit)).astype(np.int64))


def _interp(values: np.ndarray, samples: np.ndarray, costs: list[Cost]) -> Cost:
    """Each cause interpolated linearly between the simulated samples."""
    out = []
    for f in fields(Cost):
        ys = np.array([float(np.asarray(getattr(c, f.name))) for c in costs])
        out.append(np.interp(values.astype(float), samples.astype(float), ys)
                   if len(samples) > 1 else np.full(len(values), ys[0]))
    return Cost(*out)


def _simulate_stage(kn: Kernels, content: Any, rows: int, cols: int, context: int,
                    tokens: int) -> NetRun:
    net = _net(kn, rows, cols)
    prog = Program(kn, net)
    _Stage(prog, area(0, 0, rows, cols), tokens).part(content, context)
    return prog.run()


def pe_stage_costs(kn: Kernels, stage: Any, contexts: np.ndarray,
                   chunk_tokens: np.ndarray, chunk_ends: np.ndarray) -> tuple[Cost, Cost]:
    """The ``StageCoster`` of ``simulation: {fidelity: pe}``: a stage's decode cost at
    every context length and its prefill cost for every chunk, simulated PE by PE on
    the stage's region. Attention depends on the context: at most ``MAX_SAMPLES``
    context lengths (chunk ends) are simulated and the rest interpolated linearly.
    ``sequential`` attention and MLP prefill runs the kernel the closed form picks:
    MeshGEMM on the whole grid (``MESH_ROUNDS`` steps simulated at most, the rest
    extrapolated) or the decode kernel token by token."""
    content = stage.content
    r = stage.region
    rows, cols = r.rows, r.cols
    contexts = np.asarray(contexts)
    runs: dict[int, NetRun] = {}

    def at(ctx: int, tokens: int = 1) -> Cost:
        ctx = int(kn.attended(ctx))   # a sliding window caps the tokens attention reads
        key = (int(ctx) if content.part == "attention" else 0, int(tokens))
        if key not in cache:
            run = _simulate_stage(kn, content, rows, cols, key[0] or int(ctx), tokens)
            cache[key] = run.cost
            if tokens == 1:
                runs[key[0]] = run
        return cache[key]

    cache: dict[tuple[Any, int], Cost] = {}
    attention = content.part == "attention"

    def sampled(values: np.ndarray, cost_at: Callable[[int], Cost]) -> Cost:
        """``cost_at`` at every value: simulated at MAX_SAMPLES of them at most (one
        unless the stage is attention, whose cost depends on the context), the rest
        interpolated."""
        samples = _sample(values) if attention else values[:1]
        return _interp(values, samples, [cost_at(int(v)) for v in samples])

    decode = sampled(contexts, at)
    prefill_parts: list[Cost] = [Cost()] * len(chunk_tokens)
    tokens_arr = np.asarray(chunk_tokens)
    ends = np.asarray(chunk_ends)
    for t in np.unique(tokens_arr).tolist():
        idx = np.nonzero(tokens_arr == t)[0]
        if content.part == "lm_head":
            one = at(0, 1)
            for i, last in zip(idx, needs_logits(kn, ends[idx])):
                prefill_parts[i] = one * float(last)
            continue
        groups: dict[str, list[int]] = {"chunk": list(idx)}
        if kn.strategy == "sequential" and content.part in ("attention", "mlp"):
            groups = {}   # by the kernel the closed form picks for each chunk
            for i in idx:
                kernel = sequential_prefill(kn, content, rows, cols, t, int(ends[i]))[0]
                groups.setdefault(kernel, []).append(i)
        for kernel, members in groups.items():
            def cost_at(end: int, kernel: str = kernel) -> Cost:
                if kernel == "meshgemm":
                    key = ("mesh", t, end if attention else 0)
                    if key not in cache:
                        cache[key] = _mesh_prefill(kn, content, rows, cols, t,
                                                   int(kn.attended(end)))[0]
                    return cache[key]
                return at(end) * t if kernel == "token by token" else at(end, t)
            got = sampled(ends[members], cost_at)
            for j, i in enumerate(members):
                prefill_parts[i] = Cost(*(float(v[j]) for v in got.by_cause().values()))
    prefill = stack(prefill_parts)
    # keep the decode run at the longest simulated context for the utilization maps
    if runs:
        key = max(runs)
        _STAGE_RUNS.setdefault(content, {})[(rows, cols)] = runs[key]
    return decode, prefill


def pe_utilization(result: Any) -> dict[str, Any]:
    """Busy fractions of a ``fidelity: pe`` run's decode step in the ledger's grid
    shape: ``{"pe": [wafer arrays], "link": [...], "east": ..., "west": ...,
    "south": ..., "north": ..., "ramp_up": ..., "ramp_down": ...}``, each array
    (rows, cols) per wafer. A PE's fraction is its busy cycles in every stage it holds
    (each stage simulated on its own region, at the longest context simulated) over
    the sum of those stages' cycles on its wafer; the paths between stages are not
    counted. Pass ``link`` to ``wsesim.plots.utilization_figure(..., link_busy=...)``."""
    plan = result.plan
    rows, cols = plan.deployment.grid_shape
    names = ("pe", "link", "east", "west", "south", "north", "ramp_up", "ramp_down")
    out: dict[str, Any] = {n: [] for n in names}
    for wp in plan.wafers:
        busy = {n: np.zeros((rows, cols)) for n in names}
        span = 0.0
        for s in wp.stages:
            run = _STAGE_RUNS.get(s.content, {}).get((s.region.rows, s.region.cols))
            if run is None:
                continue
            r = s.region
            span += run.cycles
            u = run.utilization()
            for n in names:
                busy[n][r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] += u[n] * run.cycles
        for n in names:
            out[n].append(busy[n] / span if span else busy[n])
    return out


def kernels_for(hardware: Any, rows: int, cols: int, hidden: int = 256,
                context: int = 256, algorithm: str = "auto", groups: int | None = None,
                layers: int = 1, strategy: str = "sequential") -> tuple[Kernels, Any]:
    """Kernels and a one-wafer plan of a LLaMA-shaped fp16 model on a ``rows x cols``
    grid of ``hardware`` (a profile name, path or mapping): what ``wsesim
    fabric-check`` and the tests build single operations from. Its shape follows
    LLaMA's: hidden ``hidden``, heads of 64 (at least one), half as many KV heads (all
    of them for an odd count), an MLP of about 8/3 the hidden size rounded up to a
    multiple of 32 (as LLaMA rounds its own to 256; twice the hidden size below 32),
    a small vocabulary of 1,024 (only the LM-head and embedding operations use it)."""
    heads = max(1, hidden // 64)
    inter = max(1, math.ceil(8 * hidden / 3 / 32) * 32) if hidden >= 32 else 2 * hidden
    dep = deployment_from_mapping({
        "name": "fabric-check",
        "model": {"name": f"llama-h{hidden}", "hidden_size": hidden,
                  "intermediate_size": inter, "num_hidden_layers": layers,
                  "num_attention_heads": heads,
                  "num_key_value_heads": max(1, heads // 2) if heads % 2 == 0 else heads,
                  "head_dim": max(1, hidden // heads), "vocab_size": 1024},
        "hardware": hardware, "wafers": 1, "quantization": "fp16",
        "workload": {"batch_size": 1, "prompt_tokens": max(1, context - 1),
                     "output_tokens": 1},
        "mapping": {"strategy": strategy, "grid": [rows, cols], "allreduce": algorithm,
                    **({"allreduce_groups": groups} if groups else {})},
    }, "fabric-check")
    return Kernels.of(dep), make_plan(dep, 1)


__all__ = ["OpResult", "Program", "allreduce", "broadcast",
           "decode_token", "gemv", "kernels_for", "layer", "pe_stage_costs",
           "pe_utilization", "prefill", "stage", "transfer"]
