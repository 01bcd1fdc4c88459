"""The PE-level fidelity (every PE, router and link) against the closed forms, and the
physics it must show: more hops cost more, trains sharing a link wait, a root takes
one train at a time, a turn costs its cycles."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsesim.cli import main
from wsesim.mapping.plan import make_plan
from wsesim.perf.compute import PECompute
from wsesim.perf.fabric import Fabric, group_layout
from wsesim.perf.kernels import closed_form
from wsesim.perf.stages import attention_prefill_meshgemm
from wsesim.quant import preset
from wsesim.run import simulate
from wsesim.sim import pe as P
from wsesim.sim import stage_programs
from wsesim.sim.fabric_net import Net
from wsesim.sim.ops import (
    CALL,
    EAST,
    LIBRARY_CALL,
    MESH_STEP,
    POST,
    ROUTE_SWITCH,
    WEST,
    op_acc,
    op_acc_any,
    op_call,
    op_fixed,
    op_instr,
    op_post,
    op_recv,
    op_send,
    op_work,
    route_xy,
)
from wsesim.specs import load_hardware
from wsesim.specs.kernel import KernelSpec
from wsesim.validate import with_constants

TOL = 0.10
PARAMS = Fabric(hop=1, ramp=2, turn=20, add=1, link_bytes=4, call=100, library_call=300,
                interwafer_bytes_per_cycle=1, interwafer_latency_cycles=0)


@pytest.fixture(scope="module")
def kernels():
    """(Kernels, plan) of a LLaMA-shaped hidden-256 layer, per hardware profile."""
    return {hw: P.kernels_for(hw, 16, 16) for hw in ("wse2", "wse3")}


def agree(r: P.OpResult, tol: float = TOL) -> None:
    assert r.model_cycles > 0
    assert abs(r.ratio - 1) <= tol, (r.op, r.pe, r.model)
    # the critical path's causes add up to the engine's clock at the last PE's finish
    assert float(np.asarray(r.run.cost.total)) == pytest.approx(r.run.cycles)
    assert r.events > 0


settings_sweep = settings(max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---- single operations against their closed forms ------------------------------------

@settings_sweep
@given(hw=st.sampled_from(["wse2", "wse3"]), rows=st.integers(1, 4),
       cols=st.integers(4, 64), elements=st.integers(1, 4096))
def test_broadcast_agrees(kernels, hw, rows, cols, elements):
    kn, _ = kernels[hw]
    r = P.broadcast(kn, rows, cols, elements)
    agree(r)
    assert r.pe_cycles == pytest.approx(r.model_cycles, rel=1e-12)   # exactly


def _uneven(n: int, groups: int) -> bool:
    """Whether a two-level allreduce's last group is shorter than the others."""
    size, count, _ = group_layout(n, groups)
    return count * size != n


@pytest.mark.parametrize("algorithm", ["chain", "tree", "two-level"])
@settings_sweep
@given(hw=st.sampled_from(["wse2", "wse3"]), n=st.integers(4, 64),
       elements=st.integers(1, 4096), groups=st.one_of(st.none(), st.integers(1, 16)),
       along=st.sampled_from(["row", "col"]))
def test_allreduce_agrees(kernels, algorithm, hw, n, elements, groups, along):
    kn, _ = kernels[hw]
    kn = replace(kn, algorithm=algorithm, groups=groups)
    rows, cols = (2, n) if along == "row" else (n, 2)
    r = P.allreduce(kn, rows, cols, elements, along=along)
    agree(r)
    if algorithm == "two-level":
        groups = kn.fabric.choose_allreduce(n, elements, kn.act_bytes, algorithm, groups)[1]
    if algorithm != "two-level" or not _uneven(n, groups):
        assert r.pe_cycles == pytest.approx(r.model_cycles, rel=1e-12)   # exactly
    else:   # the closed form prices every group as the largest: the PE level is faster
        assert r.model_cycles * 0.95 <= r.pe_cycles <= r.model_cycles * (1 + 1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 48), groups=st.integers(1, 48), elements=st.integers(1, 2048),
       extra=st.floats(1, 1000))
