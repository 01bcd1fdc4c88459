"""Bad input gets one line `error: <file>: <key.path>: <what>` on stderr, exit code 2."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wsesim.cli import main

GOOD = """\
name: t
model: llama-3.1-8b
hardware: wse3
wafers: 1
quantization: {weights: int4-g128}
workload: {batch_size: 1, prompt_tokens: 16, output_tokens: 16}
"""


def run_cli(capsys, path: Path) -> tuple[int, str]:
    code = main(["run", str(path), "--format", "json"])
    err = capsys.readouterr().err
    return code, err


def write(tmp_path: Path, text: str, name: str = "dep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def assert_one_line(code: int, err: str, path: Path | str, key: str, words: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: {key}: "), lines[0]
    assert words in lines[0], lines[0]


def test_good_file_runs(tmp_path, capsys):
    assert run_cli(capsys, write(tmp_path, GOOD))[0] == 0


def test_malformed_yaml(tmp_path, capsys):
    path = write(tmp_path, "name: t\nmodel: [llama\n")
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, "(top level)", "malformed YAML at line")


def test_top_level_not_a_mapping(tmp_path, capsys):
    path = write(tmp_path, "- just\n- a list\n")
    assert_one_line(*run_cli(capsys, path), path, "(top level)", "expected a mapping")


def test_python_tag_is_an_error_never_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = write(tmp_path, GOOD + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, "(top level)", "malformed YAML")
    assert not marker.exists()


# Each kind of bad input: an edit of GOOD (replace ``old`` by ``new``; old "" appends),
# the key path the one line must name, and words it must contain.
KINDS = {
    "wrong type": ("batch_size: 1", "batch_size: many", "workload.batch_size",
                   "expected a number"),
    "unknown key": ("batch_size: 1", "batchsize: 1", "workload.batchsize",
                    "did you mean 'batch_size'?"),
    "unknown top-level key": ("", "wafer: 2\n", "wafer", "did you mean 'wafers'?"),
    "non-positive size": ("prompt_tokens: 16", "prompt_tokens: 0", "workload.prompt_tokens",
                          "greater than 0"),
    "unsupported bits": ("{weights: int4-g128}", "{weights: {bits: 5}}",
                         "quantization.weights.bits", "bits must be one of"),
    "unknown preset": ("int4-g128", "int4-g12", "quantization.weights", "did you mean"),
    "group size that does not divide": (
        "{weights: int4-g128}", "{weights: {preset: int4-g128, group_size: 4096}}",
        "quantization.weights.group_size", "does not divide intermediate_size = 14336"),
    "missing model": ("llama-3.1-8b", "llama-3.1-8c", "model", "did you mean 'llama-3.1-8b'?"),
    "missing profile": ("hardware: wse3", "hardware: wse4", "hardware",
                        "no hardware profile named"),
    "missing required key": ("model: llama-3.1-8b\n", "", "model", "required"),
    "context shorter than the sequence": (
        "output_tokens: 16}", "output_tokens: 16, context_length: 20}",
        "workload.context_length", "20 is shorter than prompt_tokens + output_tokens = 32"),
    "wafers neither a count nor auto": (
        "wafers: 1", "wafers: autox", "wafers",
        "expected a number of wafers or auto, not the text 'autox'"),
    "grid larger than the wafer": ("", "mapping: {grid: [2000, 10]}\n", "mapping.grid",
                                   "larger than"),
    "too many wafers": ("wafers: 1", "wafers: 99", "wafers", "more than the 34 units"),
    "bad strategy": ("", "mapping: {strategy: zigzag}\n", "mapping.strategy", "pipeline"),
    "grid too small for a pipeline": ("", "mapping: {strategy: pipeline, grid: [2, 2]}\n",
                                      "mapping.grid", "do not fit on 2 x 2"),
    # a union (a count or "auto"): located at the key, not at the member tried
    "zero wafers": ("wafers: 1", "wafers: 0", "wafers", "greater than 0"),
    "allreduce groups on a chain": (
        "", "mapping: {allreduce: chain, allreduce_groups: 4}\n", "mapping.allreduce_groups",
        "only applies to allreduce: two-level or auto, not chain"),
    "allreduce groups on a tree": (
        "", "mapping: {allreduce: tree, allreduce_groups: 4}\n", "mapping.allreduce_groups",
        "not tree"),
    "odd group for pairs": ("{weights: int4-g128}",
                            "{weights: {bits: 3.5, group_size: 7, scale_bits: 16}}",
                            "quantization.weights.group_size", "must be even"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_value_is_one_located_line(kind, tmp_path, capsys):
    old, new, key, words = KINDS[kind]
    path = write(tmp_path, GOOD + new if not old else GOOD.replace(old, new))
    assert_one_line(*run_cli(capsys, path), path, key, words)


def test_bad_model_file_is_named(tmp_path, capsys):
    model = write(tmp_path, "hidden_size: 64\nintermediate_size: -1\nnum_hidden_layers: 1\n"
                            "num_attention_heads: 4\nvocab_size: 10\n", "m.yaml")
    path = write(tmp_path, GOOD.replace("llama-3.1-8b", "m.yaml"))
    assert_one_line(*run_cli(capsys, path), model, "intermediate_size", "greater than 0")


def test_inline_model_error_is_located(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace(
        "model: llama-3.1-8b",
        "model: {hidden_size: 64, intermediate_size: 64, num_hidden_layers: 1, "
        "num_attention_heads: 5, vocab_size: 10}"))
    assert_one_line(*run_cli(capsys, path), path, "model", "not divisible")


def test_missing_deployment_file(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert_one_line(*run_cli(capsys, path), path, "(top level)", "file not found")


def test_bad_hardware_profile_number(tmp_path, capsys):
    hw = (Path(__file__).parent.parent / "hardware_profiles" / "wse3.yaml").read_text()
    prof = write(tmp_path, hw.replace("pe_sram_bytes: 49152", "pe_sram_bytes: 1000"), "hw.yaml")
    path = write(tmp_path, GOOD.replace("hardware: wse3", "hardware: hw.yaml"))
    assert_one_line(*run_cli(capsys, path), prof, "(top level)",
                    "runtime_reserve_bytes 4176 leaves no SRAM of pe_sram_bytes 1000")


def test_a_kernel_profile_without_an_entry_the_kernels_need(tmp_path, capsys):
    hw = (Path(__file__).parent.parent / "hardware_profiles" / "wse3.yaml").read_text()
    assert "rsqrt: 6, " in hw
    prof = write(tmp_path, hw.replace("rsqrt: 6, ", ""), "hw.yaml")
    path = write(tmp_path, GOOD.replace("hardware: wse3", "hardware: hw.yaml"))
    assert_one_line(*run_cli(capsys, path), prof, "kernel", "missing rsqrt")


def test_the_api_locates_a_key_that_cannot_be_planned():
    import yaml

    import wsesim
    from wsesim.errors import SpecError
    data = yaml.safe_load(GOOD)
    data["mapping"] = {"strategy": "pipeline", "grid": [2, 2]}
    with pytest.raises(SpecError) as info:
        wsesim.simulate(data)
    assert info.value.line().startswith("error: <mapping>: mapping.grid: ")


def test_subprocess_shows_no_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("batch_size: 1", "batch_size: -3"))
    proc = subprocess.run([sys.executable, "-m", "wsesim", "run", str(path)],
                          capture_output=True, text=True)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert_one_line(proc.returncode, proc.stderr, path, "workload.batch_size",
                    "Input should be greater than 0 (got -3)")


# ---- bounds, booleans and non-finite numbers, on every key of each kind -------------

import math  # noqa: E402

import yaml  # noqa: E402
from conftest import tiny_hardware, tiny_model  # noqa: E402

from wsesim.specs import bounds as B  # noqa: E402


def assert_one_error(code: int, err: str, path: Path | str, words: str) -> None:
    """One line, exit 2, naming ``path`` (at whatever key) and saying ``words``."""
    assert code == 2
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith(f"error: {path}: ") and words in err, err


def tiny_data() -> dict:
    """A small valid deployment with the model and hardware inline (so every key of
    theirs is located in the one file)."""
    return {"name": "t", "model": tiny_model(), "hardware": tiny_hardware(), "wafers": 1,
            "quantization": {"weights": "int4"},
            "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 16},
            "mapping": {"strategy": "sequential"}}


def with_value(data: dict, key: str, value) -> dict:
    """``data`` with the dotted ``key`` set to ``value`` (list indices as numbers)."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def run_data(tmp_path, capsys, data: dict) -> tuple[int, str]:
    path = tmp_path / "dep.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_cli(capsys, path)


