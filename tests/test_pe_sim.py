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
from wsesim.perf.fabric import Fabric
from wsesim.perf.stages import attention_prefill_meshgemm
from wsesim.quant import preset
from wsesim.run import simulate
from wsesim.sim import pe as P
from wsesim.sim import stage_programs
from wsesim.sim.fabric_net import Net
from wsesim.sim.ops import (
    EAST,
    WEST,
    op_acc,
    op_acc_any,
    op_call,
    op_post,
    op_recv,
    op_send,
    op_work,
    route_xy,
)

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
    agree(P.broadcast(kn, rows, cols, elements))


@pytest.mark.parametrize("algorithm", ["chain", "tree", "two-level"])
@settings_sweep
@given(hw=st.sampled_from(["wse2", "wse3"]), n=st.integers(4, 64),
       elements=st.integers(1, 4096), groups=st.one_of(st.none(), st.integers(1, 16)),
       along=st.sampled_from(["row", "col"]))
def test_allreduce_agrees(kernels, algorithm, hw, n, elements, groups, along):
    kn, _ = kernels[hw]
    kn = replace(kn, algorithm=algorithm, groups=groups)
    rows, cols = (2, n) if along == "row" else (n, 2)
    agree(P.allreduce(kn, rows, cols, elements, along=along))


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
    pe_cost, _ = P.mesh_prefill(kn, att, 8, 8, 128, 512)
    assert float(pe_cost.total) == pytest.approx(float(last.total), rel=TOL)


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
    try:
        code = main(["fabric-check", *args])
    except SystemExit as exc:   # argparse's own errors exit from inside
        code = exc.code
    assert code == 2
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
