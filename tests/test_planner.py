"""The grouped mapping and the search for the best plan (`mapping.strategy: auto`,
`wsesim plan`): against an exhaustive enumeration of the same space, never worse than
the classic strategies, the grouped mapping's extremes, time balance."""
from __future__ import annotations

import json

import pytest
from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsesim.cli import main
from wsesim.errors import KeyedError
from wsesim.fit import fullest_pe_bounds, plan_fits
from wsesim.mapping.plan import Choice, make_plan, max_wafers
from wsesim.memory import build_ledger
from wsesim.performance import simulate_performance
from wsesim.planner import fewest_wafers_any, search
from wsesim.planner.policy import score
from wsesim.perf.model import build_model
from wsesim.planner.space import RATING_STEPS, PlanMaker, stages_per_wafer
from wsesim.run import fewest_wafers, simulate


def tight(sram: int, batch: int = 1, objective: str = "tokens_per_s_per_user",
          rows: int = 24, cols: int = 24, layers: int = 4, wafers: int | str = 1,
          output_tokens: int = 16):
    """A 4-layer model at 3.5 bits on a small grid whose SRAM makes the mappings trade
    memory (groups cut in two on big regions) against speed."""
    return deployment(model=tiny_model(num_hidden_layers=layers),
                      hardware=tiny_hardware(rows=rows, cols=cols, sram=sram, reserve=1000),
                      wafers=wafers, quantization={"weights": "w3.5-g128"},
                      workload={"batch_size": batch, "prompt_tokens": 16,
                                "output_tokens": output_tokens},
                      mapping={"strategy": "auto", "objective": objective})


def every_choice(most: int) -> list[Choice]:
    out = []
    for balance in ("bytes", "time"):
        out += [Choice("sequential", None, balance), Choice("pipeline", None, balance)]
        out += [Choice("grouped", k, balance) for k in range(2, most)]
    return out


def exhaustive(dep, wafers: int = 1):
    """The best plan that fits by the objective, every choice simulated."""
    maker = PlanMaker(dep, wafers)
    best = None
    for choice in every_choice(stages_per_wafer(maker.units[0], wafers)):
        plan = maker.build(choice).plan
        if not plan_fits(plan):
            continue
        perf = simulate_performance(plan, True)[0]
        value = score(dep, perf["tokens_per_s_per_user"], perf["tokens_per_s"])
        if best is None or value > best[0]:
            best = (value, choice)
    return best


@pytest.mark.parametrize("sram,batch,objective", [
    (7000, 1, "tokens_per_s_per_user"), (7500, 1, "tokens_per_s_per_user"),
    (8100, 1, "tokens_per_s_per_user"), (6500, 1, "tokens_per_s_per_user"),
    (9000, 8, "tokens_per_s"), (12000, 16, "tokens_per_s"), (20000, 32, "tokens_per_s")])
def test_the_search_finds_what_an_exhaustive_enumeration_finds(sram, batch, objective):
    """64 output tokens: the rating is a steady-state one (a full pipeline); with a
    handful of tokens the fill and drain of a deep pipeline dominate and the rating's
    order can be far from the simulation's (the finalists are simulated, the rest not)."""
    dep = tight(sram, batch, objective, output_tokens=64)
    found = search(dep, 1)
    best = exhaustive(dep)
    assert best is not None and found.best.fits
    assert score(dep, *found.best.rates()) == pytest.approx(best[0], rel=1e-9)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sram=st.integers(5500, 12000), batch=st.sampled_from([1, 4, 16]),
       objective=st.sampled_from(["tokens_per_s_per_user", "tokens_per_s"]),
       rows=st.integers(14, 30), cols=st.integers(14, 30))
def test_auto_is_never_worse_than_pipeline_or_sequential(sram, batch, objective, rows, cols):
    dep = tight(sram, batch, objective, rows, cols)
    auto = simulate(dep, find_min_wafers=False)
    for strategy in ("pipeline", "sequential"):
        fixed = simulate(dep.model_copy(update={"mapping": dep.mapping.model_copy(
            update={"strategy": strategy})}), find_min_wafers=False)
        if fixed.memory.fits:
            assert auto.memory.fits
            p, q = auto.performance, fixed.performance
            assert score(dep, p["tokens_per_s_per_user"], p["tokens_per_s"]) >= \
                score(dep, q["tokens_per_s_per_user"], q["tokens_per_s"]) * (1 - 1e-9)