def test_a_two_level_allreduce_pays_one_fabric_call_whatever_its_groups(
        n, groups, elements, extra):
    kn, _ = P.kernels_for("wse3", 4, 4, algorithm="two-level", groups=groups)
    dearer = replace(kn, fabric=replace(kn.fabric, call=kn.fabric.call + extra))
    base, more = (P.allreduce(k, 1, n, elements) for k in (kn, dearer))
    assert more.pe_cycles - base.pe_cycles == pytest.approx(extra)
    assert float(more.pe.overhead) == pytest.approx(kn.fabric.call + extra)


@pytest.mark.parametrize("n", [2, 7, 30])
def test_the_library_chain_pays_two_library_calls_and_reduces_in_fp32(n):
    """The SDK's chain: n - 1 receive-add-forward stages of one hop, then a multicast
    back from the last PE over n - 1 hops, each a library call; 100 fp16 values travel
    as 100 fp32 wavelets."""
    kn, _ = P.kernels_for("wse3", 4, 4, algorithm="chain")
    f = kn.fabric
    r = P.allreduce(kn, 1, n, 100)
    stage = f.hop + 2 * f.ramp + f.add
    by_hand = (2 * f.library_call + (n - 1) * stage + 100
               + (n - 1) * f.hop + 2 * f.ramp + 100)
    assert r.pe_cycles == pytest.approx(by_hand)
    dearer = replace(kn, fabric=replace(f, library_call=f.library_call + 50, call=f.call + 7))
    assert P.allreduce(dearer, 1, n, 100).pe_cycles == pytest.approx(by_hand + 100)


@pytest.mark.parametrize("rows,cols", [(4, 4), (16, 16), (8, 32), (64, 4), (64, 64)])
@pytest.mark.parametrize("size", [1, 100, 4096])
def test_gemv_agrees(kernels, rows, cols, size):
    kn, _ = kernels["wse2"]
    agree(P.gemv(kn, rows, cols, size, size))


def test_quantized_gemv_charges_dequantization(kernels):
    kn, _ = kernels["wse3"]
    r = P.gemv(kn, 16, 16, 2048, 2048, preset("int4-g128"))
    agree(r)
    assert float(r.pe.dequant) > 0 and float(r.pe.dequant) == pytest.approx(
        float(r.model.dequant))


@pytest.mark.parametrize("hw", ["wse2", "wse3"])
@pytest.mark.parametrize("rows,cols,hidden,context", [
    (4, 4, 256, 32), (16, 16, 512, 1000), (8, 32, 256, 300), (32, 32, 256, 512),
    (64, 64, 1024, 4096)])
def test_layer_agrees(hw, rows, cols, hidden, context):
    kn, plan = P.kernels_for(hw, rows, cols, hidden=hidden, context=context)
    att, mlp = plan.wafers[0].stages[1], plan.wafers[0].stages[2]
    r = P.layer(kn, att.content, mlp.content, rows, cols, context)
    agree(r)
    # the PE level runs the busiest PE's work like the closed form: compute agrees
    assert float(r.pe.compute) == pytest.approx(float(r.model.compute), rel=0.02)


@pytest.mark.parametrize("strategy", ["sequential", "pipeline"])
def test_small_model_end_to_end(strategy):
    """A 4-layer LLaMA-shaped model, hidden 256, on 32 x 32 PEs: one decode step through
    every stage (and, for the pipeline, the paths between regions) in one run."""
    _, plan = P.kernels_for("wse2", 32, 32, hidden=256, context=512, layers=4,
                            strategy=strategy)
    assert sum(s.layer is not None for s in plan.stages) == 8
    r = P.decode_token(plan)
    agree(r)


@pytest.mark.parametrize("hw", ["wse2", "wse3"])
@pytest.mark.parametrize("grid,hidden,tokens", [(4, 256, 64), (8, 512, 512), (14, 256, 256)])
def test_meshgemm_prefill_agrees(hw, grid, hidden, tokens):
    """Sequential prefill: every product a MeshGEMM over the whole grid (14 x 14: 12 of
    the 14 steps simulated, the rest extrapolated)."""
    kn, plan = P.kernels_for(hw, grid, grid, hidden=hidden, context=tokens)
    for s in plan.wafers[0].stages[1:3]:
        agree(P.prefill(kn, s.content, grid, grid, tokens))


