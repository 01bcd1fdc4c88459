"""Closed-form cycles of each stage's work for one token (decode) or a chunk of prompt
tokens (prefill). Moving activations between stages is in ``wsesim.perf.model``.

A stage runs on its R x C region the operations of its part of a LLaMA layer, the way
WaferLLM's kernels do: a matrix-vector product is a local block product followed by an
allreduce of partial sums along one axis of the region (the axes alternate so no
transpose is needed, and the region's reductions are re-routed at each change of axis),
norms and softmax reduce along an axis too, and nothing overlaps (every instruction and
collective blocks), except in MeshGEMM prefill: a step's tile product overlaps its tile
shift, and the score reductions of successive steps overlap. Block sizes are those of
the memory plan's cuts: the busiest PE sets the pace.

The fixed costs (the ``overhead`` cause) are the issue of every vector instruction
(:class:`~wsesim.perf.compute.PECompute`), one ``fabric_call_cycles`` per fabric
operation called, however many phases it has (two ``library_call_cycles`` instead for
the SDK's ``chain`` allreduce; :class:`~wsesim.perf.fabric.Fabric`), one
``route_switch_cycles`` per re-routing (:func:`route_switches`) and one
``mesh_step_cycles`` per MeshGEMM hand-off (each Cannon step and each skew shift).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from wsesim.mapping.plan import StageContent
from wsesim.mapping.tiling import TensorBlock
from wsesim.perf.compute import PECompute
from wsesim.perf.cost import Cost, Num, cheapest, later, total_of
from wsesim.perf.fabric import Fabric
from wsesim.quant import QuantFormat
from wsesim.specs import Deployment, HardwareProfile


@dataclass(frozen=True)
class Kernels:
    """Everything a stage's cost depends on besides its content and region."""

    fabric: Fabric
    pe: PECompute
    act_bytes: float
    algorithm: str
    groups: int | None
    attention_heads: int
    prompt_tokens: int
    mesh_step: float = 0.0      # MeshGEMM: hand-off between two Cannon steps
    route_switch: float = 0.0   # re-routing a region's reductions to its other axis
    window: int | None = None   # sliding window: tokens attended to at most
    shares_region: bool = False  # the stage runs one after others on its region

    @classmethod
    def of(cls, dep: Deployment) -> "Kernels":
        hw, q = dep.hardware, dep.quantization
        return cls.for_hardware(hw, q.activations, dep.mapping.allreduce,
                                dep.mapping.allreduce_groups,
                                dep.model.num_attention_heads,
                                dep.workload.prompt_tokens, dep.model.attention_window)

    @classmethod
    def for_hardware(cls, hw: HardwareProfile, activations: QuantFormat,
                     algorithm: str = "auto", groups: int | None = None,
                     attention_heads: int = 1, prompt_tokens: int = 1,
                     window: int | None = None) -> "Kernels":
        """The kernels of one hardware profile, outside any deployment (a kernel
        measurement, a single operation)."""
        k = hw.kernel
        return cls(Fabric.of(hw), PECompute.of(hw, activations), activations.bits / 8,
                   algorithm, groups, attention_heads, prompt_tokens,
                   k.mesh_step_cycles, k.route_switch_cycles, window)

    def attended(self, context: Num) -> Num:
        """Tokens a token at ``context`` attends to: all of them, or the window's."""
        if self.window is None:
            return context
        if isinstance(context, (int, np.integer)):
            return min(int(context), self.window)
        return np.minimum(context, self.window)

    def allreduce(self, n: int, elements: Num) -> Cost:
        return self.fabric.best_allreduce(n, elements, self.act_bytes, self.algorithm,
                                          self.groups)


def largest_block(tb: TensorBlock, rows: int, cols: int) -> tuple[int, int, int]:
    """(inputs, outputs, PEs reduced over) of the busiest block of a linear."""
    k, _, n = tb.cuts(rows, cols)
    return int(k.max()), int(n.max()), rows if tb.k_axis == "rows" else cols