@pytest.mark.parametrize("layers,wafers", [(4, 1), (6, 2)])
def test_the_grouped_mapping_at_its_extremes_is_sequential_and_pipeline(layers, wafers):
    dep = tight(49152, layers=layers, wafers=wafers)
    maker = PlanMaker(dep, wafers)
    most = stages_per_wafer(maker.units[0], wafers)
    for k, same in ((1, "sequential"), (most, "pipeline")):
        grouped = make_plan(dep, wafers, Choice("grouped", k))
        classic = make_plan(dep, wafers, Choice(same))
        assert [(s.name, s.region) for s in grouped.stages] == \
            [(s.name, s.region) for s in classic.stages]
        a, b = (simulate_performance(p, True)[0] for p in (grouped, classic))
        assert a["tokens_per_s_per_user"] == b["tokens_per_s_per_user"]
        assert build_ledger(grouped).fullest_pe().bytes == \
            build_ledger(classic).fullest_pe().bytes


def _grouped(k: int, balance: str):
    """Two layers on a 32 x 32 grid, grouped into ``k`` regions: attention and MLP
    stages of unequal decode times, so a cut by bytes can leave one region slow."""
    dep = tight(49152, layers=2, rows=32, cols=32)
    return dep.model_copy(update={"mapping": dep.mapping.model_copy(update={
        "strategy": "grouped", "regions_per_wafer": k, "balance": balance})})


def test_time_balance_makes_the_slowest_region_strictly_quicker_and_says_so():
    """Three regions: by bytes the slowest takes 14,167 cycles a token, re-cut by the
    stages' decode times about 7,400. The run reports ``balance: time`` and no note."""
    maker = PlanMaker(_grouped(3, "time"), 1)
    by_bytes = maker.build(Choice("grouped", 3, "bytes"))
    by_time = maker.build(Choice("grouped", 3, "time"))
    assert by_time.slowest_cycles < 0.6 * by_bytes.slowest_cycles
    assert by_time.plan.choice.balance == "time"
    assert [s.region for s in by_time.plan.stages] != \
        [s.region for s in by_bytes.plan.stages]
    result = simulate(_grouped(3, "time"), find_min_wafers=False)
    assert result.to_dict()["mapping"]["balance"] == "time"
    assert not any("balance: time" in n for n in result.notes)
    assert result.performance["closed_form"]["max_tokens_per_s"] > simulate(
        _grouped(3, "bytes"), find_min_wafers=False
    ).performance["closed_form"]["max_tokens_per_s"]


def test_a_grouped_time_balance_that_does_not_help_is_the_byte_plan_and_noted():
    """Two regions: no re-cut is quicker than the byte plan, which runs, reported as
    ``balance: bytes`` with the note saying why."""
    maker = PlanMaker(_grouped(2, "time"), 1)
    by_bytes = maker.build(Choice("grouped", 2, "bytes"))
    by_time = maker.build(Choice("grouped", 2, "time"))
    assert by_time.plan is by_bytes.plan and by_time.plan.choice.balance == "bytes"
    assert by_time.choice == by_time.plan.choice   # a candidate never says time for it
    result = simulate(_grouped(2, "time"), find_min_wafers=False)
    assert result.to_dict()["mapping"]["balance"] == "bytes"
    assert sum("balance: time: no re-cut" in n for n in result.notes) == 1


