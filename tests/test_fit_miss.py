"""The fewest wafers and by how much the last count that failed missed: the search's
answer against a brute force over every count, with no count planned twice."""
from __future__ import annotations

import pytest
from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsesim.fit as fit
import wsesim.run as run
from wsesim.mapping.plan import make_plan, max_wafers
from wsesim.memory import build_ledger


@st.composite
def tight_deployments(draw):
    """Deployments that often need several wafers (small grids, little SRAM), some of
    which fit on none."""
    model = tiny_model(num_hidden_layers=draw(st.integers(1, 5)),
                       intermediate_size=draw(st.sampled_from([512, 1024])),
                       vocab_size=draw(st.integers(100, 2000)))
    hw = tiny_hardware(rows=draw(st.integers(6, 14)), cols=draw(st.integers(6, 14)),
                       sram=draw(st.sampled_from([12288, 24576, 32768, 49152])))
    return deployment(model=model, hardware=hw, wafers=1,
                      quantization={"weights": draw(st.sampled_from(
                          ["fp16", "int8-g128", "int4-g128", "w3.5-g128"]))},
                      mapping={"strategy": draw(st.sampled_from(["pipeline", "sequential"]))})


def fullest_by_brute_force(dep, wafers):
    """The fullest PE of a fresh plan of ``wafers``, or None if it cannot be planned."""
    try:
        return build_ledger(make_plan(dep, wafers)).fullest_pe()
    except Exception:
        return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tight_deployments())
def test_the_miss_is_the_fullest_pe_of_the_last_count_that_failed(dep):
    sram = dep.hardware.pe_sram_bytes
    search = fit.search_wafers(dep)
    miss = search.miss()
    if search.wafers == 1:
        assert miss is None
        return
    expected = search.wafers - 1 if search.wafers is not None else max_wafers(dep)
    assert miss is not None and miss.wafers == expected
    fp = fullest_by_brute_force(dep, expected)
    if fp is None:   # that count cannot be planned: a lower bound from the stored bytes
        assert not miss.exact and miss.fullest_pe is None and miss.over_bytes >= 1
        return
    assert miss.exact and miss.over_bytes == fp.bytes - sram > 0
    got = miss.fullest_pe
    assert (got.wafer, got.row, got.col, got.bytes) == (fp.wafer, fp.row, fp.col, fp.bytes)
    assert f"on {expected} wafer" in miss.summary and f"{fp.bytes - sram:,} B over" in \
        miss.summary


def test_no_count_is_planned_twice(monkeypatch):
    """The miss reuses the plans (and the requested count's ledger) of the search: at
    most one count more than the search tried is planned, and none twice."""
    planned: list[int] = []
    real = fit.requested_plan

    def counting(dep, wafers):
        planned.append(wafers)
        return real(dep, wafers)
    monkeypatch.setattr(fit, "requested_plan", counting)
    monkeypatch.setattr(run, "requested_plan", counting)
    # counts below the bound planned for the miss only, above it by the search; one
    # where nothing fits; the requested count below, at or above the fewest
    for grid, sram, wafers in ((12, 24576, 1), (10, 24576, 3), (10, 24576, "auto"),
                               (8, 49152, 5), (8, 32768, 2), (8, 8192, 1)):
        planned.clear()
        dep = deployment(model=tiny_model(num_hidden_layers=4),
                         hardware=tiny_hardware(grid, grid, sram=sram), wafers=wafers,
                         quantization="fp16", mapping={"strategy": "pipeline"})
        r = run.simulate(dep, with_performance=False)
        assert len(planned) == len(set(planned)), planned
        bound = fit.fewest_wafers_bound(dep)
        last = r.min_wafers or max_wafers(dep)
        assert set(planned) <= set(range(bound, last + 1)) | {r.wafers, bound - 1, last}
        d = r.min_wafers_detail
        if r.min_wafers == 1:
            assert d is None
        else:
            assert d is not None and d.exact and d.over_bytes > 0
            assert d.wafers == (r.min_wafers - 1 if r.min_wafers else max_wafers(dep))


def test_a_count_that_cannot_be_planned_gets_a_lower_bound(monkeypatch):
    """If the count below the fewest (one the search skipped: its stored bytes exceed
    its usable SRAM) cannot be laid out, the miss is the mean overflow over its PEs."""
    from wsesim.errors import KeyedError
    dep = deployment(model=tiny_model(num_hidden_layers=4),
                     hardware=tiny_hardware(10, 10, sram=32768), wafers="auto",
                     quantization="fp16", mapping={"strategy": "pipeline"})
    search = fit.search_wafers(dep)
    assert search.wafers == fit.fewest_wafers_bound(dep) == 3 and 2 not in search.plans
    real = fit.requested_plan

    def refuse_two(d, wafers):
        if wafers == 2:
            raise KeyedError("mapping.grid", "too small a grid")
        return real(d, wafers)
    monkeypatch.setattr(fit, "requested_plan", refuse_two)
    miss = search.miss()
    assert miss is not None and miss.wafers == 2 and not miss.exact
    assert miss.fullest_pe is None and "at least" in miss.summary
    stored = fit._stored_bytes(dep)
    pes = 2 * 100
    short = stored - pes * dep.hardware.usable_pe_bytes
    assert short > 0 and miss.over_bytes == -(-short // pes)
    # the bound is below the truth: the fullest PE of a real 2-wafer plan is further over
    fp = build_ledger(real(dep, 2)).fullest_pe()
    assert fp.bytes - dep.hardware.pe_sram_bytes >= miss.over_bytes


@pytest.mark.parametrize("path,wafers,min_wafers", [
    ("examples/llama-3.1-70b-w3.5-1x-wse3.yaml", 1, 2),
    ("examples/llama-3.1-8b-bf16-wse3.yaml", 1, 1),
])
def test_examples_say_how_far_the_count_below_missed(path, wafers, min_wafers):
    from wsesim.specs import load_deployment
    r = run.simulate(load_deployment(path), with_performance=False)
    assert (r.wafers, r.min_wafers) == (wafers, min_wafers)
    d = r.to_dict()["min_wafers_detail"]
    if min_wafers == 1:
        assert d is None
    else:
        # the 70B example on its one wafer: 176 B over (49,328 of 49,152 B)
        assert d["wafers"] == 1 and d["exact"] and d["over_bytes"] == \
            r.memory.max_pe_bytes - r.memory.pe_sram_bytes == 176