# every integer a user can type, with its bound (grid entries given as a list first)
INT_BOUNDS = {
    "workload.batch_size": B.MAX_BATCH,
    "workload.prompt_tokens": B.MAX_PROMPT_TOKENS,
    "workload.output_tokens": B.MAX_OUTPUT_TOKENS,
    "workload.context_length": B.MAX_CONTEXT_TOKENS,
    "wafers": B.MAX_WAFERS,
    "mapping.grid.0": B.MAX_GRID_SIDE,
    "mapping.grid.1": B.MAX_GRID_SIDE,
    "mapping.allreduce_groups": B.MAX_GROUPS,
    "simulation.prefill_chunk_tokens": B.MAX_PROMPT_TOKENS,
    "model.hidden_size": B.MAX_WIDTH,
    "model.intermediate_size": B.MAX_WIDTH,
    "model.num_hidden_layers": B.MAX_LAYERS,
    "model.num_attention_heads": B.MAX_HEADS,
    "model.num_key_value_heads": B.MAX_HEADS,
    "model.head_dim": B.MAX_HEAD_DIM,
    "model.vocab_size": B.MAX_VOCAB,
    "model.max_position_embeddings": B.MAX_POSITIONS,
    "model.sliding_window": B.MAX_CONTEXT_TOKENS,
    "model.max_window_layers": B.MAX_LAYERS,
    "hardware.grid_rows": B.MAX_GRID_SIDE,
    "hardware.grid_cols": B.MAX_GRID_SIDE,
    "hardware.pe_sram_bytes": B.MAX_PE_SRAM_BYTES,
    "hardware.runtime_reserve_bytes": B.MAX_PE_SRAM_BYTES,
    "hardware.vendor_pe_count": B.MAX_PE_COUNT,
    "hardware.colors": B.MAX_COLORS,
    "hardware.colors_reserved": B.MAX_COLORS,
    "quantization.weights.group_size": B.MAX_WIDTH,
}
# every other number, with the largest and (for rates) smallest value it may take
FLOAT_BOUNDS = {
    "hardware.clock_hz": (B.MIN_CLOCK_HZ, B.MAX_CLOCK_HZ),
    "hardware.macs_per_cycle.fp16": (B.MIN_RATE, B.MAX_RATE),
    "hardware.sram_read_bytes_per_cycle": (B.MIN_RATE, B.MAX_RATE),
    "hardware.sram_write_bytes_per_cycle": (B.MIN_RATE, B.MAX_RATE),
    "hardware.link_bytes_per_cycle": (B.MIN_RATE, B.MAX_RATE),
    "hardware.interwafer_bytes_per_s": (B.MIN_LINK_BYTES_PER_S, B.MAX_LINK_BYTES_PER_S),
    "hardware.kernel.elementwise_ops.exp": (B.MIN_RATE, B.MAX_OPS_PER_ELEMENT),
    "hardware.hop_latency_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.ramp_latency_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.turn_latency_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.interwafer_latency_s": (0, B.MAX_LATENCY_S),
    "hardware.kernel.vector_op_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.kernel.fabric_call_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.kernel.receive_add_forward_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.kernel.mesh_step_cycles": (0, B.MAX_LATENCY_CYCLES),
    "hardware.kernel.dequant.shift_cycles": (0, 1000),
    "hardware.kernel.dequant.fp16_lanes": (0.01, 1024),
    "model.rms_norm_eps": (0, 1),
    "model.rope_theta": (0, B.MAX_ROPE_THETA),
}