@settings(max_examples=15, deadline=None)
@given(k=st.integers(2, 10), layers=st.integers(2, 6), batch=st.sampled_from([1, 8]))
def test_a_time_balanced_plan_is_labelled_by_what_it_is(k, layers, batch):
    """``build`` with balance time keeps a re-cut only when its slowest element is
    strictly quicker (the plan then says ``time`` and its own timeline agrees); else it
    is the byte plan itself, saying ``bytes``."""
    dep = tight(49152, batch, layers=layers, rows=32, cols=32)
    maker = PlanMaker(dep, 1)
    k = min(k, stages_per_wafer(maker.units[0], 1) - 1)
    by_bytes = maker.build(Choice("grouped", k, "bytes"))
    by_time = maker.build(Choice("grouped", k, "time"))
    if by_time.plan.choice.balance == "time":
        fresh = build_model(by_time.plan, prefill=False, decode_samples=RATING_STEPS)
        assert fresh.slowest_element()[2] == by_time.slowest_cycles
        assert by_time.slowest_cycles < by_bytes.slowest_cycles
    else:
        assert by_time.plan is by_bytes.plan
    assert by_time.choice == by_time.plan.choice


def test_fewest_wafers_on_which_some_plan_fits_matches_a_brute_force():
    dep = tight(6200, layers=6, wafers="auto")
    brute = None
    for wafers in range(1, max_wafers(dep) + 1):
        maker = PlanMaker(dep, wafers)
        if any(plan_fits(maker.build(c).plan) for c in every_choice(
                stages_per_wafer(maker.units[0], wafers)) if c.balance == "bytes"):
            brute = wafers
            break
    assert brute is not None and brute > 1
    assert fewest_wafers_any(dep).wafers == brute
    assert fewest_wafers(dep) == brute
    result = simulate(dep)
    assert result.wafers == brute and result.memory.fits


def test_a_run_with_auto_says_what_it_chose_and_searched(tmp_path, capsys):
    dep = tight(7000)
    result = simulate(dep, find_min_wafers=False)
    m = result.to_dict()["mapping"]
    assert m["requested"] == "auto" and m["strategy"] in ("pipeline", "sequential",
                                                          "grouped")
    assert m["searched"] >= len(m["candidates"]) >= 1
    assert m["candidates"][0]["fits"] is True
    assert result.strategy == m["strategy"]
    best = m["candidates"][0]
    assert (m["regions_per_wafer"], m["balance"]) == (best["regions_per_wafer"],
                                                      best["balance"])


@pytest.mark.parametrize("mapping,k", [({"strategy": "pipeline"}, None),
                                       ({"strategy": "sequential"}, None),
                                       ({"strategy": "grouped", "regions_per_wafer": 3}, 3)])
def test_regions_per_wafer_is_the_mapping_parameter(mapping, k):
    """One meaning in every answer: the deployment's ``mapping.regions_per_wafer`` (a
    pipeline's region count was given here, and null in the search's candidates)."""
    dep = deployment(model=tiny_model(num_hidden_layers=4),
                     hardware=tiny_hardware(rows=32, cols=32), mapping=mapping)
    m = simulate(dep, with_performance=False, find_min_wafers=False).to_dict()["mapping"]
    assert m["regions_per_wafer"] == k


def test_plan_command(tmp_path, capsys):
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(tight(6200, layers=6).model_dump(mode="json")))
    chart = tmp_path / "plan.png"
    assert main(["plan", str(path), "--wafers", "1-3", "--format", "json",
                 "--plot", str(chart)]) == 0
    rows = json.loads(capsys.readouterr().out)["plans"]
    assert [r["wafers"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"wafers", "fits", "strategy", "tokens_per_s_per_user", "tokens_per_s",
                "max_pe_bytes"} <= set(r)
    assert chart.stat().st_size > 0


@pytest.mark.parametrize("wafers,words", [("0-3", "1 <= A <= B"), ("3-1", "1 <= A <= B"),
                                          ("x", "expected a range"),
                                          ("1-500", "more than the")])
def test_plan_command_bad_range_is_one_line(tmp_path, capsys, wafers, words):
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(tight(6200).model_dump(mode="json")))
    assert main(["plan", str(path), "--wafers", wafers]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "--wafers" in err[0]


@pytest.mark.parametrize("mapping,key", [
    ({"strategy": "grouped"}, "mapping.regions_per_wafer"),
    ({"strategy": "pipeline", "regions_per_wafer": 3}, "mapping.regions_per_wafer"),
    ({"strategy": "pipeline", "min_tokens_per_s_per_user": 10},
     "mapping.min_tokens_per_s_per_user"),
    ({"strategy": "auto", "objective": "speed"}, "mapping.objective"),
])
def test_bad_mapping_keys_are_one_line(tmp_path, capsys, mapping, key):
    data = tight(7000).model_dump(mode="json")
    data["mapping"] = mapping
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(data))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: {key}: ")