def test_a_later_prefill_chunk_attends_to_more_tokens():
    kn, plan = P.kernels_for("wse2", 8, 8, hidden=512, context=512)
    att = plan.wafers[0].stages[1].content
    first = attention_prefill_meshgemm(kn, att, 8, 8, 128, 128)
    last = attention_prefill_meshgemm(kn, att, 8, 8, 128, 512)
    assert float(last.total) > float(first.total)
    pe_cost, _, _ = P.mesh_prefill(kn, att, 8, 8, 128, 512)
    assert float(pe_cost.total) == pytest.approx(float(last.total), rel=TOL)


def test_a_sliding_window_caps_attention_at_the_pe_level_too():
    """The PE-level attention reads the window's tokens as the closed form does, for a
    decode stage, a layer and a prefill chunk by MeshGEMM."""
    kn, plan = P.kernels_for("wse2", 8, 8, hidden=512, context=512)
    kn = replace(kn, window=64)
    att, mlp = plan.wafers[0].stages[1].content, plan.wafers[0].stages[2].content
    agree(P.stage(kn, att, 8, 8, 512), tol=0.02)
    agree(P.layer(kn, att, mlp, 8, 8, 512), tol=0.02)
    pe_cost, _, _ = P.mesh_prefill(kn, att, 8, 8, 128, 512)
    closed = attention_prefill_meshgemm(kn, att, 8, 8, 128, 512)
    assert float(pe_cost.total) == pytest.approx(float(closed.total), rel=TOL)
    assert float(pe_cost.total) < float(P.mesh_prefill(replace(kn, window=None), att,
                                                        8, 8, 128, 512)[0].total)


def test_deployment_ttft_tile_vs_pe_with_meshgemm_prefill():
    common = {"model": tiny_model(), "hardware": tiny_hardware(8, 8),
              "workload": {"batch_size": 1, "prompt_tokens": 256, "output_tokens": 8},
              "mapping": {"strategy": "sequential"}}
    tile = simulate(deployment(**common), find_min_wafers=False).performance
    pe = simulate(deployment(**common, simulation={"fidelity": "pe"}),
                  find_min_wafers=False).performance
    assert pe["ttft_s"] == pytest.approx(tile["ttft_s"], rel=TOL)


def test_transfer_between_regions_side_by_side_agrees(kernels):
    kn, _ = kernels["wse3"]
    agree(P.transfer(kn, 16, 32, 4096))


# ---- the deployment at both fidelities -----------------------------------------------

@pytest.mark.parametrize("strategy,batch", [("sequential", 1), ("pipeline", 4)])
def test_deployment_tokens_per_s_tile_vs_pe(strategy, batch):
    common = {"model": tiny_model(num_hidden_layers=4),
              "hardware": tiny_hardware(32, 32, kernel={
                  **tiny_hardware()["kernel"], "fabric_call_cycles": 150}),
              "workload": {"batch_size": batch, "prompt_tokens": 48, "output_tokens": 24},
              "mapping": {"strategy": strategy}}
    tile = simulate(deployment(**common), find_min_wafers=False).performance
    pe = simulate(deployment(**common, simulation={"fidelity": "pe"}),
                  find_min_wafers=False).performance
    assert pe["tokens_per_s"] == pytest.approx(tile["tokens_per_s"], rel=TOL)
    assert pe["tokens_per_s_per_user"] == pytest.approx(tile["tokens_per_s_per_user"],
                                                        rel=TOL)


def test_pe_utilization_has_the_ledger_grid_shape():
    result = simulate(deployment(hardware=tiny_hardware(16, 16),
                                 mapping={"strategy": "pipeline"},
                                 simulation={"fidelity": "pe"}), find_min_wafers=False)
    util = P.pe_utilization(result)
    assert set(util) >= {"pe", "link", "east", "west", "south", "north"}
    for arrays in util.values():
        assert len(arrays) == result.wafers
        assert arrays[0].shape == result.ledger.deployment.grid_shape == (16, 16)
        assert np.all(arrays[0] >= 0) and np.all(arrays[0] <= 1 + 1e-9)
    assert util["pe"][0].max() > 0 and util["link"][0].max() > 0