def _base_for(key: str) -> dict:
    data = tiny_data()
    if key.startswith("mapping.grid"):
        data["mapping"]["grid"] = [8, 8]
    if key == "quantization.weights.group_size":
        data["quantization"]["weights"] = {"preset": "int4-g128"}
    return data


@pytest.mark.parametrize("key", list(INT_BOUNDS))
@pytest.mark.parametrize("over", [1, 2**63 - 1, 10**40])
def test_a_count_past_its_bound_is_one_located_line(key, over, tmp_path, capsys):
    bound = INT_BOUNDS[key]
    value = bound + 1 if over == 1 else over
    code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, value))
    assert_one_line(code, err, tmp_path / "dep.yaml", key, "a bound of wsesim")
    assert f"{bound:,}" in err


@pytest.mark.parametrize("key", [*INT_BOUNDS, *FLOAT_BOUNDS])
@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_is_not_a_number(key, flag, tmp_path, capsys):
    code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, flag))
    assert_one_line(code, err, tmp_path / "dep.yaml", key, "not a boolean")


@pytest.mark.parametrize("key", list(FLOAT_BOUNDS))
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_non_finite_number_is_refused(key, value, tmp_path, capsys):
    code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, value))
    assert_one_line(code, err, tmp_path / "dep.yaml", key,
                    f"Input should be a finite number (got {value!r})")