def linear(kn: Kernels, tb: TensorBlock, rows: int, cols: int, tokens: Num) -> Cost:
    """Local products for ``tokens`` tokens, dequantization, the partial-sum allreduce."""
    k, n, reduce_over = largest_block(tb, rows, cols)
    return (local_products(kn.pe, tokens, k, n, tb.fmt)
            + kn.allreduce(reduce_over, n * tokens))


def local_products(pe: PECompute, tokens: Num, k: Num, n: Num,
                   fmt: QuantFormat | None = None) -> Cost:
    """A chunk of tokens through a k x n block: the cheaper of one instruction per
    (input, output) over the tokens or one per (token, input) over the outputs. A
    stored weight block in ``fmt`` is dequantized each time it is read: once for the
    first kernel, once per token for the second."""
    dq = Cost() if fmt is None else pe.dequant(fmt, k, n)
    return cheapest(pe.gemm(tokens, k, n) + dq, (pe.gemv(k, n) + dq) * tokens)


def route_switches(kn: Kernels, lines: list[tuple[str, int]]) -> Cost:
    """Re-routing a region's reductions from one axis to the other, as WaferLLM's
    decode does between allreduces along rows and along columns (its colors are routed
    for one axis at a time): one switch per change of axis in the stage's cyclic
    sequence of reductions (``lines``: the axis and the PEs reduced over; a reduction
    over one PE needs no route)."""
    used = [axis for axis, n in lines if n > 1]
    switches = sum(a != b for a, b in zip(used, used[1:] + used[:1]))
    return Cost(overhead=kn.route_switch * switches)


def _norm(kn: Kernels, hidden_slice: int, reduce_over: int, tokens: Num) -> Cost:
    """RMSNorm: squares and their local sum, an allreduce of the sums, rsqrt, scale."""
    return (kn.pe.vector(hidden_slice * tokens, 2) + kn.allreduce(reduce_over, tokens)
            + kn.pe.elementwise_op("rsqrt", tokens) + kn.pe.vector(hidden_slice * tokens, 2))


def find_tensor(content: StageContent, name: str) -> TensorBlock | None:
    return next((t for t in content.tensors if t.tensor.name == name), None)


def fused(content: StageContent, names: tuple[str, ...]) -> TensorBlock:
    """Matrices that share an input and a reduction (q, k, v; gate, up) run as one
    product whose outputs are their outputs side by side."""
    first = find_tensor(content, names[0])
    assert first is not None
    rows = sum(find_tensor(content, n).tensor.rows for n in names)  # type: ignore[union-attr]
    return replace(first, tensor=replace(first.tensor, rows=rows, name="+".join(names)))


def _bias(kn: Kernels, content: StageContent, matrix: str, n: int, tokens: Num) -> Cost:
    """Adding a matrix's bias to its ``n`` outputs, if it has one."""
    return kn.pe.vector(n * tokens) if find_tensor(content, matrix + ".bias") else Cost()