def test_a_floor_on_the_rate_per_user_is_respected():
    """A plan below the floor scores nothing; a reachable floor keeps a plan that meets
    it, an unreachable one is said. (At a fixed batch every sequence decodes at once, so
    the plan of most tokens/s is nearly always also the one of most per user: the floor
    is a guard, and serving studies are where rates and users trade.)"""
    dep = tight(9000, batch=16, objective="tokens_per_s")
    floored = dep.model_copy(update={"mapping": dep.mapping.model_copy(
        update={"min_tokens_per_s_per_user": 100.0})})
    assert score(floored, 99.0, 5000.0) == 0.0 and score(floored, 101.0, 5000.0) == 5000.0
    free = search(dep, 1)
    quickest = max(c.rates()[0] for c in free.ranked if c.fits)

    def with_floor(floor: float):
        return search(dep.model_copy(update={"mapping": dep.mapping.model_copy(
            update={"min_tokens_per_s_per_user": floor})}), 1)

    held = with_floor(quickest * 0.99)
    assert held.best.fits and held.best.rates()[0] >= quickest * 0.99
    assert not held.notes
    unreachable = with_floor(quickest * 100)
    assert any("reaches" in n for n in unreachable.notes)


def test_a_sweep_takes_strategy_auto_at_every_point(tmp_path):
    """Rows name the concrete plan each point chose, and the fewest wafers are those on
    which some plan fits."""
    from wsesim.sweeps import run_sweep
    base = tight(6200, layers=6).model_dump(mode="json")
    outcome = run_sweep({"name": "auto", "base": base,
                         "grid": {"wafers": [1, 2], "workload.batch_size": [1, 2]}},
                        tmp_path / "out", workers=1)
    rows = outcome.rows
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert all(r["strategy"] in ("pipeline", "sequential", "grouped") for r in rows)
    brute = simulate(tight(6200, layers=6, wafers="auto")).wafers
    assert {r["min_wafers"] for r in rows if r["workload.batch_size"] == 1} == {brute}


def test_each_stage_of_a_grouped_plan_gets_its_own_regions_busy_fraction():
    """Regions holding several stages: each stage is listed once, with its region's
    busy fraction (every region's fraction went to every stage of the wafer)."""
    dep = tight(49152, 4, layers=4, rows=32, cols=32)
    plan = make_plan(dep, 1, Choice("grouped", 3))
    perf, _, run = simulate_performance(plan, True)
    busy = {b["stage"]: b["busy"] for b in perf["stage_busy"]}
    assert len(perf["stage_busy"]) == len(busy) == len(plan.stages)
    regions = {}
    for s in plan.stages:
        regions.setdefault(s.region, []).append(s.index)
    fractions = [f for slot, f in run.busy_fraction() if slot.stages]
    assert len(regions) == len(fractions) == 3
    for indices, fraction in zip(regions.values(), fractions):
        assert [busy[i] for i in indices] == [fraction] * len(indices)


def _classic(balance: str, layers: int = 7, wafers: int | str = 3, batch: int = 32):
    return deployment(model=tiny_model(num_hidden_layers=layers, vocab_size=8000),
                      hardware=tiny_hardware(rows=32, cols=32), wafers=wafers,
                      workload={"batch_size": batch, "prompt_tokens": 16,
                                "output_tokens": 16},
                      mapping={"strategy": "pipeline", "balance": balance})


