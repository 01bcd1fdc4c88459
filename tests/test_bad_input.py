"""Bad input gets one line `error: <file>: <key.path>: <what>` on stderr, exit code 2."""
from __future__ import annotations

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
    "wrong type": ("batch_size: 1", "batch_size: many", "workload.batch_size", "integer"),
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
        "output_tokens: 16}", "output_tokens: 16, context_length: 20}", "workload",
        "shorter than"),
    "grid larger than the wafer": ("", "mapping: {grid: [2000, 10]}\n", "mapping.grid",
                                   "larger than"),
    "too many wafers": ("wafers: 1", "wafers: 99", "wafers", "more than the 34 units"),
    "bad strategy": ("", "mapping: {strategy: zigzag}\n", "mapping.strategy", "pipeline"),
    "grid too small for a pipeline": ("", "mapping: {strategy: pipeline, grid: [2, 2]}\n",
                                      "mapping.grid", "do not fit on 2 x 2"),
    # a union (a count or "auto"): located at the key, not at the member tried
    "zero wafers": ("wafers: 1", "wafers: 0", "wafers", "greater than 0"),
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
    assert_one_line(*run_cli(capsys, path), prof, "(top level)", "runtime_reserve_bytes")


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
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""
