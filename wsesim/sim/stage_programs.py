"""The programs of a LLaMA layer's stages at the PE level: a decode step (or a chunk of
tokens) through attention, the MLP, the LM head or the embeddings on a region, and a
prompt through a whole-grid stage by MeshGEMM, built as ``wsesim.perf.stages`` composes
the closed forms (the same kernels, simulated message by message)."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.mapping.tiling import TensorBlock, split_units
from wsesim.perf.cost import Cost
from wsesim.perf.stages import Kernels, find_tensor, fused, local_products, meshgemm_tiles
from wsesim.sim.netrun import NetRun
from wsesim.sim.ops import ROUTE_SWITCH
from wsesim.sim.program import Program, area, make_net

# The axis a reduction runs over, by the direction of the lines it runs along: along
# each column it reduces over the region's rows (``wsesim.perf.stages.route_switches``).
AXIS = {"col": "rows", "row": "cols"}


class StageProgram:
    """Builds a stage's parts on ``area`` as the closed forms compose them. Its
    reductions are routed for one axis of the region at a time: a reduction along the
    other axis than the one before first switches the routes (``route_switch_cycles``
    on every PE), and a stage whose last reduction is not along its first one's axis
    switches back at its end, for the next layer (the switches of the stage's cyclic
    sequence of reductions)."""

    def __init__(self, prog: Program, area: Region, tokens: int) -> None:
        self.p = prog
        self.kn = prog.kn
        self.pe = prog.kn.pe
        self.a = area
        self.R, self.C = area.rows, area.cols
        self.tokens = tokens
        self.axes: list[str] = []     # the axes of the stage's reductions so far

    def work(self, cost: Cost, sram: Any = None) -> None:
        self.p.work(self.a, cost, sram)

    def reduce(self, along: str, elements: Any, seg: int | None = None) -> None:
        """An allreduce along every row or column of the stage's area (in segments of
        ``seg``), after a route switch if the previous one ran along the other axis."""
        full = self.C if along == "row" else self.R
        if min(seg or full, full) > 1:
            if self.axes and self.axes[-1] != AXIS[along]:
                self.p.fixed(self.a, ROUTE_SWITCH)
            self.axes.append(AXIS[along])
        self.p.allreduce(self.a, along, elements, seg)

    def end(self) -> None:
        """The routes back to the first reduction's axis, for the next layer."""
        if self.axes and self.axes[-1] != self.axes[0]:
            self.p.fixed(self.a, ROUTE_SWITCH)

    def norm(self, h: Any) -> None:
        t = self.tokens
        self.work(self.pe.vector(h * t, 2))
        self.reduce("col", np.full((1, 1), t))
        self.work(self.pe.elementwise_op("rsqrt", t) + self.pe.vector(h * t, 2))

    def linear(self, tb: TensorBlock) -> None:
        k, _, n = tb.cuts(self.R, self.C)
        t = self.tokens
        self.work(local_products(self.pe, t, k, n, tb.fmt),
                  sram=np.broadcast_to(tb.blocks(self.R, self.C).total, (self.R, self.C)))
        self.reduce("col" if tb.k_axis == "rows" else "row", n * t)

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
        local = split_units(int(kn.attended(context)), R)[:, None].astype(float)
        scores = local * heads_per_col * t
        kv = content.kv
        self.norm(h)
        self.linear(qkv)
        self.bias(content, "q_proj", n_qkv)
        self.work(pe.elementwise_op("rope", (q_cols + kv_cols) * t))
        self.work(pe.vector(2 * kv_cols * t),
                  sram=None if kv is None else kv.blocks(R, C).total)      # append K, V
        self.work(local_products(pe, t, q_cols, local))                      # q . K
        self.reduce("row", scores, seg=cols_per_head)
        self.work(pe.vector(scores) + pe.vector(scores))                   # scale, max
        self.reduce("col", np.full((1, 1), heads_per_col * t))
        self.work(pe.vector(scores) + pe.elementwise_op("exp", scores) + pe.vector(scores))
        self.reduce("col", np.full((1, 1), heads_per_col * t))
        self.work(pe.vector(scores))                                        # normalize
        self.work(local_products(pe, t, local, q_cols))                      # weights . V
        self.reduce("col", q_cols * t)
        self.linear(o)  # type: ignore[arg-type]
        self.bias(content, "o_proj", h)
        self.work(pe.vector(h * t))                                         # residual
        self.end()

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
        self.end()

    def lm_head(self, content: Any) -> None:
        head = find_tensor(content, "lm_head")
        k, _, v = head.cuts(self.R, self.C)  # type: ignore[union-attr]
        self.norm(k)
        self.linear(head)  # type: ignore[arg-type]
        self.work(self.pe.vector(v * self.tokens))                         # local argmax
        self.reduce("row", np.full((1, 1), 2 * self.tokens))
        self.end()

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
        context = int(self.kn.attended(context))
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
        self.p.rotating_reduce(self.a, mt, kt, nt, rounds)                 # Q K^T
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


def simulate_stage(kn: Kernels, content: Any, rows: int, cols: int, context: int,
                   tokens: int) -> NetRun:
    """One stage on its own ``rows x cols`` region for ``tokens`` tokens at
    ``context``, simulated."""
    prog = Program(kn, make_net(kn, rows, cols))
    StageProgram(prog, area(0, 0, rows, cols), tokens).part(content, context)
    return prog.run()


# Prefill on a whole grid runs max(rows, cols) identical MeshGEMM steps per product: up
# to this many are simulated; beyond, half and all of them are, and the rest
# extrapolated linearly (every step shifts and multiplies the same tiles, so the total
# is linear in their count; 12 keeps a prefill on the largest grid allowed to seconds).
MESH_ROUNDS = 12


def _mesh_run(kn: Kernels, content: Any, rows: int, cols: int, tokens: int, context: int,
              rounds: int) -> NetRun:
    prog = Program(kn, make_net(kn, rows, cols))
    st = StageProgram(prog, area(0, 0, rows, cols), tokens)
    if content.part == "attention":
        st.attention_prefill(content, rounds, context)
    else:
        st.mlp_prefill(content, rounds)
    return prog.run()


def extrapolated_steps(run_at: Callable[[int], NetRun], steps: int
                       ) -> tuple[Cost, NetRun, list[str]]:
    """A MeshGEMM of ``steps`` steps at PE level: every step simulated up to
    ``MESH_ROUNDS``; beyond, extrapolated linearly from runs of ``MESH_ROUNDS // 2`` and
    ``MESH_ROUNDS`` steps (every step is alike), with a note saying so. ``run_at(r)``
    simulates r steps; returns the cost, the longer run and the notes."""
    if steps <= MESH_ROUNDS:
        run = run_at(steps)
        return run.cost, run, []
    r0, r1 = MESH_ROUNDS // 2, MESH_ROUNDS
    a, b = run_at(r0), run_at(r1)
    x = (steps - r1) / (r1 - r0)
    return b.cost * (1 + x) + a.cost * (-x), b, [
        f"{r0} and {r1} of the {steps} MeshGEMM steps simulated; the rest extrapolated"]


def mesh_prefill(kn: Kernels, content: Any, rows: int, cols: int, tokens: int,
                 context: int) -> tuple[Cost, NetRun, list[str]]:
    """A prompt chunk attending to ``context`` tokens through a sequential stage by
    MeshGEMM at PE level (:func:`extrapolated_steps`): cost, run, notes."""
    return extrapolated_steps(
        lambda r: _mesh_run(kn, content, rows, cols, tokens, context, r), max(rows, cols))