def test_a_time_balanced_pipeline_is_cut_by_time():
    """``balance: time`` re-cuts a pipeline's layer ranges across wafers by the stages'
    decode times (the big vocabulary weighs on bytes, not on time), and says so: its
    slowest element is quicker, so a full pipeline (32 sequences) runs faster."""
    runs = {b: simulate(_classic(b), find_min_wafers=False) for b in ("bytes", "time")}
    by_bytes, by_time = runs["bytes"], runs["time"]
    assert [w.layers for w in by_time.plan.wafers] != [w.layers for w in by_bytes.plan.wafers]
    assert by_time.to_dict()["mapping"]["balance"] == "time"
    assert by_bytes.to_dict()["mapping"]["balance"] == "bytes"
    assert by_time.performance["tokens_per_s"] > by_bytes.performance["tokens_per_s"]
    assert by_time.performance["closed_form"]["max_tokens_per_s"] > \
        by_bytes.performance["closed_form"]["max_tokens_per_s"]


def test_a_time_balance_that_does_not_help_runs_and_reports_the_byte_plan():
    result = simulate(_classic("time", layers=6, wafers=2, batch=8), find_min_wafers=False)
    assert result.to_dict()["mapping"]["balance"] == "bytes"
    assert any("balance: time" in n for n in result.notes)


FORMATS = ["fp16", "int8", "int8-g128", "int4", "int4-g128", "w3.5-g128", "w3.5-byte",
           "w3.5-dense"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=st.integers(1, 4), rows=st.integers(6, 30), cols=st.integers(6, 30),
       hidden=st.sampled_from([128, 256, 384]), batch=st.integers(1, 5),
       prompt=st.integers(1, 70), weights=st.sampled_from(FORMATS),
       kv=st.sampled_from(["fp16", "int8", "int4"]),
       embeddings=st.sampled_from(["fp16", "bf16", "int8"]),
       wafers=st.integers(1, 3), pick=st.integers(0, 1000),
       balance=st.sampled_from(["bytes", "time"]))
def test_the_fit_bounds_bracket_the_exact_fullest_pe(layers, rows, cols, hidden, batch,
                                                     prompt, weights, kv, embeddings,
                                                     wafers, pick, balance):
    """What the planner settles fits with (fit.fullest_pe_bounds: the densest region's
    mean of stored bytes below, every block's largest above) brackets the per-PE
    ledger's fullest PE, on any plan of any small deployment."""
    dep = deployment(
        model=tiny_model(num_hidden_layers=layers, hidden_size=hidden,
                         intermediate_size=2 * hidden + 128, vocab_size=777),
        hardware=tiny_hardware(rows=rows, cols=cols), wafers=wafers,
        quantization={"weights": weights, "kv_cache": kv, "embeddings": embeddings},
        workload={"batch_size": batch, "prompt_tokens": prompt, "output_tokens": 3},
        mapping={"strategy": "auto"})
    wafers = min(wafers, max_wafers(dep))
    try:
        maker = PlanMaker(dep, wafers)
        options = every_choice(stages_per_wafer(maker.units[0], wafers))
        choice = [c for c in options if c.balance == balance][pick % (len(options) // 2)]
        plan = maker.build(choice).plan
    except (ValueError, KeyedError):    # more regions than this grid can lay out
        return
    low, high = fullest_pe_bounds(plan)
    exact = build_ledger(plan).fullest_pe().bytes
    assert low <= exact <= high


def test_the_search_function_is_not_shadowing_a_module_of_the_same_name():
    """``wsesim.planner.search`` is the function, and no submodule of that name hides
    behind it (``import wsesim.planner.search as m`` used to give the function)."""
    import importlib.util

    import wsesim.planner
    import wsesim.planner.policy
    assert importlib.util.find_spec("wsesim.planner.search") is None
    assert wsesim.planner.search is wsesim.planner.policy.search is search
    assert callable(wsesim.planner.search)


def test_a_choice_in_words_says_when_it_is_balanced_by_time():
    """wsesim plan's table printed a time-balanced plan as if cut by bytes (only the
    run's report added the balance, in two wordings)."""
    assert Choice("grouped", 4).describe() == "grouped, 4 regions per wafer"
    assert Choice("grouped", 4, "time").describe() == \
        "grouped, 4 regions per wafer, balanced by time"
    assert Choice("pipeline", None, "time").describe() == "pipeline, balanced by time"
    assert Choice("sequential").describe() == "sequential"