@pytest.mark.parametrize("key", list(FLOAT_BOUNDS))
def test_a_number_past_its_range_is_refused(key, tmp_path, capsys):
    low, high = FLOAT_BOUNDS[key]
    for value in (high * 10, 1e300):
        code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, value))
        assert_one_line(code, err, tmp_path / "dep.yaml", key,
                        f"must be at most {B._fmt(high)}")
        assert err.endswith(f"(a bound of wsesim), got {float(value)!r}\n"), err
    for value in (low / 10, 1e-300) if low > 0 else (-1e-300,):
        code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, value))
        bound = f"must be at least {B._fmt(low)}" if low > 0 else "should be greater than"
        assert_one_line(code, err, tmp_path / "dep.yaml", key, bound)
        assert f"got {value!r}" in err, err


@pytest.mark.parametrize("key,value,words", [
    ("hardware.interwafer_bytes_per_s", 2e15, "must be at most 1e+15 B/s (a bound of "
                                              "wsesim), got 2000000000000000.0"),
    ("hardware.clock_hz", 5e5, "must be at least 1,000,000 Hz (a bound of wsesim: a "
                               "smaller value is not physical), got 500000.0"),
    ("model.rms_norm_eps", 0, "Input should be greater than 0 (got 0)"),
    ("hardware.hop_latency_cycles", -1, "Input should be greater than or equal to 0 "
                                        "(got -1)"),
])
def test_a_range_error_by_hand(key, value, words, tmp_path, capsys):
    code, err = run_data(tmp_path, capsys, with_value(_base_for(key), key, value))
    assert_one_line(code, err, tmp_path / "dep.yaml", key, words)


def test_bounds_themselves_are_accepted():
    """Off by one the other way: the bound itself is a valid value."""
    from conftest import deployment
    wl = {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 16}
    for key, bound in [("context_length", B.MAX_CONTEXT_TOKENS), ("batch_size", B.MAX_BATCH),
                       ("prompt_tokens", B.MAX_PROMPT_TOKENS),
                       ("output_tokens", B.MAX_OUTPUT_TOKENS)]:
        short = {"output_tokens": 2} if key == "batch_size" else {}
        assert getattr(deployment(workload={**wl, **short, key: bound}).workload, key) == bound
    dep = deployment(model=tiny_model(hidden_size=B.MAX_WIDTH, vocab_size=B.MAX_VOCAB,
                                      intermediate_size=B.MAX_WIDTH), workload=wl)
    assert (dep.model.hidden_size, dep.model.vocab_size) == (B.MAX_WIDTH, B.MAX_VOCAB)
    hw = tiny_hardware(B.MAX_GRID_SIDE, B.MAX_GRID_PES // B.MAX_GRID_SIDE,
                       sram=B.MAX_PE_SRAM_BYTES, clock_hz=B.MAX_CLOCK_HZ,
                       interwafer_latency_s=B.MAX_LATENCY_S)
    h = deployment(hardware=hw, workload=wl).hardware
    assert h.grid_rows * h.grid_cols == B.MAX_GRID_PES
    assert (h.pe_sram_bytes, h.clock_hz, h.interwafer_latency_s) == (
        B.MAX_PE_SRAM_BYTES, B.MAX_CLOCK_HZ, B.MAX_LATENCY_S)


