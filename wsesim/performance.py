"""The performance section of a run: simulate the plan's timeline and name what limits
it, next to the closed-form bounds the simulation may never beat."""
from __future__ import annotations

from typing import Any

import numpy as np

from wsesim.mapping.plan import Plan
from wsesim.perf.compute import PECompute
from wsesim.perf.cost import CAUSES
from wsesim.perf.stages import largest_block
from wsesim.perf.model import (
    PerformanceModel,
    build_model,
    dominant_cause,
    max_tokens_per_cycle,
)
from wsesim.quant.dequant import KINDS, ops_per_weight
from wsesim.sim.tile import TileRun, run_tile


def _where(model: PerformanceModel, name: str) -> str:
    for seg in model.segments:
        for e in seg.elements:
            if e.name == name and len(model.segments) > 1:
                return f"{name} (wafer {seg.wafer})"
    return name


def bottleneck(model: PerformanceModel, batch: int) -> str:
    """What limits tokens/s, in words: the slowest element once the pipeline is full,
    else the cause that dominates each token's own round trip."""
    path = model.token_path()
    path_cycles = float(path.total)
    name, cost, occupancy = model.slowest_element()
    servers = sum(not e.delay_is_latency for seg in model.segments for e in seg.elements)
    saturated = batch * occupancy >= path_cycles and servers > 1 and batch > 1
    if saturated:
        if name == "inter-wafer link":
            return ("inter-wafer link: the pipeline is full and the link between wafers is "
                    "its busiest element")
        cause, share = dominant_cause(cost)
        return (f"{_where(model, name)}: the pipeline is full ({batch} sequences) and this "
                f"is its slowest element, {occupancy:,.0f} cycles per token, "
                f"{share:.0%} {CAUSES[cause]}")
    cause, share = dominant_cause(path)
    worst_stage = max((e for s in model.segments for e in s.elements if not
                       e.delay_is_latency), key=lambda e: float(np.mean(e.decode.total)))
    stage_cause, stage_share = dominant_cause(worst_stage.decode)
    return (f"{CAUSES[cause]}: {share:.0%} of each token's {path_cycles:,.0f}-cycle round "
            f"trip through {sum(len(s.elements) for s in model.segments)} stages and paths "
            f"(latency-bound at batch {batch}); the slowest stage is "
            f"{_where(model, worst_stage.name)}, {stage_share:.0%} {CAUSES[stage_cause]}")


def decode_tokens_per_cycle(model: PerformanceModel, run: TileRun) -> float:
    """Output tokens per cycle of all sequences together, from the moment the first
    decode step starts to the last token (the first token of each sequence comes from
    its prefill and is not counted)."""
    seqs = run.sequences
    fb_occupancy, fb_delay = model.feedback_timing()
    first_in = min(s.tokens[0] for s in seqs) + fb_occupancy + fb_delay
    last_out = max(s.tokens[-1] for s in seqs)
    return sum(len(s.tokens) - 1 for s in seqs) / (last_out - first_in)


def summarize(model: PerformanceModel, run: TileRun, fits: bool) -> dict[str, Any]:
    dep = model.plan.deployment
    hz = model.clock_hz
    wl = dep.workload
    seqs = run.sequences
    path = model.token_path()
    closed_tpot = float(path.total) / hz
    if wl.output_tokens > 1:
        tpot = float(np.mean([(s.tokens[-1] - s.tokens[0]) / (len(s.tokens) - 1)
                              for s in seqs])) / hz
        aggregate = decode_tokens_per_cycle(model, run) * hz
    else:
        tpot = closed_tpot
        aggregate = wl.batch_size / tpot
    ttft = float(np.mean([s.ttft for s in seqs])) / hz
    prefill_done = max(s.ttft for s in seqs) / hz
    busy, links = [], []
    names = {s.index: s.name for s in model.plan.stages}
    for slot, fraction in run.busy_fraction():
        if slot.link is not None:
            if slot.link >= 0:
                links.append(fraction)
        else:   # a region's stages share its fraction (a path's none)
            busy += [{"stage": i, "name": names[i], "busy": fraction}
                     for i in slot.stages]
    out: dict[str, Any] = {
        "tokens_per_s_per_user": 1.0 / tpot,
        "tokens_per_s": aggregate,
        "time_per_output_token_s": tpot,
        "ttft_s": ttft,
        "prefill_tokens_per_s": wl.batch_size * wl.prompt_tokens / prefill_done,
        "layer_time_s": model.layer_cycles() / hz,
        "bottleneck": bottleneck(model, wl.batch_size),
        "token_breakdown_s": {k: float(v) / hz for k, v in path.by_cause().items()},
        "closed_form": {
            "time_per_output_token_s": closed_tpot,
            "max_tokens_per_s": hz * max_tokens_per_cycle(model),
        },
        "memory_fits": fits,
        "events": run.events,
        "stage_busy": busy,
        "link_busy": links,
        "notes": list(model.notes),
    }
    if not fits:
        out["notes"].append("the deployment does not fit in SRAM: these figures are for "
                            "the same plan as if it did")
    return out