def attention_cost(kn: Kernels, content: StageContent, rows: int, cols: int,
                   context: Num, tokens: Num = 1) -> Cost:
    """A layer's attention block for ``tokens`` new tokens attending to ``context``
    tokens (an array gives one cost per context length)."""
    kv = content.kv
    assert kv is not None
    qkv = fused(content, ("q_proj", "k_proj", "v_proj"))
    o = find_tensor(content, "o_proj")
    assert o is not None
    h_r, qkv_n, qkv_over = largest_block(qkv, rows, cols)
    o_over = largest_block(o, rows, cols)[2]
    q_cols = int(find_tensor(content, "q_proj").cuts(rows, cols)[2].max())  # type: ignore
    kv_cols = int(find_tensor(content, "k_proj").cuts(rows, cols)[2].max())  # type: ignore
    heads = kn.attention_heads
    heads_per_col = math.ceil(heads / cols)
    cols_per_head = math.ceil(cols / heads)
    local_tokens = np.ceil(np.asarray(kn.attended(context), dtype=float) / rows)
    scores = local_tokens * heads_per_col * tokens
    parts = [
        _norm(kn, h_r, rows, tokens),
        linear(kn, qkv, rows, cols, tokens),
        _bias(kn, content, "q_proj", qkv_n, tokens),
        kn.pe.elementwise_op("rope", (q_cols + kv_cols) * tokens),
        kn.pe.vector(2 * kv_cols * tokens),                      # append K and V
        local_products(kn.pe, tokens, q_cols, local_tokens),        # q . K for local tokens
        kn.allreduce(cols_per_head, scores),
        kn.pe.vector(scores),                                    # scale by 1/sqrt(d)
        kn.pe.vector(scores),                                    # local max
        kn.allreduce(rows, heads_per_col * tokens),              # max over tokens
        kn.pe.vector(scores) + kn.pe.elementwise_op("exp", scores),
        kn.pe.vector(scores),                                    # local sum
        kn.allreduce(rows, heads_per_col * tokens),              # sum over tokens
        kn.pe.vector(scores),                                    # normalize
        local_products(kn.pe, tokens, local_tokens, q_cols),        # weights . V
        kn.allreduce(rows, q_cols * tokens),
        linear(kn, o, rows, cols, tokens),
        _bias(kn, content, "o_proj", h_r, tokens),
        kn.pe.vector(h_r * tokens),                              # residual add
        route_switches(kn, [("rows", rows), (qkv.k_axis, qkv_over),
                            ("cols", cols_per_head), ("rows", rows), ("rows", rows),
                            ("rows", rows), (o.k_axis, o_over)]),
    ]
    return total_of(parts)


def mlp_cost(kn: Kernels, content: StageContent, rows: int, cols: int,
             tokens: Num = 1) -> Cost:
    """A layer's SwiGLU MLP block for ``tokens`` tokens."""
    gate_up = fused(content, ("gate_proj", "up_proj"))
    down = find_tensor(content, "down_proj")
    assert down is not None
    h_r, both, gate_up_over = largest_block(gate_up, rows, cols)
    f = both // 2 + both % 2
    return total_of([
        route_switches(kn, [("rows", rows), (gate_up.k_axis, gate_up_over),
                            (down.k_axis, largest_block(down, rows, cols)[2])]),
        _norm(kn, h_r, rows, tokens),
        linear(kn, gate_up, rows, cols, tokens),
        _bias(kn, content, "gate_proj", both, tokens),
        kn.pe.elementwise_op("silu", f * tokens) + kn.pe.vector(f * tokens),
        linear(kn, down, rows, cols, tokens),
        _bias(kn, content, "down_proj", h_r, tokens),
        kn.pe.vector(h_r * tokens),
    ])


def lm_head_cost(kn: Kernels, content: StageContent, rows: int, cols: int,
                 tokens: Num = 1) -> Cost:
    """Final norm, the vocabulary projection, and the argmax across the vocabulary."""
    head = find_tensor(content, "lm_head")
    assert head is not None
    h_r, v_c, head_over = largest_block(head, rows, cols)
    return total_of([
        route_switches(kn, [("rows", rows), (head.k_axis, head_over), ("cols", cols)]),
        _norm(kn, h_r, rows, tokens),
        linear(kn, head, rows, cols, tokens),
        kn.pe.vector(v_c * tokens),                 # local argmax
        kn.allreduce(cols, 2 * tokens),             # (value, index) max along the row
    ])


def embedding_cost(kn: Kernels, content: StageContent, rows: int, cols: int,
                   tokens: Num = 1) -> Cost:
    """Looking a token's row up: its PEs copy their slices out."""
    table = content.tensors[0]
    k, _, _ = table.cuts(rows, cols)
    return kn.pe.vector(int(k.max()) * tokens)


def stage_cost(kn: Kernels, content: StageContent, rows: int, cols: int, context: Num,
               tokens: Num = 1) -> Cost:
    """Cycles of one stage for ``tokens`` tokens at the given context length(s)."""
    if content.part == "attention":
        return attention_cost(kn, content, rows, cols, context, tokens)
    if content.part == "mlp":
        return mlp_cost(kn, content, rows, cols, tokens)
    if content.part == "lm_head":
        return lm_head_cost(kn, content, rows, cols, tokens)
    return embedding_cost(kn, content, rows, cols, tokens)