def test_a_grid_of_too_many_pes_is_refused(tmp_path, capsys):
    data = with_value(tiny_data(), "hardware.grid_rows", B.MAX_GRID_SIDE)
    data = with_value(data, "hardware.grid_cols", B.MAX_GRID_SIDE)
    code, err = run_data(tmp_path, capsys, data)
    assert_one_line(code, err, tmp_path / "dep.yaml", "hardware",
                    f"grid_rows x grid_cols = {B.MAX_GRID_SIDE ** 2:,} PEs must be at most "
                    f"{B.MAX_GRID_PES:,} (a bound of wsesim)")


@pytest.mark.parametrize("workload", [
    {"batch_size": B.MAX_BATCH, "output_tokens": B.MAX_OUTPUT_TOKENS},
    {"batch_size": 4096, "output_tokens": 1024},
    {"batch_size": 1024, "prompt_tokens": B.MAX_PROMPT_TOKENS, "output_tokens": 1},
])
def test_simulation_work_past_its_budget_is_one_line(workload, tmp_path, capsys):
    data = tiny_data()
    data["workload"] = {"prompt_tokens": 16, **workload}
    data["mapping"] = {"strategy": "pipeline"}
    code, err = run_data(tmp_path, capsys, data)
    assert_one_line(code, err, tmp_path / "dep.yaml", "workload", "budget")
    assert "workload.batch_size" in err and "workload.output_tokens" in err


def test_the_elements_of_a_deep_pipeline_count_in_its_budget(tmp_path, capsys):
    data = tiny_data()
    data["model"]["num_hidden_layers"] = B.MAX_LAYERS
    data["hardware"] = tiny_hardware(1024, 1024)
    data["mapping"] = {"strategy": "pipeline"}
    data["workload"] = {"batch_size": 64, "prompt_tokens": 16, "output_tokens": 4096}
    code, err = run_data(tmp_path, capsys, data)
    assert_one_line(code, err, tmp_path / "dep.yaml", "workload", "pipeline elements")


def test_kv_cache_elements_past_the_budget_are_refused(tmp_path, capsys):
    data = tiny_data()
    data["model"].update(hidden_size=2**16, num_attention_heads=64, num_key_value_heads=64,
                         intermediate_size=64)
    data["workload"].update(batch_size=B.MAX_BATCH, output_tokens=2,
                            context_length=B.MAX_CONTEXT_TOKENS)
    code, err = run_data(tmp_path, capsys, data)
    kv = 2 * 2 * B.MAX_BATCH * B.MAX_CONTEXT_TOKENS * 2**16   # 2 x layers x ... x KV width
    assert_one_line(code, err, tmp_path / "dep.yaml", "workload",
                    f"the KV cache's {kv:,} elements")
    assert f"must be at most {B.MAX_STORED_ELEMENTS:,} elements in all" in err


@pytest.mark.parametrize("context", [2**63 - 1, 2**53, 2**40])
def test_an_overflowing_context_is_refused_not_run(context, tmp_path, capsys):
    """Before: 2**63 - 1 reported fits: true with a negative KV cache; 2**53 a 0 B one."""
    path = write(tmp_path, GOOD.replace("output_tokens: 16}",
                                        f"output_tokens: 16, context_length: {context}}}"))
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, "workload.context_length",
                    "must be at most 16,777,216 tokens (a bound of wsesim)")


# ---- YAML and JSON: duplicates, aliases, depth, size ---------------------------------

@pytest.mark.parametrize("text,key,line", [
    ("name: t\nname: u\n", "name", 2),
    ("workload:\n  batch_size: 1\n  prompt_tokens: 2\n  batch_size: 3\n",
     "workload.batch_size", 4),
    ("workload: {batch_size: 1, batch_size: 2}\n", "workload.batch_size", 1),
    ("model:\n  hidden_size: 1\n  'hidden_size': 2\n", "model.hidden_size", 3),
    ("grid:\n  - {a: 1, a: 1}\n", "grid.0.a", 2),
])
def test_a_duplicate_key_is_one_located_line(text, key, line, tmp_path, capsys):
    path = write(tmp_path, text)
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, key, f"duplicate key at line {line}")


def test_merge_keys_may_override_what_they_merge(tmp_path, capsys):
    base = GOOD.replace("workload: {batch_size: 1, prompt_tokens: 16, output_tokens: 16}",
                        "workload:\n  <<: {batch_size: 1, prompt_tokens: 16}\n"
                        "  prompt_tokens: 8\n  output_tokens: 16")
    assert main(["run", str(write(tmp_path, base)), "--format", "json"]) == 0
    workload = json.loads(capsys.readouterr().out)["workload"]
    assert (workload["batch_size"], workload["prompt_tokens"]) == (1, 8)


