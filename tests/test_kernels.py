"""Kernel measurements: each kernel's closed form by hand, kernel cases in validation/,
the joint calibration (it recovers constants that generated its cases) and the
leave-one-out errors that `wsesim validate` shows."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import tiny_hardware
from hypothesis import given, settings
from hypothesis import strategies as st

from wsesim.calibrate import _set_in_yaml, calibrate, constant_value
from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.perf.kernels import closed_form
from wsesim.specs import load_hardware
from wsesim.specs.hardware import HardwareProfile
from wsesim.specs.kernel import KernelSpec
from wsesim.validate import Case, CaseSpec, predict, with_constants

# tiny_hardware: hop 1, ramp 2, add 1, fp16 4 per cycle, issue 4, dependent latency 2,
# fabric call 200, library call 300, MeshGEMM step 100, 4-byte wavelets
HW = HardwareProfile.model_validate(tiny_hardware(rows=64, cols=64))


def spec(**kw) -> KernelSpec:
    return KernelSpec.model_validate({"hardware": HW, **kw})


def cycles(s: KernelSpec) -> float:
    return float(closed_form(s).total)


def test_gemv_two_level_by_hand():
    # 8 x 8 PEs, 64 x 32: 8 inputs x 4 outputs per PE: 8 instructions of 4 elements,
    # each 4 to issue + max(2, 4 / 4) = 6. Each column allreduces 4 values (2 wavelets)
    # over 8 PEs in 2 groups of 4 (roots 1 and 5): chains of 1 and 2 stages (stage: 1
    # hop, 2 ramps, 1 add = 6) meet at each root: max(12, 6 + 2) + 2 = 14; the roots
    # chain to root 1 (one stage over 4 hops: 4 + 5 = 9) + 2; a broadcast from PE 1 over
    # 6 hops (6 + 4) + 2; one fabric call
    local = 8 * (4 + 2)
    allreduce = 14 + 11 + 12 + 200
    assert cycles(spec(op="gemv", grid=[8, 8], m=64, n=32, algorithm="two-level",
                       groups=2)) == local + allreduce


def test_gemv_chain_by_hand():
    # 4 x 4 PEs, 24 x 24: 6 inputs x 6 outputs per PE (instructions of 6: 4 + max(2, 6/4));
    # the library's chain down each column: 3 stages of 6, 6 fp32 wavelets; a broadcast
    # back over 3 hops (3 + 4) and 6 wavelets; two library calls
    local = 6 * (4 + 2)
    allreduce = (3 * 6 + 6) + (3 + 4 + 6) + 2 * 300
    assert cycles(spec(op="gemv", grid=[4, 4], m=24, n=24, algorithm="chain")) == \
        local + allreduce


def test_gemm_by_hand():
    # 4 x 4 PEs, (8 x 8) @ (8 x 8): 4 Cannon steps of 2 x 2 x 2 tiles: 4 instructions of
    # 2 rows (4 + max(2, 0.5) = 6 each) = 24, overlapping a two-hop shift of 4 values (2
    # hops, 2 ramps, 2 wavelets = 8), then the step hand-off of 100; a skew of 2 shifts of
    # the left tile, each 8 + 100
    step = max(4 * 6, 8) + 100
    assert cycles(spec(op="gemm", grid=[4, 4], m=8, k=8, n=8)) == 4 * step + 2 * (8 + 100)


def test_allreduce_kernel_runs_along_rows():
    s = spec(op="allreduce", grid=[3, 9], elements=10, algorithm="two-level", groups=3)
    from wsesim.perf.fabric import Fabric
    assert cycles(s) == float(Fabric.of(HW).allreduce(9, 10, 2, "two-level", 3).total)


@settings(max_examples=30, deadline=None)
@given(p=st.integers(2, 64), tile=st.integers(1, 40))
def test_a_gemv_costs_more_with_a_bigger_block_on_the_same_grid(p, tile):
    small = cycles(spec(op="gemv", grid=[p, p], m=p * tile, n=p * tile))
    big = cycles(spec(op="gemv", grid=[p, p], m=p * (tile + 1), n=p * (tile + 1)))
    assert big > small


@pytest.mark.parametrize("kernel,key,words", [
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "n": 64}, "kernel.m",
     "required for op gemv"),
    ({"op": "gemm", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8}, "kernel.k",
     "required for op gemm"),
    ({"op": "gemv", "hardware": "wse3", "grid": [2000, 8], "m": 8, "n": 8},
     "kernel.grid", "larger than the wse3 grid"),
    ({"op": "gemv", "hardware": "wse3", "grid": [5000, 8], "m": 8, "n": 8},
     "kernel.grid.0", "at most 4,096 PEs (a bound of wsesim)"),
    # the bounds and types every spec has
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 1e300, "n": 8},
     "kernel.m", "exceeded maximum size"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 10**400},
     "kernel.n", "at most 1,048,576"),
    ({"op": "gemv", "hardware": "wse3", "grid": ["48", 8], "m": 8, "n": 8},
     "kernel.grid.0", "not the text '48'"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, True], "m": 8, "n": 8},
     "kernel.grid.1", "not a boolean"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": "4320", "n": 8},
     "kernel.m", "not the text '4320'"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": True, "n": 8},
     "kernel.m", "not a boolean"),
    # keys the op does not use
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8, "k": 8},
     "kernel.k", "does not apply to op gemv (it takes m, n)"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8, "elements": 8},
     "kernel.elements", "does not apply to op gemv"),
    ({"op": "allreduce", "hardware": "wse3", "grid": [8, 8], "elements": 8, "m": 8},
     "kernel.m", "does not apply to op allreduce (it takes elements)"),
    ({"op": "gemm", "hardware": "wse3", "grid": [8, 8], "m": 8, "k": 8, "n": 8,
      "algorithm": "chain"}, "kernel.algorithm", "does not apply to op gemm"),
    ({"op": "gemm", "hardware": "wse3", "grid": [8, 8], "m": 8, "k": 8, "n": 8,
      "groups": 2}, "kernel.groups", "does not apply to op gemm"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8,
      "algorithm": "chain", "groups": 2}, "kernel.groups",
     "only applies to algorithm: two-level, not chain"),
    # at most a group per PE of the line reduced: gemv's columns, allreduce's rows
    ({"op": "gemv", "hardware": "wse3", "grid": [48, 96], "m": 8, "n": 8,
      "groups": 100000}, "kernel.groups", "at most 4,096 groups"),
    ({"op": "gemv", "hardware": "wse3", "grid": [48, 96], "m": 8, "n": 8,
      "groups": 49}, "kernel.groups", "49 groups on a line of 48 PEs (the grid's rows)"),
    ({"op": "allreduce", "hardware": "wse3", "grid": [96, 48], "elements": 8,
      "groups": 49}, "kernel.groups", "49 groups on a line of 48 PEs (the grid's columns)"),
    ({"op": "gemv", "hardware": "wse3", "grid": [200, 200], "m": 8, "n": 8,
      "fidelity": "pe"}, "kernel.fidelity", "PE fidelity"),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8,
      "algorithm": "ring"}, "kernel.algorithm", ""),
    ({"op": "gemv", "hardware": "wse3", "grid": [8, 8], "m": 8, "n": 8, "extra": 1},
     "kernel.extra", "unknown key"),
])
def test_bad_kernel_case_is_one_located_line(tmp_path, capsys, kernel, key, words):
    case = tmp_path / "k.yaml"
    case.write_text(yaml.safe_dump({"name": "k", "source": "test", "metric": "cycles",
                                    "measured": 100, "kernel": kernel}))
    assert main(["validate", str(case)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {case}: {key}: "), err
    assert words in err[0]


def test_cycles_need_a_kernel_and_a_kernel_needs_cycles(tmp_path, capsys):
    case = tmp_path / "k.yaml"
    case.write_text(yaml.safe_dump({
        "name": "k", "source": "test", "metric": "layer_time_s", "measured": 1,
        "kernel": {"op": "allreduce", "hardware": "wse3", "grid": [2, 8], "elements": 4}}))
    assert main(["validate", str(case)]) == 2
    assert "metric cycles goes with a kernel case" in capsys.readouterr().err


# ---- calibration -----------------------------------------------------------------
TRUE = {"macs_per_cycle.fp16": 3.3, "kernel.vector_op_cycles": 1.6,
        "kernel.vector_latency_cycles": 6.8, "kernel.receive_add_forward_cycles": 6.5,
        "kernel.fabric_call_cycles": 130.0, "kernel.library_call_cycles": 640.0,
        "kernel.mesh_step_cycles": 150.0}


def synthetic_cases() -> list[Case]:
    """Kernel cases whose 'measured' cycles are the model's own at the TRUE constants:
    GEMVs of short and long outputs (issue cost, latency, rate), chain and two-level
    allreduces over lines of many lengths (stage, call, library call), MeshGEMMs (step)."""
    hw = with_constants(HW, TRUE)
    kernels = []
    for p, size in ((8, 64), (8, 256), (16, 1024), (32, 1024), (4, 512)):
        kernels.append({"op": "gemv", "grid": [p, p], "m": size, "n": size, "groups": 2})
    for p in (8, 16, 32, 64):
        kernels.append({"op": "gemv", "grid": [p, p], "m": 6 * p, "n": 6 * p,
                        "algorithm": "chain"})
    for p, n in ((4, 16), (8, 32), (16, 64)):
        kernels.append({"op": "gemm", "grid": [p, p], "m": n, "k": n, "n": n})
    cases = []
    for i, k in enumerate(kernels):
        s = KernelSpec.model_validate({"hardware": hw, **k})
        measured = float(closed_form(s).total)
        target = s.model_copy(update={"hardware": HW})       # priced at HW's constants
        cases.append(Case(CaseSpec(name=f"c{i}", source="synthetic", metric="cycles",
                                   measured=measured, kernel=k), target, Path("-")))
    return cases


@pytest.mark.parametrize("off", [0.7, 1.4])
def test_calibration_recovers_the_constants_that_generated_its_cases(off):
    """From constants 30% below or 40% above the truth (the fit is local: the dependent
    latency, a max(), has no gradient where no instruction waits on it)."""
    cases = synthetic_cases()
    start = {name: value * off for name, value in TRUE.items()}
    fit = calibrate(cases, start, leave_one_out=False)
    for name, value in TRUE.items():
        assert fit.values[name] == pytest.approx(value, rel=1e-3), name
    assert max(abs(e) for e in fit.errors.values()) < 1e-6


def test_leave_one_out_predicts_held_out_cases_of_an_exact_model():
    cases = synthetic_cases()[:9]                # GEMVs and chains: no step hand-off
    start = {n: v * 1.2 for n, v in TRUE.items() if n != "kernel.mesh_step_cycles"}
    fit = calibrate(cases, start)
    assert set(fit.loo_errors) == {c.name for c in cases}
    assert max(abs(e) for e in fit.loo_errors.values()) < 1e-3


def test_the_profiles_hold_their_fitted_constants():
    """The constants in the shipped profiles are a least-squares optimum over their cases
    (rerunning the fit from them moves none of them by more than 1%)."""
    from wsesim.calibrate import cases_by_profile, least_squares_fit
    groups = cases_by_profile()
    for profile in ("wse2", "wse3"):
        hw = load_hardware(profile)
        assert set(hw.kernel.calibrated.cases) == {c.name for c in groups[profile]}
        start = {n: constant_value(hw, n) for n in hw.kernel.calibrated.constants}
        refit = least_squares_fit(groups[profile], start)
        for name, value in start.items():
            assert refit[name] == pytest.approx(value, rel=0.01), (profile, name)


def test_with_constants_sets_dotted_paths_and_refuses_unknown_ones():
    hw = with_constants(HW, {"kernel.fabric_call_cycles": 7, "macs_per_cycle.fp16": 9})
    assert (hw.kernel.fabric_call_cycles, hw.macs_per_cycle["fp16"]) == (7, 9)
    with pytest.raises(SpecError, match="kernel.no_such_cycles: not a constant"):
        with_constants(HW, {"kernel.no_such_cycles": 1})


def test_written_values_keep_the_profile_comments(tmp_path):
    text = ("macs_per_cycle:\n  # a comment\n  fp16: 2.92   # source\n  fp32: 0.5\n"
            "kernel:\n  vector_op_cycles: 7.4\n  # why\n  mesh_step_cycles: 1\n")
    out = _set_in_yaml(_set_in_yaml(text, "macs_per_cycle.fp16", "3.2"),
                       "kernel.mesh_step_cycles", "147")
    assert out == text.replace("2.92", "3.2").replace("mesh_step_cycles: 1",
                                                      "mesh_step_cycles: 147")
    with pytest.raises(KeyError):
        _set_in_yaml(text, "kernel.fp16", "1")


def test_validate_shows_the_leave_one_out_error(capsys):
    assert main(["validate", "wse3-meshgemv-p240-m4320", "wse3-decode-p420"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-out" in out and "wse3-decode-p420" in out
    case = Path("validation/wse3-decode-p420.yaml")
    from wsesim.validate import leave_one_out_constants, load_case
    loo = with_constants(load_hardware("wse3"),
                         leave_one_out_constants("wse3")["wse3-decode-p420"])
    held_out = predict(load_case(case), loo)
    fitted = predict(load_case(case))
    assert held_out != fitted and math.isfinite(held_out)


CASE = "wse3-meshgemv-p240-m4320"


@pytest.mark.parametrize("loo,key,words", [
    ({CASE: 5}, f"leave_one_out.{CASE}", "dictionary"),
    ({CASE: {"kernel.no_such_cycles": 1}}, f"leave_one_out.{CASE}.kernel.no_such_cycles",
     "not a constant of hardware profile wse3"),
    ({CASE: {"kernel.fabric_call_cycles.x": 1}},
     f"leave_one_out.{CASE}.kernel.fabric_call_cycles.x", "not a constant"),
    ({CASE: {"kernel.fabric_call_cycles": "abc"}},
     f"leave_one_out.{CASE}.kernel.fabric_call_cycles", "number"),
    ({CASE: {"kernel.fabric_call_cycles": -5}},
     f"leave_one_out.{CASE}.kernel.fabric_call_cycles", "greater than or equal to 0"),
    ({CASE: {"kernel.fabric_call_cycles": 1e9}},
     f"leave_one_out.{CASE}.kernel.fabric_call_cycles", "at most"),
    ({CASE: {"macs_per_cycle.fp16": 0}}, f"leave_one_out.{CASE}.macs_per_cycle.fp16",
     "greater than 0"),
])
def test_a_bad_leave_one_out_file_is_one_located_line(tmp_path, monkeypatch, capsys, loo,
                                                      key, words):
    """A calibration file of one's own (under WSESIM_HOME) whose leave-one-out constants
    are not a profile's constants, or not numbers it accepts."""
    from wsesim.paths import PACKAGE_DIR
    data = PACKAGE_DIR / "data"
    for kind in ("models", "hardware_profiles"):
        (tmp_path / kind).symlink_to(data / kind)
    (tmp_path / "validation" / "calibration").mkdir(parents=True)
    (tmp_path / "validation" / f"{CASE}.yaml").write_text(
        (data / "validation" / f"{CASE}.yaml").read_text())
    bad = tmp_path / "validation" / "calibration" / "wse3.yaml"
    bad.write_text(yaml.safe_dump({"profile": "wse3", "leave_one_out": loo}))
    monkeypatch.setenv("WSESIM_HOME", str(tmp_path))
    assert main(["validate"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: {key}: "), lines
    assert words in lines[0]


def test_the_readme_validation_table_is_current():
    """README's table is what docs/validation_table.py prints today."""
    import subprocess
    import sys
    readme = Path("README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- validation table")
    shown = readme[readme.index("\n", start) + 1:readme.index("<!-- end of validation")]
    now = subprocess.run([sys.executable, "docs/validation_table.py"], capture_output=True,
                         text=True, check=True).stdout
    assert shown.strip() == now.strip()


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_a_written_constant_reads_back_as_its_number(value):
    """``{:.4g}`` wrote 2e+04 and 1e-05, which YAML reads back as strings."""
    from wsesim.calibrate import yaml_number
    back = yaml.safe_load(f"x: {yaml_number(value)}")["x"]
    assert isinstance(back, float) and back == float(f"{value:.4g}")


@pytest.mark.parametrize("path", ["kernel.vector_op_cyles", "kernel.dequant.int16_lanes"])
def test_a_calibrated_constant_the_profile_does_not_state_is_one_line(monkeypatch, capsys,
                                                                       path):
    """A misspelt constant (KeyError) or an optional one left unset (float(None)) gave a
    traceback."""
    import wsesim.calibrate as cal
    from wsesim.calibrate import cases_by_profile
    case = cases_by_profile()["wse3"][0]
    k = case.hardware.kernel
    hw = case.hardware.model_copy(update={"kernel": k.model_copy(update={
        "calibrated": k.calibrated.model_copy(update={"constants": [path]})})})
    monkeypatch.setattr(cal, "cases_by_profile",
                        lambda: {"wse3": [SimpleNamespace(name=case.name, hardware=hw)]})
    assert cal.main(["wse3", "--no-loo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "wse3.yaml: kernel.calibrated.constants: " in err
    assert repr(path) in err
