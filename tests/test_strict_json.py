"""Every JSON answer is strict JSON (no NaN or Infinity), and the bounds keep every
figure finite: hardware numbers anywhere in their accepted ranges give finite, positive
performance figures."""
from __future__ import annotations

import json
import math

import pytest
from conftest import deployment, tiny_hardware
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsesim import strict_json
from wsesim.cli import main
from wsesim.run import simulate
from wsesim.specs import bounds as B


def strict_loads(text: str):
    """A parser that refuses what is not JSON (Python's accepts NaN and Infinity)."""
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_dumps_never_writes_nan_or_infinity():
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (math.nan,)}}
    assert strict_loads(strict_json.dumps(value)) == {"a": None, "b": [None, None, 1.5],
                                                      "c": {"d": [None]}}


def test_run_json_is_strict(capsys):
    assert main(["run", "examples/llama-3.1-8b-bf16-wse3.yaml", "--format", "json"]) == 0
    data = strict_loads(capsys.readouterr().out)
    assert data["performance"]["tokens_per_s"] > 0


def test_validate_json_is_strict(capsys):
    main(["validate", "waferllm-decode-p420", "--format", "json"])
    rows = strict_loads(capsys.readouterr().out)
    assert rows and all(math.isfinite(r["error"]) for r in rows)


def test_fabric_check_json_is_strict(capsys):
    assert main(["fabric-check", "allreduce", "--grid", "4", "4", "--elements", "16",
                 "--format", "json"]) == 0
    assert strict_loads(capsys.readouterr().out)["ratio"] > 0


def test_render_json_turns_a_stray_nan_into_null():
    from wsesim.report import render_json
    result = simulate(deployment(), find_min_wafers=False)
    result.performance["tokens_per_s"] = math.nan
    assert strict_loads(render_json(result))["performance"]["tokens_per_s"] is None


@pytest.mark.parametrize("measured", [".inf", ".nan", "-.inf", "0", "1e300"])
def test_a_validation_case_takes_only_finite_positive_numbers(measured, tmp_path, capsys):
    case = tmp_path / "case.yaml"
    case.write_text(f"name: c\nsource: s\nmetric: tokens_per_s\nmeasured: {measured}\n"
                    "deployment: {model: llama-3.1-8b, hardware: wse3}\n")
    assert main(["validate", str(case), "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {case}: measured: ") and len(err.splitlines()) == 1


def log_uniform(low: float, high: float):
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: 10.0 ** e)


@st.composite
def extreme_hardware(draw):
    return tiny_hardware(
        4, 4, clock_hz=draw(log_uniform(B.MIN_CLOCK_HZ, B.MAX_CLOCK_HZ)),
        macs_per_cycle={"fp16": draw(log_uniform(B.MIN_RATE, B.MAX_RATE))},
        sram_read_bytes_per_cycle=draw(log_uniform(B.MIN_RATE, B.MAX_RATE)),
        sram_write_bytes_per_cycle=draw(log_uniform(B.MIN_RATE, B.MAX_RATE)),
        link_bytes_per_cycle=draw(log_uniform(B.MIN_RATE, B.MAX_RATE)),
        hop_latency_cycles=draw(st.sampled_from([0.0, 1.0, B.MAX_LATENCY_CYCLES])),
        ramp_latency_cycles=draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
        interwafer_bytes_per_s=draw(log_uniform(B.MIN_LINK_BYTES_PER_S,
                                                B.MAX_LINK_BYTES_PER_S)),
        interwafer_latency_s=draw(st.sampled_from([0.0, 1e-9, B.MAX_LATENCY_S])),
        kernel={"vector_op_cycles": draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
                "vector_latency_cycles": draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
                "receive_add_forward_cycles": 0.0,
                "fabric_call_cycles": draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
                "library_call_cycles": 0.0,
                "route_switch_cycles": draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
                "mesh_step_cycles": draw(st.sampled_from([0.0, B.MAX_LATENCY_CYCLES])),
                "elementwise_ops": {k: draw(log_uniform(B.MIN_RATE, B.MAX_OPS_PER_ELEMENT))
                                    for k in ("rope", "exp", "rsqrt", "silu")},
                "dequant": {"shift_cycles": 0.0, "logic_cycles": 0.0, "convert_cycles": 0.0,
                            "fma_cycles": 0.0, "scalar_cycles": 0.0, "int16_lanes": 0.01,
                            "fp16_lanes": 1024.0}})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extreme_hardware(), st.sampled_from(["pipeline", "sequential"]),
       st.integers(1, 2))
