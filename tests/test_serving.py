"""Serving many users: the simulation against what is known exactly (a lone request is
`wsesim run`; a single server is an M/D/1 queue; Little's law; the ledger's bytes)."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import deployment, tiny_hardware, tiny_model
from serving_helpers import POWER_W, study, tiny

from wsesim.memory import build_ledger
from wsesim.perf.model import build_model
from wsesim.run import simulate
from wsesim.serving import serve
from wsesim.serving.capacity import TOLERANCE, find_capacity
from wsesim.serving.costs import BatchCosts
from wsesim.serving.metrics import per_request
from wsesim.sim.tile import Pipeline
from wsesim.specs.deployment import simulation_size

FAST = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("mapping", [{"strategy": "sequential"}, {"strategy": "pipeline"},
                                     {"strategy": "grouped", "regions_per_wafer": 1},
                                     {"strategy": "grouped", "regions_per_wafer": 2}])
def test_serving_the_run_and_its_budget_cut_a_prompt_alike(mapping):
    """One rule for prompt chunks: the whole prompt when every wafer is one region."""
    dep = deployment(hardware=tiny_hardware(32, 32), mapping=mapping,
                     workload={"batch_size": 1, "prompt_tokens": 300, "output_tokens": 4})
    s = study(dep, requests=1)
    chunks = len(build_model(s.plan).chunk_tokens)
    assert chunks == simulation_size(dep)[1] == math.ceil(300 / (s.chunk_tokens or 300))
    one_region = mapping["strategy"] == "sequential" or mapping.get("regions_per_wafer") == 1
    assert chunks == (1 if one_region else 3)


# ---- one request is `wsesim run` at batch 1 --------------------------------------------

@FAST
@given(strategy=st.sampled_from(["pipeline", "sequential", "grouped"]),
       wafers=st.integers(1, 2), prompt=st.integers(1, 400), output=st.integers(1, 40),
       chunk=st.sampled_from([None, 16, 100]))
def test_one_request_reproduces_wsesim_run(strategy, wafers, prompt, output, chunk):
    over = {} if chunk is None else {"simulation": {"prefill_chunk_tokens": chunk}}
    dep = tiny(strategy, wafers, prompt, output, **over)
    run = simulate(dep, find_min_wafers=False).performance
    s = serve(study(dep, requests=1)).summary
    assert s["completed"] == 1
    assert s["ttft_s"]["mean"] == pytest.approx(run["ttft_s"], rel=1e-9)
    if output > 1:
        assert s["tpot_s"]["mean"] == pytest.approx(run["time_per_output_token_s"],
                                                    rel=1e-9)
    else:
        assert s["tpot_s"]["mean"] is None   # no second token, no TPOT (as vLLM)


def test_one_request_reproduces_wsesim_run_on_a_shipped_model():
    from wsesim.specs import deployment_from_mapping
    dep = deployment_from_mapping({
        "model": "llama-3.1-8b", "hardware": "wse3", "wafers": 1,
        "quantization": "int4-g128", "mapping": {"strategy": "pipeline"},
        "workload": {"batch_size": 1, "prompt_tokens": 300, "output_tokens": 8}})
    run = simulate(dep, find_min_wafers=False).performance
    s = serve(study(dep, requests=1)).summary
    assert s["ttft_s"]["mean"] == pytest.approx(run["ttft_s"], rel=1e-9)
    assert s["tpot_s"]["mean"] == pytest.approx(run["time_per_output_token_s"], rel=1e-9)


# ---- stage batching --------------------------------------------------------------------

@pytest.mark.parametrize("strategy,wafers", [("pipeline", 1), ("pipeline", 2),
                                             ("sequential", 2), ("grouped", 1)])
def test_stage_batching_at_one_token_is_the_runs_cost(strategy, wafers):
    dep = tiny(strategy, wafers, prompt=300, output=40)
    result = simulate(dep, find_min_wafers=False)
    model = result.perf_model
    pipe = Pipeline(model)
    costs = BatchCosts(result.plan, 340)
    assert [s.name for s in costs.slots] == [s.name for s in pipe.slots]
    for step, context in enumerate(model.decode_contexts):
        occ, delay = costs.decode(np.array([context]))
        np.testing.assert_allclose(occ, pipe.service["decode"][step], rtol=1e-12)
        np.testing.assert_allclose(delay, pipe.delay["decode"][step], rtol=1e-12,
                                   atol=1e-9)
    end = 0
    for k, tokens in enumerate(model.chunk_tokens):
        end += int(tokens)
        occ, delay = costs.chunk(int(tokens), end, end == 300)
        np.testing.assert_allclose(occ, pipe.service["prefill"][k], rtol=1e-12)
        np.testing.assert_allclose(delay, pipe.delay["prefill"][k], rtol=1e-12, atol=1e-9)


@pytest.fixture(scope="module")
def batch_costs():
    out = {}
    for strategy, wafers in (("pipeline", 2), ("sequential", 1)):
        dep = tiny(strategy, wafers, prompt=300, output=40)
        out[strategy] = BatchCosts(simulate(dep, find_min_wafers=False).plan, 4000)
    return out


@FAST
@given(strategy=st.sampled_from(["pipeline", "sequential"]),
       contexts=st.lists(st.integers(1, 4000), min_size=2, max_size=40))
def test_a_batch_costs_no_more_than_its_tokens_one_by_one(batch_costs, strategy,
                                                           contexts):
    """Weights read once: b tokens at a stage cost at most b tokens taken one at a
    time, and at least the slowest of them alone; what carries them only grows."""
    costs = batch_costs[strategy]
    ctx = np.array(contexts)
    occ, delay = costs.decode(ctx)
    alone = np.array([costs.decode(ctx[i:i + 1])[0] for i in range(len(ctx))])
    assert np.all(occ <= alone.sum(axis=0) * (1 + 1e-12))
    assert np.all(occ >= alone.max(axis=0) * (1 - 1e-12))
    assert np.all(delay >= costs.decode(ctx[:1])[1] - 1e-9)


def test_a_batch_of_b_tokens_at_an_mlp_is_the_closed_form_at_b_tokens(batch_costs):
    from wsesim.perf.stages import stage_cost
    costs = batch_costs["pipeline"]
    k, slot = next((k, s) for k, s in enumerate(costs.slots)
                   if s.kind == "stages" and s.stages[0].part == "mlp")
    stage = slot.stages[0]
    for b in (1, 2, 7, 16):
        occ, _ = costs.decode(np.full(b, 100))
        cost = stage_cost(costs._kn, stage.content, stage.region.rows,
                          stage.region.cols, 0, b)
        assert occ[k] == pytest.approx(float(cost.total), rel=1e-12)


# ---- a single server: M/D/1 --------------------------------------------------------------

@pytest.fixture(scope="module")
def single_server():
    """One element (a whole-grid region), one prompt chunk per request and one output
    token: each request is one fixed service at one FIFO server."""
    dep = tiny("sequential", 1, prompt=64, output=1, rows=16, cols=16)
    s = study(dep, requests=1)
    occ, delay = s.costs.chunk(64, 64, True)
    assert np.count_nonzero(occ) == 1 and not delay.any()
    return dep, float(occ.sum())


@FAST
@given(seed=st.integers(0, 2**32 - 1), rho=st.floats(0.05, 1.5))
def test_a_single_stage_queue_follows_lindleys_recursion(single_server, seed, rho):
    dep, service = single_server
    hz = dep.hardware.clock_hz
    served = serve(study(dep, rate_per_s=rho * hz / service, requests=300, seed=seed))
    run = served.run
    wait, expected = 0.0, []
    for n, t in enumerate(run.arrival):
        if n:
            wait = max(0.0, wait + service - (t - run.arrival[n - 1]))
        expected.append(wait)
    waited = run.first_token - run.arrival - service
    np.testing.assert_allclose(waited, expected, rtol=1e-9, atol=1e-6 * service)


def test_single_stage_poisson_matches_md1_pollaczek_khinchine(single_server):
    dep, service = single_server
    hz = dep.hardware.clock_hz
    rho = 0.5
    served = serve(study(dep, rate_per_s=rho * hz / service, requests=100_000, seed=7))
    waited = float(np.mean(served.run.first_token - served.run.arrival)) - service
    pk = rho * service / (2 * (1 - rho))    # M/D/1: W_q = rho S / (2 (1 - rho))
    assert waited == pytest.approx(pk, rel=0.03)


# ---- Little's law, monotone tails, seeds --------------------------------------------------

@FAST
@given(seed=st.integers(0, 1000), load=st.floats(0.2, 3.0),
       arrivals=st.sampled_from(["poisson", "constant", "gamma"]))
def test_littles_law(seed, load, arrivals):
    dep = tiny("pipeline", 2, prompt=150, output=12)
    unloaded = serve(study(dep, requests=1)).summary["e2e_s"]["mean"]
    extra = {"cv": 2.0} if arrivals == "gamma" else {}
    served = serve(study(dep, rate_per_s=load * 4 / unloaded, requests=150, seed=seed,
                         arrivals=arrivals, **extra))
    s = served.summary
    req = per_request(served.run, dep.hardware.clock_hz)
    throughput = s["request_throughput_per_s"]
    in_sram = float(np.mean(req["e2e_s"] - req["queue_s"]))
    assert s["mean_concurrent"] == pytest.approx(throughput * in_sram, rel=1e-6)
    assert s["mean_concurrent"] + s["mean_waiting"] == pytest.approx(
        throughput * float(np.mean(req["e2e_s"])), rel=1e-6)


@pytest.mark.parametrize("seed", [3, 11])
def test_p99_latency_does_not_fall_as_the_rate_rises(seed):
    """The latency a user waits for: to the first token, to the last, to admission.
    (The p99 time per output token may dip near saturation: full decode micro-batches
    share the prompt chunks between more tokens.)"""
    dep = tiny("pipeline", 2, prompt=300, output=20)
    unloaded = serve(study(dep, requests=1)).summary["e2e_s"]["mean"]
    s = study(dep, requests=300, seed=seed)
    runs = [serve(s, load / unloaded).summary for load in (0.1, 0.5, 1, 2, 3, 4, 8)]
    for key in ("ttft_s", "e2e_s", "queue_s"):
        p99 = [r[key]["p99"] for r in runs]
        assert all(b >= a * (1 - 1e-9) for a, b in zip(p99, p99[1:])), (key, p99)


def test_the_same_seed_gives_the_same_answer_another_seed_another():
    dep = tiny("pipeline", 1, prompt=100, output=10)
    one = serve(study(dep, rate_per_s=3000.0, requests=200, seed=5)).summary
    again = serve(study(dep, rate_per_s=3000.0, requests=200, seed=5)).summary
    other = serve(study(dep, rate_per_s=3000.0, requests=200, seed=6)).summary
    assert one == again
    assert one["ttft_s"] != other["ttft_s"] and one["e2e_s"] != other["e2e_s"]


# ---- the KV cache: from the ledger, never exceeded ------------------------------------------

@pytest.mark.parametrize("prompt,output", [(200, 56), (1000, 24)])
def test_kv_capacity_in_requests_is_the_largest_batch_the_ledger_fits(prompt, output):
    """Sequential on one wafer (the region does not depend on the workload): with
    buffers for one token, the requests the KV slots admit at once are exactly the
    largest batch of such sequences whose ledger fits."""
    dep = tiny("sequential", 1, prompt=prompt, output=output, rows=16, cols=16,
               sram=24_000)
    s = study(dep, requests=1, max_stage_batch=1)
    need = s.kv.need(np.array([prompt + output]))[0]
    fits = int(np.min(s.kv.slots // need))
    assert fits >= 1

    def ledger_fits(batch: int) -> bool:
        d = tiny("sequential", 1, prompt=prompt, output=output, rows=16, cols=16,
                 sram=24_000)
        d = d.model_copy(update={"workload": d.workload.model_copy(
            update={"batch_size": batch})})
        return build_ledger(simulate(d, with_performance=False,
                                     find_min_wafers=False).plan).fits
    assert ledger_fits(fits) and not ledger_fits(fits + 1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), load=st.floats(0.5, 20.0), batch=st.integers(1, 8),
       mean_prompt=st.integers(20, 600))
def test_admissions_never_exceed_the_kv_capacity(seed, load, batch, mean_prompt):
    dep = tiny("pipeline", 1, prompt=100, output=20, sram=32_000)
    s = study(dep, rate_per_s=load * 2000, requests=120, seed=seed, max_stage_batch=batch,
              prompt_tokens={"mean": mean_prompt, "sigma": 0.8, "max": 2000},
              output_tokens={"mean": 20, "sigma": 0.5})
    served = serve(s)
    run = served.run
    assert np.all(run.max_used_slots <= s.kv.slots)
    assert served.summary["kv_occupancy"]["max"] <= 1.0
    # every admitted request's KV was in SRAM at once only within the slots
    held = run.prompt_tokens + run.output_tokens
    need = s.kv.need(held)
    admitted, finished = run.admitted, run.finished
    for t in admitted[np.isfinite(admitted)]:
        inside = (admitted <= t) & ~(finished <= t)
        assert np.all(need[inside].sum(axis=0) <= s.kv.slots)
    too_long = np.any(need > s.kv.slots, axis=1)
    assert np.array_equal(run.rejected, too_long)
    assert served.summary["completed"] == int((~too_long).sum())


# ---- metrics by hand ----------------------------------------------------------------------

def test_metrics_by_hand_when_requests_never_meet():
    dep = tiny("pipeline", 2, prompt=150, output=12)
    alone = serve(study(dep, requests=1)).summary
    gap_s = 10 * alone["e2e_s"]["mean"]
    served = serve(study(dep, rate_per_s=1 / gap_s, requests=20, arrivals="constant",
                         slo_ttft_s=alone["ttft_s"]["mean"] * 1.001,
                         slo_tpot_s=alone["tpot_s"]["mean"] * 0.999,
                         price_per_system_hour=50.0))
    s = served.summary
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert s[key]["p99"] == pytest.approx(alone[key]["mean"], rel=1e-9)
    assert len(served.run.itl) == 20 * 11
    assert s["itl_s"]["mean"] == pytest.approx(s["tpot_s"]["mean"], rel=1e-9)
    duration = 19 * gap_s + alone["e2e_s"]["mean"]
    assert s["duration_s"] == pytest.approx(duration, rel=1e-9)
    assert s["throughput_tokens_per_s"] == pytest.approx(20 * 12 / duration, rel=1e-9)
    assert s["goodput_requests_per_s"] == 0 and s["slo_attainment"] == 0  # TPOT missed
    assert s["energy_j_per_output_token"] == pytest.approx(
        POWER_W * 2 * duration / (20 * 12), rel=1e-9)
    assert s["cost_per_million_output_tokens"] == pytest.approx(
        50.0 * 2 * duration / 3600 / (20 * 12) * 1e6, rel=1e-9)
    assert s["max_concurrent"] == 1 and s["mean_stage_batch"] == 1


def test_goodput_counts_requests_within_both_slos():
    dep = tiny("pipeline", 1, prompt=100, output=10)
    served = serve(study(dep, rate_per_s=8000.0, requests=200, seed=1))
    req = per_request(served.run, dep.hardware.clock_hz)
    ttft_cut = float(np.median(req["ttft_s"]))
    tpot_cut = float(np.median(req["tpot_s"]))
    s = serve(study(dep, rate_per_s=8000.0, requests=200, seed=1, slo_ttft_s=ttft_cut,
                    slo_tpot_s=tpot_cut)).summary
    good = int(np.sum((req["ttft_s"] <= ttft_cut) & (req["tpot_s"] <= tpot_cut)))
    assert s["slo_attainment"] == pytest.approx(good / 200)
    assert s["goodput_requests_per_s"] == pytest.approx(good / s["duration_s"])


# ---- capacity ---------------------------------------------------------------------------

def test_capacity_is_the_edge_between_meeting_and_missing_the_slos():
    dep = tiny("pipeline", 2, prompt=150, output=12)
    alone = serve(study(dep, requests=1)).summary
    s = study(dep, requests=120, seed=2, slo_tpot_s=alone["tpot_s"]["mean"] * 3)
    cap = find_capacity(s)
    assert cap.requests_per_s is not None and cap.requests_per_s > 0
    assert cap.at_capacity.summary["tpot_s"]["p99"] <= s.spec.slo_tpot_s
    missed = [p["rate_per_s"] for p in cap.points if not p["meets"]]
    above = min(r for r in missed if r > cap.requests_per_s)
    assert above <= cap.requests_per_s * (1 + TOLERANCE) * (1 + 1e-9)
    assert all(p["meets"] == (p["tpot_s"]["p99"] <= s.spec.slo_tpot_s)
               for p in cap.points)
    assert cap.requests_per_s <= cap.bound_per_s


def test_a_short_run_above_what_can_be_sustained_does_not_count():
    """Ten requests clear any backlog within the 5 s admission bound: without the
    sustainable bound every rate would 'meet' a loose SLO."""
    dep = tiny("pipeline", 1, prompt=100, output=20)
    cap = find_capacity(study(dep, requests=10, slo_tpot_s=1.0))
    assert cap.requests_per_s == pytest.approx(cap.bound_per_s)
    assert len(cap.points) == 1 and cap.notes


def test_capacity_needs_an_slo():
    from wsesim.errors import KeyedError
    with pytest.raises(KeyedError, match="slo"):
        find_capacity(study(tiny(), requests=10))


def test_throughput_never_beats_the_busiest_element():
    dep = tiny("pipeline", 2, prompt=150, output=12)
    served = serve(study(dep, rate_per_s=1e6, requests=200, max_stage_batch=4))
    assert max(e["busy"] for e in served.summary["element_busy"]) <= 1 + 1e-9
    assert not math.isnan(served.summary["duration_s"])


def test_busy_fractions_are_of_the_summarys_duration():
    """Each element's busy fraction times the run's duration (first arrival to last
    token, as the throughputs use) is its busy cycles."""
    s = study(tiny("pipeline", 2, prompt=150, output=12), requests=60, rate_per_s=3e4)
    served = serve(s)
    cycles = served.summary["duration_s"] * s.clock_hz
    busy = [e["busy"] * cycles for e in served.summary["element_busy"]]
    assert busy == pytest.approx(served.run.busy.tolist(), rel=1e-9)
    assert served.run.arrival[0] == 0       # a generated stream starts at once
    assert cycles == pytest.approx(np.nanmax(served.run.finished), rel=1e-12)


def test_what_the_costs_keep_stays_within_its_bound(monkeypatch):
    """Prompt chunks of 250 lengths: what BatchCosts keeps of them (the chunks and every
    piece they are made of), measured, stays within MAX_KEPT_BYTES (unbounded it keeps
    about 1.4 MB of them, against a bound of 16 KB here)."""
    import wsesim.serving.costs as module
    limit = 1 << 14
    monkeypatch.setattr(module, "MAX_KEPT_BYTES", limit, raising=False)
    costs = study(tiny("pipeline", 2, prompt=64, output=4), requests=1).costs
    tracemalloc.start()
    try:
        for tokens in range(1, 251):
            for last in (False, True):
                costs.chunk(tokens, tokens + 7, last)
        mine = tracemalloc.Filter(True, module.__file__)
        held = sum(s.size for s in
                   tracemalloc.take_snapshot().filter_traces([mine]).statistics("filename"))
    finally:
        tracemalloc.stop()
    assert 0 < held <= limit


def test_the_models_sliding_window_bounds_a_requests_kv_as_the_ledger_does():
    """A request holds what the run's ledger provisions per sequence
    (``Deployment.kv_tokens``: the model's window when shorter), so a windowed model
    serves more requests at once; ``kv_window_tokens`` only ever shrinks the window."""
    windowed = tiny("pipeline", 1, prompt=512, output=16,
                    model=tiny_model(sliding_window=128))
    full = tiny("pipeline", 1, prompt=512, output=16)
    assert (windowed.kv_tokens, full.kv_tokens) == (128, 528)
    assert study(windowed, kv_window_tokens=256).window == 128
    concurrent = {}
    for dep in (windowed, full):
        s = study(dep, rate_per_s=1e6, requests=200)
        need = s.kv.need(np.array([dep.kv_tokens]))[0]
        fit = int(np.min(s.kv.slots // need))
        served = serve(s)
        assert served.summary["max_concurrent"] == fit
        np.testing.assert_array_equal(served.run.max_used_slots, fit * need)
        concurrent[dep.kv_tokens] = fit
    assert concurrent[128] > 2 * concurrent[528]


def test_a_sliding_window_bounds_a_requests_kv_and_its_attention():
    dep = tiny("pipeline", 1, prompt=1000, output=40)
    full = study(dep, requests=1)
    windowed = study(dep, requests=1, kv_window_tokens=256)
    np.testing.assert_array_equal(windowed.costs.decode(np.array([1020]))[0],
                                  full.costs.decode(np.array([256]))[0])
    assert np.all(windowed.costs.decode(np.array([1020]))[0]
                  <= full.costs.decode(np.array([1020]))[0])
    run = serve(windowed).run
    np.testing.assert_array_equal(run.max_used_slots, windowed.kv.need(np.array([256]))[0])
    assert np.all(serve(full).run.max_used_slots == full.kv.need(np.array([1040]))[0])