def test_an_alias_bomb_is_refused_from_its_few_bytes(tmp_path, capsys):
    text = 'x: &x ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "x"
    for i in range(9):
        name = f"l{i}"
        text += f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        prev = name
    path = write(tmp_path, text + f"name: *{prev}\nmodel: llama-3.1-8b\nhardware: wse3\n")
    assert path.stat().st_size < 1000
    import tracemalloc
    tracemalloc.start()
    code, err = run_cli(capsys, path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_one_error(code, err, path, f"more than {B.MAX_NODES:,} values once aliases")
    assert re.match(rf"error: {re.escape(str(path))}: l\d\.\d: ", err), err
    assert peak < 50e6


def test_aliases_within_the_bound_work(tmp_path, capsys):
    text = GOOD.replace("workload: {", "workload: &w {") + "simulation: {fidelity: tile}\n"
    assert run_cli(capsys, write(tmp_path, text))[0] == 0


def test_a_value_that_contains_itself_is_refused(tmp_path, capsys):
    path = write(tmp_path, GOOD + "extra: &a [1, *a]\n")
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, "extra.1", "contains itself")


@pytest.mark.parametrize("depth", [B.MAX_NESTING + 1, 5000, 100_000])
def test_deep_yaml_is_one_line_not_a_recursion_error(depth, tmp_path, capsys):
    path = write(tmp_path, GOOD + "extra: " + "[" * depth + "]" * depth + "\n")
    code, err = run_cli(capsys, path)
    assert_one_error(code, err, path, "nested more than 64 levels")
    assert err.startswith(f"error: {path}: extra")


def test_deep_nesting_through_an_alias_counts(tmp_path, capsys):
    deep = "[" * 40 + "]" * 40
    path = write(tmp_path, GOOD + f"a: &d {deep}\nb: " + "[" * 28 + "*d" + "]" * 28 + "\n")
    code, err = run_cli(capsys, path)
    assert_one_error(code, err, path, "nested more than 64 levels")
    assert err.startswith(f"error: {path}: b")


@pytest.mark.parametrize("depth", [B.MAX_NESTING + 1, 5000, 100_000])
@pytest.mark.parametrize("before,key", [
    ('"hidden_size": 64, "x": ', "x.0"),
    ('"a": "[{[\\"", "b\\"c:": [1, {"d": ', "b\"c:.1"),   # brackets, quotes in strings
])
def test_deep_config_json_is_one_located_line(depth, before, key, tmp_path, capsys):
    """Located at the outer keys of the deep path, as in YAML, however deep."""
    cfg = tmp_path / "m" / "config.json"
    cfg.parent.mkdir()
    close = "}" if before.endswith('"d": ') else ""
    cfg.write_text("{" + before + "[" * depth + "]" * depth + close + "]" * bool(close)
                   + "}")
    path = write(tmp_path, GOOD.replace("llama-3.1-8b", "m/config.json"))
    assert_one_line(*run_cli(capsys, path), cfg, key, "nested more than 64 levels deep")


def test_a_file_too_large_is_refused_unread(tmp_path, capsys):
    path = write(tmp_path, GOOD + "# " + "x" * B.MAX_FILE_BYTES + "\n")
    assert_one_line(*run_cli(capsys, path), path, "(top level)", "larger than 1,048,576 B")


@pytest.mark.parametrize("text,words", [
    (b"name: t\xff\n", "not UTF-8"),
    (GOOD.encode() + b"x: 1" + b"1" * 5000 + b"\n", "malformed YAML"),
])
def test_unreadable_yaml_is_one_line(text, words, tmp_path, capsys):
    path = tmp_path / "dep.yaml"
    path.write_bytes(text)
    assert_one_line(*run_cli(capsys, path), path, "(top level)", words)