# ---- prefill on a whole square grid: WaferLLM's MeshGEMM ---------------------------

def _shift(kn: Kernels, tile: Num) -> Cost:
    """A tile's two-hop shift: its head's latency and its wavelets. It pays no fabric
    call of its own: the step that starts it pays the hand-off (``mesh_step``)."""
    shift = kn.fabric.transfer(2, 0, tile, kn.act_bytes)
    return Cost(latency=shift.latency, bandwidth=shift.bandwidth)


def _mesh_step(kn: Kernels, compute: Cost, tile_a: Num, tile_b: Num) -> Cost:
    """One Cannon step: the local tile product overlaps the two-hop shift of both
    tiles (on different links); the step ends when both are done, then the next step's
    task is handed off (``mesh_step_cycles``)."""
    return later(compute, _shift(kn, np.maximum(tile_a, tile_b))) + Cost(
        overhead=kn.mesh_step)


def meshgemm_tiles(rows: int, cols: int, m: int, k: int, n: int
                   ) -> tuple[int, int, int, int]:
    """(steps, rows, inputs, outputs) of each PE's tile in a Cannon product on a grid."""
    steps = max(rows, cols)
    return steps, math.ceil(m / rows), math.ceil(k / steps), math.ceil(n / cols)


def meshgemm_cost(kn: Kernels, rows: int, cols: int, m: int, k: int, n: int,
                  tb: TensorBlock | None = None) -> Cost:
    """(m x k) @ (k x n) on a rows x cols grid, Cannon-style as WaferLLM's MeshGEMM:
    max(rows, cols) steps, each a local tile product and a two-hop shift of both tiles,
    after an initial skew of half as many shifts of the left tiles; every step and every
    skew shift pays a hand-off. ``tb`` (a stored weight) adds the dequantization of
    every weight tile that passes through."""
    steps, mt, kt, nt = meshgemm_tiles(rows, cols, m, k, n)
    compute = kn.pe.gemm(mt, kt, nt)
    if tb is not None:
        compute = compute + kn.pe.dequant(tb.fmt, kt, nt)
    step = _mesh_step(kn, compute, mt * kt, kt * nt)
    skew = _shift(kn, mt * kt) + Cost(overhead=kn.mesh_step)   # the left tiles only
    return step * steps + skew * math.ceil(steps / 2)


def _meshgemm_linear(kn: Kernels, tb: TensorBlock, rows: int, cols: int, tokens: int
                     ) -> Cost:
    t = tb.tensor
    return meshgemm_cost(kn, rows, cols, tokens, t.cols, t.rows, tb)


def attention_prefill_meshgemm(kn: Kernels, content: StageContent, rows: int, cols: int,
                               tokens: int, context: int | None = None) -> Cost:
    """A chunk of ``tokens`` prompt tokens through a layer's attention on the whole
    grid, attending to ``context`` tokens (the chunk's end; default: the chunk alone)."""
    names = ("q_proj", "k_proj", "v_proj")
    q = find_tensor(content, "q_proj")
    o = find_tensor(content, "o_proj")
    assert q is not None and o is not None
    steps = max(rows, cols)
    mt = math.ceil(tokens / rows)
    hidden_slice = math.ceil(q.tensor.cols / cols)
    d = q.tensor.rows  # all query dims
    # scores = Q K^T: every step multiplies its tiles while K's tile shifts on, then
    # sends its partial scores into a reduction along the row to a root that rotates
    # from step to step, so successive reductions overlap: each step pays the tile's
    # wavelets and a fabric call, the chain's latency is paid once
    context = tokens if context is None else int(kn.attended(int(context)))
    kt, nt = math.ceil(d / steps), math.ceil(context / cols)
    reduce = kn.fabric.chain(math.ceil((cols - 1) / 2), 1, mt * nt, kn.act_bytes)
    per_step = Cost(bandwidth=reduce.bandwidth, overhead=reduce.overhead)
    scores = (_mesh_step(kn, kn.pe.gemm(mt, kt, nt) + per_step, 0, kt * nt) * steps
              + Cost(latency=reduce.latency))
    softmax = total_of([kn.pe.vector(mt * nt, 4), kn.pe.elementwise_op("exp", mt * nt),
                        kn.allreduce(cols, mt), kn.allreduce(cols, mt)])
    return total_of([
        _norm(kn, hidden_slice, cols, mt),
        *(_meshgemm_linear(kn, find_tensor(content, n), rows, cols, tokens) for n in names),
        kn.pe.elementwise_op("rope", 2 * mt * math.ceil(d / cols)),
        scores, softmax,
        meshgemm_cost(kn, rows, cols, tokens, context, d),   # weights . V
        _meshgemm_linear(kn, o, rows, cols, tokens),
        kn.pe.vector(mt * hidden_slice),
    ])