def assumptions(plan: Plan) -> list[str]:
    """The performance model's assumptions, with this deployment's numbers."""
    dep = plan.deployment
    k = dep.hardware.kernel
    fitted = ", ".join(k.calibrated.constants) or "none"
    cases = k.calibrated.cases
    out = [
        f"Kernel costs: {k.vector_op_cycles:g} cycles to issue a vector instruction and "
        f"at least {k.vector_latency_cycles:g} before a dependent one completes; a chain "
        f"stage {k.receive_add_forward_cycles:g} cycles beyond its hop and ramps; "
        f"{k.fabric_call_cycles:g} cycles per fabric operation called; "
        f"{k.route_switch_cycles:g} per switch of a region's reductions to its other axis; "
        f"{k.mesh_step_cycles:g} per MeshGEMM step. Fitted to measurements: {fitted} "
        f"(on {len(cases)} validation case{'s' if len(cases) != 1 else ''} of "
        f"{dep.hardware.name}; `wsesim validate` shows each case's error and its "
        "leave-one-out error). Nothing overlaps inside a stage, as in WaferLLM's kernels, "
        "except in MeshGEMM prefill, where each step's tile product overlaps its tile "
        "shift and successive score reductions overlap (their roots rotate).",
        f"Inter-wafer link: {dep.hardware.interwafer_bytes_per_s / 1e9:g} GB/s and "
        f"{dep.hardware.interwafer_latency_s * 1e6:g} us per transfer (the latency is not "
        "published: an assumption).",
        "Each sampled token goes back to the embeddings as one 32-bit id: across the "
        "grid from the LM head's region to the embeddings' (hops counted as if both "
        "were on one grid) and, with several wafers, over one link from the last wafer "
        "to the first.",
    ]
    line = dequant_assumption(plan)
    if line is not None:
        out.append(line)
    return out


def _largest_weight_block(plan: Plan) -> tuple[int, int] | None:
    """(inputs, outputs) of the largest block any PE holds of a linear weight stored in
    the deployment's weight format."""
    fmt = plan.deployment.quantization.weights
    best: tuple[int, int] | None = None
    for stage in plan.stages:
        if stage.region is None:
            continue
        for tb in stage.content.tensors:
            if tb.fmt != fmt or tb.tensor.kind != "linear":
                continue
            block = largest_block(tb, stage.region.rows, stage.region.cols)[:2]
            if best is None or block[0] * block[1] > best[0] * best[1]:
                best = block
    return best


def dequant_assumption(plan: Plan) -> str | None:
    """The dequantization cost of the deployment's weight format, in operations and
    cycles per weight of its largest block, marked as derived (None: 16-bit weights)."""
    dep = plan.deployment
    fmt = dep.quantization.weights
    if fmt.is_float:
        return None
    block = _largest_weight_block(plan)
    assert block is not None   # every plan places the model's linear weights
    inputs, outputs = block
    ops = ops_per_weight(fmt, inputs, outputs)
    kinds = ", ".join(f"{ops[k]:.4g} {k}" for k in KINDS if ops[k])
    pe = PECompute.of(dep.hardware, dep.quantization.activations)
    cycles = float(pe.dequant(fmt, inputs, outputs).dequant)
    return (f"Dequantization of {fmt.describe()} weights: {sum(ops.values()):.4g} "
            f"operations per weight ({kinds}) on a block of {inputs} inputs x {outputs} "
            f"outputs (the largest a PE holds), {cycles / (inputs * outputs):.4g} cycles "
            f"per weight with {dep.hardware.name}'s per-instruction costs (kernel.dequant), "
            "paid each time a weight is read (once per token in decode). "
            "DERIVED from the instruction sequence of the bit layout "
            "(wsesim/quant/dequant.py), NOT measured: sweep "
            "hardware.kernel.dequant.* before quoting tokens/s.")


def simulate_performance(plan: Plan, fits: bool, trace: bool = False
                         ) -> tuple[dict[str, Any], PerformanceModel, TileRun]:
    """Price every stage (closed forms at ``fidelity: tile``; every PE and link
    simulated at ``fidelity: pe``), run the timeline simulation, summarize."""
    if plan.deployment.simulation.fidelity == "pe":
        from wsesim.sim.pe import pe_stage_costs
        model = build_model(plan, pe_stage_costs)
    else:
        model = build_model(plan)
    run = run_tile(model, plan.deployment.workload.batch_size, trace=trace)
    return summarize(model, run, fits), model, run