def test_pe_fidelity_refuses_a_whole_wafer(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("model: llama-3.1-8b\nhardware: wse3\nwafers: 1\n"
                    "simulation: {fidelity: pe}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: simulation.fidelity: ")
    assert "1170 x 755" in err[0]


# ---- physics: tests that fail when they should ----------------------------------------

def test_a_broadcast_over_more_hops_takes_more_cycles(kernels):
    kn, _ = kernels["wse3"]
    near = P.broadcast(kn, 1, 16, 64, root=0)
    far = P.broadcast(kn, 1, 32, 64, root=0)
    assert far.pe_cycles - near.pe_cycles == pytest.approx(16 * kn.fabric.hop)


def _send(direction: int, hops: int, tag: int, w: int) -> tuple:
    """An op sending ``w`` wavelets ``hops`` hops in one direction."""
    return op_send(((((direction, hops),), False, tag),), w)


def _trains(other: str | None, w: int = 50) -> float:
    """When a train of ``w`` wavelets from PE (0,0) to (0,6) is in, with ``other``
    another train at the same time: ``"same"`` from (0,1) to (0,7) (it shares five
    links, and is first on them), ``"apart"`` from (1,0) to (1,6) (no link shared)."""
    net = Net(2, 8, replace(PARAMS, call=0))
    a, a_dst = net.node(0, 0), net.node(0, 6)
    ops = {a: [op_send(((route_xy(net, a, a_dst), False, 1),), w)], a_dst: [op_recv(1)]}
    if other is not None:
        b, b_dst = ((net.node(0, 1), net.node(0, 7)) if other == "same"
                    else (net.node(1, 0), net.node(1, 6)))
        ops[b] = [op_send(((route_xy(net, b, b_dst), False, 2),), w)]
        ops[b_dst] = [op_recv(2)]
    return float(net.run(ops).finish[0, 6])


def test_contention_on_one_link_delays_the_later_train():
    alone = _trains(None)
    assert alone == 2 + 6 + 2 + 50               # ramps, hops, wavelets
    assert _trains("apart") == alone            # separate links: no effect
    assert _trains("same") >= alone + 50 - 1    # it waits for the other's W on the link
    assert _trains(None, w=100) == alone + 50   # bandwidth: W more wavelets, W more cycles


def test_a_root_takes_one_train_at_a_time():
    """Two trains arriving at once from both sides: the second is done W later (the
    down-ramp carries one wavelet per cycle), as Fabric.meet prices it."""
    def run(sides: int, w: int = 40) -> float:
        net = Net(1, 5, replace(PARAMS, call=0))
        # the root starts its phase expecting both trains and adds them as they come
        ops = {2: [op_post((1, 2)), op_acc_any((1, 2))] if sides == 2 else [op_acc(1)],
               0: [_send(EAST, 2, 1, w)]}
        if sides == 2:
            ops[4] = [_send(WEST, 2, 2, w)]
        return net.run(ops).cycles
    assert run(2) == run(1) + 40
    fab = Fabric(hop=1, ramp=2, turn=0, add=1, link_bytes=4, call=0, library_call=0,
                 interwafer_bytes_per_cycle=1, interwafer_latency_cycles=0)
    # one stage of 2 hops from each side, 160 bytes = 40 wavelets
    assert float(fab.meet(1, 2, 1, 2, 80, 2).total) == run(2)
    assert float(fab.meet(1, 2, 0, 0, 80, 2).total) == run(1)


def test_the_engine_charges_each_vector_instruction_issue_and_dependent_latency():
    """A dependent instruction over n elements holds the PE for max(latency, n / rate)
    after its issue: with rate 4, issue 4 and latency 2, five instructions of 3
    elements cost 5 x (4 + 2), five of 40 cost 5 x (4 + 10)."""
    pe = PECompute(rate=4, op_cycles=4, latency=2, elementwise={},
                   dequant_costs=load_hardware("wse2").kernel.dequant)
    for length, cycles in ((3, 30), (40, 70), (0, 0)):
        run = Net(1, 1, PARAMS, compute=pe).run({0: [op_instr(5, length)]})
        assert run.cycles == cycles
        assert float(run.cost.overhead) == (20 if length else 0)


def test_the_engine_charges_fixed_costs_by_their_profile_constants():
    net = Net(1, 1, PARAMS, route_switch=50, mesh_step=7)
    ops = [op_fixed(k) for k in (POST, CALL, LIBRARY_CALL, ROUTE_SWITCH, MESH_STEP)]
    run = net.run({0: ops})
    assert run.cycles == float(run.cost.overhead) == 0 + 100 + 300 + 50 + 7


def _switching(content: object, rows: int, cols: int, extra: float) -> float:
    """PE cycles of a stage with route switches costing ``extra`` more."""
    kn, _ = P.kernels_for("wse3", rows, cols, hidden=256, context=64)
    base = P.stage(kn, content, rows, cols, 64).pe_cycles
    dearer = replace(kn, route_switch=kn.route_switch + extra)
    return P.stage(dearer, content, rows, cols, 64).pe_cycles - base


def test_a_stage_pays_a_route_switch_per_change_of_reduction_axis():
    """hidden 256 on 8 x 8 PEs: 4 heads, 2 columns per head; QKV and gate/up reduce
    over rows, O and down over columns (the axes alternate). Attention's reductions in
    order: norm, QKV (rows), scores (a head's columns), max, sum, weights x V (rows), O
    (columns), and round again to the next layer's norm: four switches. The MLP: norm,
    gate/up (rows), down (columns), back to rows: two."""
    _, plan = P.kernels_for("wse3", 8, 8, hidden=256, context=64)
    att, mlp = plan.wafers[0].stages[1].content, plan.wafers[0].stages[2].content
    axes = {t.tensor.name: t.k_axis for t in (*att.tensors, *mlp.tensors)}
    assert (axes["q_proj"], axes["o_proj"], axes["gate_proj"], axes["down_proj"]) == \
        ("rows", "cols", "rows", "cols")
    assert _switching(att, 8, 8, 100.0) == pytest.approx(400.0)
    assert _switching(mlp, 8, 8, 100.0) == pytest.approx(200.0)


@pytest.mark.parametrize("grid", [4, 7])
def test_a_meshgemm_pays_its_hand_off_every_step_and_skew_shift(grid):
    """grid steps and ceil(grid / 2) skew shifts, each followed by a hand-off."""
    spec = KernelSpec(op="gemm", hardware=load_hardware("wse3"), grid=(grid, grid),
                      m=64, k=64, n=64, fidelity="pe")
    dearer = spec.model_copy(update={"hardware": with_constants(
        spec.hardware, {"kernel.mesh_step_cycles":
                        spec.hardware.kernel.mesh_step_cycles + 10})})
    extra = P.kernel_op(dearer).pe_cycles - P.kernel_op(spec).pe_cycles
    assert extra == pytest.approx(10 * (grid + math.ceil(grid / 2)))


@pytest.mark.parametrize("spec", [
    {"op": "gemv", "grid": [12, 9], "m": 100, "n": 37, "algorithm": "tree"},
    {"op": "gemv", "grid": [6, 6], "m": 60, "n": 66, "algorithm": "chain"},
    {"op": "gemv", "grid": [8, 8], "m": 256, "n": 256, "algorithm": "two-level",
     "groups": 2},
    {"op": "gemm", "grid": [8, 8], "m": 64, "k": 128, "n": 64},
    {"op": "gemm", "grid": [14, 14], "m": 140, "k": 140, "n": 140},
    {"op": "allreduce", "grid": [3, 20], "elements": 300, "algorithm": "tree"},
], ids=["gemv-tree", "gemv-chain", "gemv-two-level", "gemm", "gemm-extrapolated",
        "allreduce"])
def test_kernel_op_agrees_with_the_kernels_closed_form(spec):
    ks = KernelSpec(hardware=load_hardware("wse3"), fidelity="pe", **spec)
    r = P.kernel_op(ks)
    assert r.model_cycles == pytest.approx(float(closed_form(ks).total))
    assert r.pe_cycles == pytest.approx(r.model_cycles, rel=0.01)


def test_kernel_op_gemv_has_no_input_broadcast():
    """The vector is already distributed: a 1 x 1 column of one PE does its block
    alone, 10 instructions of 20 outputs, and nothing else."""
    hw = load_hardware("wse3")
    r = P.kernel_op(KernelSpec(op="gemv", hardware=hw, grid=(1, 1), m=10, n=20,
                               fidelity="pe"))
    k = hw.kernel
    assert r.pe_cycles == pytest.approx(
        10 * (k.vector_op_cycles + max(k.vector_latency_cycles,
                                       20 / hw.macs_per_cycle["fp16"])))


def test_pe_kernel_cases_are_within_their_tolerance(capsys):
    names = ["wse3-meshgemv-p120-m4320-pe", "wse3-meshgemv-p120-m14400-pe",
             "wse3-chaingemv-p120-m720-pe"]
    assert main(["validate", *names, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["cases"] if isinstance(out, dict) else out
    assert sorted(r["name"] for r in rows) == sorted(names)
    for row in rows:
        assert abs(row["error"]) <= 0.15
        # held out by the constants fitted without its tile-fidelity twin (the same
        # measurement; PE cases are not in the fit)
        assert row["loo_error"] is not None and row["loo_error"] != row["error"]
    assert main(["validate", names[2].removesuffix("-pe"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    twin = (out["cases"] if isinstance(out, dict) else out)[0]
    chain = next(r for r in rows if r["name"] == names[2])
    assert chain["loo_predicted"] == pytest.approx(twin["loo_predicted"], rel=1e-9)


def test_a_turn_costs_the_profile_turn_latency():
    def run(dst_rc: tuple[int, int]) -> float:
        net = Net(8, 8, PARAMS)
        src, dst = net.node(0, 0), net.node(*dst_rc)
        return net.run({src: [op_send(((route_xy(net, src, dst), False, 1),), 1)],
                        dst: [op_recv(1)]}).cycles
    straight, turning = run((0, 6)), run((3, 3))    # both 6 hops
    assert turning == straight + PARAMS.turn


def test_call_costs_and_local_work_are_charged_where_the_kernels_pay_them():
    net = Net(1, 2, PARAMS)
    ops = {0: [op_work(compute=30, overhead=7), op_call(), _send(EAST, 1, 1, 10)],
           1: [op_call((1,)), op_recv(1)]}
    run = net.run(ops)
    # sender: 37 local + 100 for the call, then 2 ramps + 1 hop + 10 wavelets
    assert run.cycles == 37 + 100 + 2 * 2 + 1 + 10
    assert (run.cost.compute, run.cost.overhead, run.cost.latency, run.cost.bandwidth) == \
        (30, 107, 5, 10)


@given(send_at=st.integers(0, 400), post_at=st.integers(0, 400),
       sender_first=st.booleans())
@settings(max_examples=40, deadline=None)
def test_a_train_is_taken_when_both_its_sender_and_its_receivers_phase_are_ready(
        send_at, post_at, sender_first):
    # PEs run ahead of simpy's clock: whichever of the two the event loop runs first,
    # the train's head is at the receiver 2 ramps + 1 hop after its send (a train
    # whose receiver is late waits there), and its 10 wavelets stream in from the later
    # of that and the receiver's post
    params = replace(PARAMS, call=0)      # no call cost to hide an early train
    net = Net(1, 2, params)
    sender, receiver = (0, 1) if sender_first else (1, 0)
    way = EAST if sender_first else WEST
    ops = {sender: [op_work(compute=send_at), _send(way, 1, 1, 10)],
           receiver: [op_work(compute=post_at), op_post((1,)), op_recv(1)]}
    run = net.run(ops)
    assert run.cycles == max(send_at + 2 * params.ramp + params.hop, post_at) + 10


def test_more_wavelets_more_cycles_and_same_run_same_answer(kernels):
    kn, _ = kernels["wse2"]
    small, big = P.allreduce(kn, 2, 32, 100), P.allreduce(kn, 2, 32, 1000)
    assert big.pe_cycles > small.pe_cycles
    again = P.allreduce(kn, 2, 32, 1000)
    assert again.pe_cycles == big.pe_cycles and again.events == big.events


def test_utilization_shows_which_links_a_row_broadcast_uses(kernels):
    kn, _ = kernels["wse2"]
    u = P.broadcast(kn, 4, 16, 400).utilization()
    assert u["east"].max() > 0 and u["west"].max() > 0
    assert u["south"].max() == 0 and u["north"].max() == 0
    assert u["pe"].shape == u["link"].shape == (4, 16)
    # the root only sends: its down-ramp is idle, every other PE's is not
    assert u["ramp_down"][:, 7].max() == 0 and u["ramp_down"][:, 0].min() > 0


@pytest.mark.parametrize("src,dst", [
    ((0, 0, 16, 16), (0, 16, 16, 16)),   # side by side: lanes along shared rows
    ((0, 0, 8, 32), (8, 0, 8, 32)),      # stacked: lanes down shared columns
    ((0, 0, 8, 8), (8, 8, 8, 24)),       # corner to corner: one track, lanes queue
], ids=["side", "stacked", "corner"])
def test_paths_between_regions_agree(kernels, src, dst):
    kn, _ = kernels["wse2"]
    r = P.transfer(kn, 16, 32, 4096, src=P.area(*src), dst=P.area(*dst))
    assert r.ratio == pytest.approx(1.0, rel=0.10)


def test_lanes_sharing_one_track_queue(kernels):
    """Regions that touch only at a corner send every lane down one track: its
    wavelets follow each other, so the path takes lanes x longer to carry them."""
    kn, _ = kernels["wse2"]
    parallel = P.transfer(kn, 16, 32, 4096, src=P.area(0, 0, 8, 32), dst=P.area(8, 0, 8, 32))
    queued = P.transfer(kn, 16, 32, 4096, src=P.area(0, 0, 8, 8), dst=P.area(8, 8, 8, 24))
    # 8 lanes of 256 wavelets in a row, then the 256-wavelet multicast: (8 + 1) / (1 + 1)
    assert float(queued.pe.bandwidth) == pytest.approx(4.5 * float(parallel.pe.bandwidth))


def test_sram_budget_overflow_is_reported(kernels):
    kn, plan = P.kernels_for("wse2", 4, 4, hidden=1024, context=64)
    att = plan.wafers[0].stages[1]
    r = P.stage(kn, att.content, 4, 4, 64, sram=49152)
    assert r.run.sram_peak.max() > 49152 and any("SRAM" in n for n in r.notes)


def test_grid_limit_for_single_operations(kernels):
    kn, _ = kernels["wse2"]
    with pytest.raises(ValueError, match="limit"):
        P.allreduce(kn, 200, 200, 10)


# ---- the command -------------------------------------------------------------------------

def test_fabric_check_json(capsys):
    assert main(["fabric-check", "gemv", "--grid", "8", "8", "--elements", "512",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"pe_cycles", "model_cycles", "ratio", "events", "wall_s"} <= set(out)
    assert abs(out["ratio"] - 1) <= TOL and out["events"] > 0


@pytest.mark.parametrize("op", ["broadcast", "allreduce", "attention", "transfer", "layer"])
def test_fabric_check_text(capsys, op):
    assert main(["fabric-check", op, "--grid", "8", "8", "--elements", "256",
                 "--hardware", "wse3", "--algorithm", "tree", "--context", "100"]) == 0
    out = capsys.readouterr().out
    assert "PE level" in out and "closed form" in out and "ratio" in out


@pytest.mark.parametrize("args,key", [
    (["gemv", "--grid", "0", "4", "--elements", "8"], "--grid"),
    (["gemv", "--grid", "4", "4", "--elements", "many"], "--elements"),
    (["ring", "--grid", "4", "4", "--elements", "8"], "op"),
    (["allreduce", "--grid", "4", "4", "--elements", "8", "--algorithm", "ring"],
     "--algorithm"),
    (["gemv", "--grid", "4", "4"], "arguments"),
    (["gemv", "--grid", "1000", "1000", "--elements", "8"], "--grid"),
    (["gemv", "--grid", "4", "4", "--elements", str(10**20)], "--elements"),
    (["layer", "--grid", "4", "4", "--elements", "64", "--context", str(10**20)],
     "--context"),
])
def test_fabric_check_bad_arguments(capsys, args, key):
    assert main(["fabric-check", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: fabric-check: {key}: ")


def test_sequential_prefill_chunks_are_sampled_too(monkeypatch):
    dep = deployment(hardware=tiny_hardware(8, 8), workload={
        "batch_size": 1, "prompt_tokens": 256, "output_tokens": 8},
        simulation={"fidelity": "pe", "prefill_chunk_tokens": 16})
    att = next(s for s in make_plan(dep, 1).stages if s.part == "attention")
    kn = P.Kernels.of(dep)
    runs: list[str] = []
    for name in ("simulate_stage", "mesh_prefill"):
        real = getattr(stage_programs, name)
        monkeypatch.setattr(stage_programs, name, lambda *a, real=real, name=name:
                            runs.append(name) or real(*a))
    ends = 16 * np.arange(1, 17)
    _, pre = P.pe_stage_costs(kn, att, 257 + np.arange(7), np.full(16, 16), ends)
    totals = np.asarray(pre.total)
    # 16 chunks, each attending to more of the prompt: sampled per kernel, not run 16
    # times (plus the decode samples)
    assert len(runs) <= 3 * P.MAX_SAMPLES
    assert totals.shape == (16,) and np.all(np.diff(totals) >= -1e-9)
    assert totals[-1] > totals[0]


def test_pe_stage_costs_interpolates_few_contexts(monkeypatch):
    """Long decodes: at most MAX_SAMPLES context lengths are simulated per stage, the
    rest interpolated; the interpolation stays within the simulated values."""
    dep = deployment(hardware=tiny_hardware(8, 8), workload={
        "batch_size": 1, "prompt_tokens": 16, "output_tokens": 200},
        simulation={"fidelity": "pe"})
    plan = make_plan(dep, 1)
    att = next(s for s in plan.stages if s.part == "attention")
    kn = P.Kernels.of(dep)
    contexts = 17 + np.arange(199)
    simulated: list[int] = []
    simulate_stage = stage_programs.simulate_stage

    def counting(kn, content, rows, cols, context, tokens):
        simulated.append(context)
        return simulate_stage(kn, content, rows, cols, context, tokens)
    monkeypatch.setattr(stage_programs, "simulate_stage", counting)
    dec, _ = P.pe_stage_costs(kn, att, contexts, np.array([16]), np.array([16]))
    # the decode steps at MAX_SAMPLES contexts (the first and last among them), plus
    # the one prefill chunk
    decode_runs = simulated[:-1]
    assert len(decode_runs) == P.MAX_SAMPLES and len(simulated) == P.MAX_SAMPLES + 1
    assert min(decode_runs) == contexts[0] and max(decode_runs) == contexts[-1]
    totals = np.asarray(dec.total)
    assert totals.shape == (199,) and np.all(np.diff(totals) >= -1e-9)
    direct = P.stage(kn, att.content, 8, 8, int(contexts[100])).pe_cycles
    assert totals[100] == pytest.approx(direct, rel=0.02)
    assert math.isfinite(totals.sum())


def test_a_deployment_region_past_the_pe_limit_is_one_line(tmp_path, capsys):
    """A whole deployment at the PE level runs each region several times: 96 x 96 PEs of
    sequential layers ran for a minute and 1.2 GB; its regions are held to 64 x 64."""
    from wsesim.sim.limits import MAX_REGION_PES
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(deployment(
        hardware=tiny_hardware(rows=96, cols=96), mapping={"strategy": "sequential"},
        simulation={"fidelity": "pe"}).model_dump(mode="json")))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: simulation.fidelity: ")
    assert f"{MAX_REGION_PES:,}" in err[0]


def test_an_extrapolated_meshgemm_says_so_and_a_short_one_does_not():
    """Both MeshGEMM callers (a kernel case, a prefill stage) simulate every step up to
    MESH_ROUNDS and say when the rest is extrapolated."""
    hw = load_hardware("wse3")
    said = "of the 14 MeshGEMM steps simulated; the rest extrapolated"
    long = P.kernel_op(KernelSpec(hardware=hw, fidelity="pe", op="gemm", grid=[14, 14],
                                  m=140, k=140, n=140))
    short = P.kernel_op(KernelSpec(hardware=hw, fidelity="pe", op="gemm", grid=[8, 8],
                                   m=64, k=128, n=64))
    assert P.MESH_ROUNDS < 14 and any(said in n for n in long.notes)
    assert not any("extrapolated" in n for n in short.notes)
    kn, plan = P.kernels_for("wse3", 14, 14, hidden=256, context=64)
    mlp = next(s.content for s in plan.stages if s.content.part == "mlp")
    assert any(said in n for n in P.prefill(kn, mlp, 14, 14, 32).notes)