def test_performance_is_finite_anywhere_in_the_accepted_ranges(hw, strategy, wafers):
    dep = deployment(hardware=hw, wafers=wafers, mapping={"strategy": strategy},
                     workload={"batch_size": 2, "prompt_tokens": 8, "output_tokens": 4})
    perf = simulate(dep, find_min_wafers=False).performance
    for key in ("tokens_per_s_per_user", "tokens_per_s", "time_per_output_token_s",
                "ttft_s", "prefill_tokens_per_s", "layer_time_s"):
        assert math.isfinite(perf[key]) and perf[key] > 0, (key, perf[key])


def _plan_file(tmp_path) -> str:
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(deployment().model_dump(mode="json")))
    return str(path)


def test_plan_json_is_strict(tmp_path, capsys):
    assert main(["plan", _plan_file(tmp_path), "--wafers", "1-2", "--format", "json"]) == 0
    rows = strict_loads(capsys.readouterr().out)["plans"]
    assert [r["wafers"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["tokens_per_s"]) for r in rows)


def test_plan_json_writes_a_stray_nan_or_infinity_as_null(tmp_path, capsys, monkeypatch):
    from wsesim.planner import table
    real = table.plan_rows

    def broken(dep, wafers):   # a planner bug that lets a non-finite figure through
        rows = real(dep, wafers)
        rows[0]["tokens_per_s"], rows[0]["tokens_per_s_per_user"] = math.nan, math.inf
        return rows
    monkeypatch.setattr(table, "plan_rows", broken)
    assert main(["plan", _plan_file(tmp_path), "--wafers", "1-1", "--format", "json"]) == 0
    (row,) = strict_loads(capsys.readouterr().out)["plans"]
    assert row["tokens_per_s"] is None and row["tokens_per_s_per_user"] is None


def test_formats_json_is_strict(capsys):
    from wsesim.quant import PRESETS
    assert main(["formats", "--format", "json"]) == 0
    listed = strict_loads(capsys.readouterr().out)["formats"]
    assert [f["name"] for f in listed] == list(PRESETS)
    assert main(["formats", "--cost", "--format", "json"]) == 0
    costed = strict_loads(capsys.readouterr().out)["formats"]
    assert [f["name"] for f in costed] == list(PRESETS)
    assert all(math.isfinite(f["cycles_per_weight"]) for f in costed)


def test_formats_cost_json_writes_a_stray_infinity_as_null(capsys, monkeypatch):
    from wsesim.quant import dequant
    real = dequant.ops_per_weight

    def broken(fmt, k, n):   # a counting bug that lets an infinite figure through
        return {**real(fmt, k, n), "shift": math.inf}
    monkeypatch.setattr(dequant, "ops_per_weight", broken)
    assert main(["formats", "--cost", "--format", "json"]) == 0
    rows = strict_loads(capsys.readouterr().out)["formats"]
    assert all(r["ops_per_weight"]["shift"] is None and r["ops_total"] is None
               for r in rows)


def test_numpy_values_are_written_as_the_numbers_they_hold():
    """json.dumps refuses numpy's integers, float32 and arrays (TypeError: a traceback
    instead of an answer); strict_json writes the Python values they hold."""
    import numpy as np
    value = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True),
             "a": np.array([[1.5, np.nan], [np.inf, 2.0]]), "n": np.float64("-inf"),
             "l": [np.uint8(7), (np.float16(0.25),)]}
    assert strict_loads(strict_json.dumps(value)) == {
        "i": 3, "f": 0.5, "b": True, "a": [[1.5, None], [None, 2.0]], "n": None,
        "l": [7, [0.25]]}


@pytest.mark.parametrize("module,writer", [("wsesim.trace", "write_chrome_trace"),
                                           ("wsesim.serving.report", "write_trace")])
def test_a_trace_file_is_strict_json(module, writer, tmp_path, monkeypatch):
    """Perfetto and chrome://tracing read the file with JSON.parse, which refuses NaN."""
    import importlib
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, "chrome_trace", lambda *args: {"traceEvents": [
        {"name": "x", "ph": "X", "ts": 0.0, "dur": math.inf, "args": {"n": math.nan}}]})
    path = getattr(mod, writer)(*([None] * (2 if "serving" in module else 1)),
                                tmp_path / "t.json")
    (event,) = strict_loads(path.read_text())["traceEvents"]
    assert event["dur"] is None and event["args"]["n"] is None and event["ts"] == 0.0