@pytest.mark.parametrize("body,key,words", [
    ('{"hidden_size": 64, "hidden_size": 65}', "hidden_size", "duplicate key"),
    ('{"hidden_size": NaN}', "(top level)", "NaN is not a JSON number"),
    ('{"hidden_size": Infinity}', "(top level)", "Infinity is not a JSON number"),
    ('{"hidden_size": 1' + "0" * 5000 + "}", "(top level)", "malformed JSON"),
])
def test_bad_config_json_is_one_line(body, key, words, tmp_path, capsys):
    cfg = tmp_path / "m" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(body)
    path = write(tmp_path, GOOD.replace("llama-3.1-8b", "m/config.json"))
    assert_one_line(*run_cli(capsys, path), cfg, key, words)


# ---- one line whatever the text ------------------------------------------------------

@pytest.mark.parametrize("key", ["bat\nch", "bat\rch", "x\u2028error: forged", "\x1b[31m"])
def test_a_control_character_in_a_key_cannot_forge_a_line(key, tmp_path, capsys):
    data = tiny_data()
    data["workload"][key] = 1
    code, err = run_data(tmp_path, capsys, data)
    escaped = key.encode("unicode_escape").decode("ascii")   # \n, \x1b, \u2028
    assert_one_line(code, err, tmp_path / "dep.yaml", f"workload.{escaped}", "unknown key")
    assert err[:-1].isprintable(), err   # no terminal escape either


def test_a_newline_in_a_model_name_cannot_forge_a_line(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("model: llama-3.1-8b",
                                        'model: "x\\nerror: forged"'))
    assert_one_line(*run_cli(capsys, path), path, "model",
                    "no model named 'x\\nerror: forged'")


def test_a_huge_value_is_shown_bounded(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("model: llama-3.1-8b", f"model: {'m' * 100_000}"))
    code, err = run_cli(capsys, path)
    assert_one_line(code, err, path, "model", f"cannot use '{'m' * 60}'... as a model name")
    assert len(err) < 2000, len(err)


# ---- fabric-check's options ------------------------------------------------------------

@pytest.mark.parametrize("args,key,words", [
    (["model", "--layers", "100000"], "--layers", "4,096 (a bound of wsesim)"),
    (["model", "--layers", "4000"], "--layers", "budget of 32,768"),
    (["model", "--grid", "128", "128", "--layers", "3"], "--layers", "budget"),
    (["layer", "--context", "100000000"], "--context", "1,048,577"),
    (["gemv", "--elements", str(2**63)], "--elements", "1,048,576"),
    (["layer", "--elements", str(2**20)], "--elements", "262,144"),
    (["gemv", "--elements", "9" * 5000], "--elements", "expected an integer"),
    (["allreduce", "--groups", "99999", "--algorithm", "two-level"], "--groups", "4,096"),
    (["allreduce", "--grid", "99999", "2"], "--grid", "4,096"),
])
def test_fabric_check_options_past_their_bounds(args, key, words, capsys):
    argv = ["fabric-check", args[0], "--grid", "8", "8", "--elements", "64", *args[1:]]
    code = main(argv)   # later options win over the defaults given first
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: fabric-check: {key}: ") and words in err, err
    assert len(err) < 400


def test_numbers_in_exponent_form_are_numbers_and_quoted_numbers_are_not(tmp_path, capsys):
    """YAML 1.1 reads 1.1e9 as text; wsesim reads it as the number it is (as YAML 1.2 and
    JSON do), and refuses a number written as quoted text."""
    from wsesim.specs.yamlio import read_mapping
    path = write(tmp_path, "a: 1.1e9\nb: 1e9\nc: -2.5E-3\nd: '12'\n", "n.yaml")
    assert read_mapping(path) == {"a": 1.1e9, "b": 1e9, "c": -2.5e-3, "d": "12"}
    bad = write(tmp_path, GOOD.replace("batch_size: 1", "batch_size: '1'"))
    assert_one_line(*run_cli(capsys, bad), bad, "workload.batch_size", "not the text")


@pytest.mark.parametrize("key,text", [("bits", "4"), ("group_size", "128"),
                                      ("scale_bits", "16"), ("zero_bits", "0")])
def test_a_quoted_number_in_a_format_is_text_as_everywhere(key, text, tmp_path, capsys):
    data = tiny_data()
    data["quantization"]["weights"] = {"bits": 4, "group_size": 128, "scale_bits": 16,
                                       key: text}
    code, err = run_data(tmp_path, capsys, data)
    assert_one_line(code, err, tmp_path / "dep.yaml", f"quantization.weights.{key}",
                    f"expected a number, not the text '{text}'")
