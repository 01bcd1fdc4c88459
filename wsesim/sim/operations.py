"""Single operations at both fidelities: each simulated PE by PE and link by link, with
the closed form beside it (an :class:`OpResult`): broadcast, allreduce, gemv, transfer
(activations between regions), a stage, a decode layer, a whole small model's decode
step, a prefill by MeshGEMM, and a kernel measurement's setting (``kernel_op``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.mapping.tiling import TensorBlock, split_units
from wsesim.perf.cost import Cost
from wsesim.perf.fabric import group_layout
from wsesim.perf.kernels import closed_form, kernels_of
from wsesim.perf.model import region_path
from wsesim.perf.paths import lane_plan
from wsesim.perf.stages import (
    Kernels,
    attention_cost,
    attention_prefill_meshgemm,
    linear,
    meshgemm_tiles,
    mlp_cost,
    mlp_prefill_meshgemm,
    stage_cost,
)
from wsesim.quant import QuantFormat
from wsesim.sim.netrun import NetRun
from wsesim.sim.program import Program, area, make_net
from wsesim.sim.stage_programs import StageProgram, extrapolated_steps, mesh_prefill
from wsesim.specs import TensorShape
from wsesim.specs.kernel import KernelSpec


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


def _result(op: str, prog: Program, model: Cost) -> OpResult:
    run = prog.run()
    return OpResult(op, run.cost, _scalar(model), run, [*prog.notes, *run.notes])


def broadcast(kn: Kernels, rows: int, cols: int, elements: int, along: str = "row",
              root: int | None = None) -> OpResult:
    """Every row (``along="row"``) or column multicasts ``elements`` values from its
    ``root`` PE (the middle by default) to the rest of the line, all lines at once."""
    prog = Program(kn, make_net(kn, rows, cols))
    n = cols if along == "row" else rows
    r = (n - 1) // 2 if root is None else root
    prog.broadcast(area(0, 0, rows, cols), along, elements, r)
    model = kn.fabric.broadcast(max(r, n - 1 - r), elements, kn.act_bytes) if n > 1 \
        else Cost()
    return _result("broadcast", prog, model)


def _allreduce_note(prog: Program, n: int, algorithm: str, groups: int | None) -> None:
    if algorithm == "two-level" and groups is not None:   # as many as the line allows
        algorithm += f", {group_layout(n, groups)[1]} groups"
    prog.notes.append(f"algorithm: {algorithm}")


def allreduce(kn: Kernels, rows: int, cols: int, elements: int, along: str = "row"
              ) -> OpResult:
    """Every row (or column) allreduces a vector of ``elements`` values with the
    algorithm of ``kn`` (``auto``: the one the closed form finds fastest)."""
    prog = Program(kn, make_net(kn, rows, cols))
    n = cols if along == "row" else rows
    algorithm, groups = prog.allreduce(area(0, 0, rows, cols), along,
                                       np.full((1, 1), elements))
    _allreduce_note(prog, n, algorithm, groups)
    return _result("allreduce", prog, kn.allreduce(n, elements))


def gemv(kn: Kernels, rows: int, cols: int, outputs: int, inputs: int,
         fmt: Any = None) -> OpResult:
    """y = W x with W (``outputs`` x ``inputs``) cut in 2-D blocks over ``rows x cols``
    (inputs along rows, outputs along columns, as WaferLLM's MeshGEMV) inside a decode
    stage: each row's slice of x is multicast from the row's middle PE, every PE
    multiplies its block (plus the dequantization of ``fmt`` weights), and every column
    allreduces its partial sums."""
    fmt = fmt or QuantFormat(bits=16)
    tb = TensorBlock(TensorShape("w", outputs, inputs, "linear"), fmt, "rows")
    prog = Program(kn, make_net(kn, rows, cols))
    whole = area(0, 0, rows, cols)
    k, _, _ = tb.cuts(rows, cols)
    st = StageProgram(prog, whole, 1)
    prog.broadcast(whole, "row", k)
    st.linear(tb)
    model = (kn.fabric.broadcast(math.ceil((cols - 1) / 2), int(k.max()), kn.act_bytes)
             if cols > 1 else Cost()) + linear(kn, tb, rows, cols, 1)
    return _result("gemv", prog, model)


def _kernel_meshgemm(kn: Kernels, rows: int, cols: int, mt: int, kt: int, nt: int,
                     rounds: int) -> NetRun:
    prog = Program(kn, make_net(kn, rows, cols))
    prog.meshgemm(area(0, 0, rows, cols), mt, kt, nt, rounds)
    return prog.run()


def kernel_op(spec: KernelSpec) -> OpResult:
    """A kernel measurement's setting simulated PE by PE (``fidelity: pe`` of a
    validation case), with the closed form of ``wsesim.perf.kernels`` beside it.

    ``gemv``: the vector is already distributed (each row holds its slice of the m
    inputs): every PE multiplies its block (one dependent multiply-accumulate
    instruction per input over its outputs), then every column allreduces its partial
    sums with the spec's algorithm and groups. ``gemm``: WaferLLM's MeshGEMM of m x k x
    n (steps past ``MESH_ROUNDS`` extrapolated from two shorter runs, as every step is
    alike). ``allreduce``: every row allreduces ``elements`` values."""
    kn = kernels_of(spec)
    rows, cols = spec.grid
    whole = area(0, 0, rows, cols)
    closed = closed_form(spec)
    if spec.op == "gemm":
        assert spec.m is not None and spec.k is not None and spec.n is not None
        steps, mt, kt, nt = meshgemm_tiles(rows, cols, spec.m, spec.k, spec.n)
        cost, run, notes = extrapolated_steps(
            lambda r: _kernel_meshgemm(kn, rows, cols, mt, kt, nt, r), steps)
        return OpResult("gemm", cost, _scalar(closed), run, notes)
    prog = Program(kn, make_net(kn, rows, cols))
    if spec.op == "gemv":
        assert spec.m is not None and spec.n is not None
        inputs = split_units(spec.m, rows)[:, None]
        outputs = split_units(spec.n, cols)[None, :]
        prog.instructions(whole, np.where(outputs > 0, inputs, 0), outputs)
        along, n, elements = "col", rows, outputs
    else:
        assert spec.elements is not None
        along, n, elements = "row", cols, np.full((1, 1), spec.elements)
    _allreduce_note(prog, n, *prog.allreduce(whole, along, elements))
    return _result(spec.op, prog, closed)


def stage(kn: Kernels, content: Any, rows: int, cols: int, context: int,
          sram: int | None = None) -> OpResult:
    """One stage (a layer's attention or MLP, the LM head, the embeddings) on its own
    ``rows x cols`` region for one token at ``context``: PE level and the closed form
    of ``wsesim.perf.stages.stage_cost``."""
    prog = Program(kn, make_net(kn, rows, cols, sram))
    StageProgram(prog, area(0, 0, rows, cols), 1).part(content, context)
    model = stage_cost(kn, content, rows, cols, context)
    return _result(content.part, prog, model)


def layer(kn: Kernels, attention_content: Any, mlp_content: Any, rows: int, cols: int,
          context: int, sram: int | None = None) -> OpResult:
    """A decode layer (attention then MLP) on one ``rows x cols`` grid, one run."""
    prog = Program(kn, make_net(kn, rows, cols, sram))
    st = StageProgram(prog, area(0, 0, rows, cols), 1)
    st.attention(attention_content, context)
    st = StageProgram(prog, area(0, 0, rows, cols), 1)
    st.mlp(mlp_content)
    model = attention_cost(kn, attention_content, rows, cols, context) + \
        mlp_cost(kn, mlp_content, rows, cols)
    return _result("layer", prog, model)


def _lanes(prog: Program, src: Region | None, dst: Region, hidden: int) -> Cost:
    """Activations from region ``src`` (None: the west edge) into region ``dst`` by the
    lane plan the closed form ``wsesim.perf.model.region_path`` prices
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
    return region_path(prog.kn, src, dst, hidden, 1)


def transfer(kn: Kernels, rows: int, cols: int, elements: int,
             src: Region | None = None, dst: Region | None = None) -> OpResult:
    """Moving a vector of ``elements`` activations from one region to another on a
    ``rows x cols`` grid (by default the west half to the east half), lane by lane."""
    prog = Program(kn, make_net(kn, rows, cols))
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
    prog = Program(kn, make_net(kn, rows, cols, dep.hardware.pe_sram_bytes))
    model = Cost()
    prev: Region | None = None
    for s in plan.wafers[0].stages:
        r = s.region
        here = area(r.row0, r.col0, r.rows, r.cols)
        if prev is not None and here != prev:   # a region of its own: the path in
            model = model + _lanes(prog, prev, here, dep.model.hidden_size)
        StageProgram(prog, here, 1).part(s.content, ctx)
        model = model + stage_cost(kn, s.content, r.rows, r.cols, ctx)
        prev = here
    return _result("decode_token", prog, model)


def prefill(kn: Kernels, content: Any, rows: int, cols: int, tokens: int) -> OpResult:
    """A prompt of ``tokens`` tokens through a layer's attention or MLP spread over the
    whole ``rows x cols`` grid, every product a MeshGEMM (``mapping: sequential``), at
    PE level and in closed form (``wsesim.perf.stages.*_prefill_meshgemm``)."""
    cost, run, notes = mesh_prefill(kn, content, rows, cols, tokens, tokens)
    closed = attention_prefill_meshgemm if content.part == "attention" else \
        mlp_prefill_meshgemm
    return OpResult(f"prefill {content.part}", cost,
                    _scalar(closed(kn, content, rows, cols, tokens)), run, notes)