def mlp_prefill_meshgemm(kn: Kernels, content: StageContent, rows: int, cols: int,
                         tokens: int) -> Cost:
    gate, up, down = (find_tensor(content, n) for n in ("gate_proj", "up_proj", "down_proj"))
    assert gate is not None and up is not None and down is not None
    mt = math.ceil(tokens / rows)
    hidden_slice = math.ceil(gate.tensor.cols / cols)
    f_slice = math.ceil(gate.tensor.rows / cols)
    return total_of([
        _norm(kn, hidden_slice, cols, mt),
        _meshgemm_linear(kn, gate, rows, cols, tokens),
        _meshgemm_linear(kn, up, rows, cols, tokens),
        kn.pe.elementwise_op("silu", mt * f_slice) + kn.pe.vector(mt * f_slice),
        _meshgemm_linear(kn, down, rows, cols, tokens),
        kn.pe.vector(mt * hidden_slice),
    ])


def prefill_cost(kn: Kernels, content: StageContent, rows: int, cols: int, tokens: int,
                 context: Num) -> Cost:
    """Cycles of one stage for a chunk of ``tokens`` prompt tokens.

    An attention or MLP stage that shares its region with others (``sequential``: every
    stage on the whole grid) runs WaferLLM's MeshGEMM for every matrix, or the decode
    kernel token by token when that is faster (short chunks; :func:`sequential_prefill`).
    A stage alone on its region (``pipeline``) streams the chunk through its stationary
    weights: the decode operations over the whole chunk, so each fabric call, route
    switch and latency is paid once per chunk, and each local product is the cheaper of
    one instruction per (input, output) over the chunk's tokens and the decode product
    token by token (:func:`local_products`). The LM head runs for the prompt's last
    token only.
    """
    if content.part == "lm_head":
        return lm_head_cost(kn, content, rows, cols, 1) * needs_logits(kn, context)
    if kn.shares_region and content.part in ("attention", "mlp"):
        return sequential_prefill(kn, content, rows, cols, tokens, context)[1]
    return stage_cost(kn, content, rows, cols, context, tokens)


def needs_logits(kn: Kernels, chunk_end: Num) -> np.ndarray:
    """Whether a prompt chunk ending at ``chunk_end`` needs the LM head: only the
    prompt's last position does (its logits give the first output token)."""
    return np.asarray(chunk_end) >= kn.prompt_tokens


def sequential_prefill(kn: Kernels, content: StageContent, rows: int, cols: int,
                       tokens: int, context: Num) -> tuple[str, Cost]:
    """The kernel a whole-grid stage runs a prompt chunk with, and its cost: MeshGEMM
    pays max(rows, cols) steps whatever the chunk, so a short chunk is cheaper through
    the decode kernel token by token, and a real implementation would choose so."""
    mesh = (attention_prefill_meshgemm(kn, content, rows, cols, tokens, int(context))
            if content.part == "attention"
            else mlp_prefill_meshgemm(kn, content, rows, cols, tokens))
    one_by_one = stage_cost(kn, content, rows, cols, context) * tokens
    return ("meshgemm", mesh) if mesh.worst <= one_by_one.worst \
        else ("token by token", one_by_one)
