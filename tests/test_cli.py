"""The command line: contract keys of the JSON report, the other formats, listings."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wsesim.cli import main

EXAMPLE = "examples/llama-3.1-405b-w3.5-5x-wse3.yaml"


@pytest.fixture(scope="module")
def report_405b():
    proc = subprocess.run([sys.executable, "-m", "wsesim", "run", EXAMPLE, "--format",
                           "json"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_json_has_the_contract_keys(report_405b):
    r = report_405b
    assert {"name", "parameters", "layers"} <= set(r["model"])
    assert {"weights_bytes", "quant_metadata_bytes", "kv_cache_bytes", "activation_bytes",
            "runtime_reserved_bytes", "total_bytes", "capacity_bytes", "pe_sram_bytes",
            "max_pe_bytes", "fits", "limiting"} <= set(r["memory"])
    for wafer in r["partition"]:
        assert {"wafer", "layers", "used_bytes", "capacity_bytes", "max_pe_bytes",
                "fits"} <= set(wafer)
    assert "min_wafers" in r


def test_json_numbers_add_up(report_405b):
    m = report_405b["memory"]
    assert m["total_bytes"] == (m["weights_bytes"] + m["quant_metadata_bytes"]
                                + m["kv_cache_bytes"] + m["activation_bytes"]
                                + m["runtime_reserved_bytes"])
    assert m["capacity_bytes"] == 5 * 1170 * 755 * 49152
    assert m["runtime_reserved_bytes"] == 5 * 1170 * 755 * 4176
    assert report_405b["model"]["parameters"] == 405_853_388_800
    assert m["fits"] is False and m["max_pe_bytes"] > m["pe_sram_bytes"]
    assert report_405b["min_wafers"] == 6
    layers = [w["layers"] for w in report_405b["partition"]]
    assert layers[0][0] == 0 and layers[-1][1] == 125
    assert all(a[1] + 1 == b[0] for a, b in zip(layers, layers[1:]))
    assert sum(w["used_bytes"] for w in report_405b["partition"]) == m["total_bytes"]
    it = m["items"]
    assert m["weights_bytes"] == (it["linear_weights_bytes"] + it["embedding_table_bytes"]
                                  + it["lm_head_bytes"] + it["norms_and_biases_bytes"])
    # 16-bit embedding table and LM head: vocab x hidden x 2 bytes each
    assert it["embedding_table_bytes"] == it["lm_head_bytes"] == 128256 * 16384 * 2


def test_text_report_says_what_limits(capsys):
    assert main(["run", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "fewest on which it fits: 6" in out
    assert "177.56 GB" in out  # the envelope, with what it leaves out listed below it
    assert "runtime reserve" in out


def test_markdown_report(capsys):
    assert main(["run", "examples/llama-3.1-8b-bf16-wse3.yaml", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# wsesim: llama-3.1-8b-bf16-wse3")
    assert "| **total** |" in out and "**Fits**" in out


def test_models_and_profiles_are_listed(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "405,853,388,800" in out and "qwen2-72b" in out
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "wse2" in out and "wse3" in out and "1170 x 755" in out
    assert main(["formats"]) == 0
    assert "w3.5-g128" in capsys.readouterr().out


def test_unwritable_output_is_one_line(tmp_path, capsys):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    assert main(["run", "examples/llama-3.1-8b-bf16-wse3.yaml", "--format", "json",
                 "--plots", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {taken}")


def test_console_script_entry_point_is_declared():
    from pathlib import Path

    import tomllib
    data = tomllib.loads(Path("pyproject.toml").read_text())
    assert data["project"]["scripts"]["wsesim"] == "wsesim.cli:main"


def test_envelope_plus_what_it_leaves_out_is_the_total():
    from wsesim.report import envelope_gaps
    from wsesim.run import simulate
    from wsesim.specs import load_deployment
    r = simulate(load_deployment("examples/llama-3.1-405b-w3.5-5x-wse3-proposal.yaml"))
    # under its own accounting the proposal fits on its five wafers, and no fewer
    assert r.memory.fits and r.min_wafers == 5
    # the envelope is the proposal's 177 GB: parameters x 3.5 / 8
    assert r.memory.naive_weights_bytes == 405_853_388_800 * 7 // 16
    assert r.memory.naive_weights_bytes + sum(v for _, v in envelope_gaps(r)) == \
        r.memory.total_bytes
    # the proposal's accounting stores no scales or zeros
    (label, metadata), *_ = envelope_gaps(r)
    assert "scales + zeros" in label and metadata == 0


# ---- the version every answer names ----------------------------------------------------

def test_version_flag_prints_the_package_version():
    import wsesim
    proc = subprocess.run([sys.executable, "-m", "wsesim", "--version"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == f"wsesim {wsesim.__version__}\n"


def test_every_json_answer_names_the_version(report_405b, capsys, monkeypatch):
    import wsesim
    assert report_405b["wsesim_version"] == wsesim.__version__
    # fabric-check, with its default hardware: the wse3 everything else uses
    assert main(["fabric-check", "gemv", "--grid", "4", "4", "--elements", "16",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wsesim_version"] == wsesim.__version__ and out["hardware"] == "wse3"
    # validate: a list of rows, one per case (the contract), each naming the version
    _fake_cases(monkeypatch)
    assert main(["validate", "waferllm-decode-p420", "waferllm-decode-p540", "--format",
                 "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 2
    assert all(r["wsesim_version"] == wsesim.__version__ for r in rows)


def test_fabric_check_defaults_to_wse3_as_everything_else():
    import inspect

    from wsesim.cli import build_parser
    from wsesim.fabric_check import check
    args = build_parser().parse_args(["fabric-check", "gemv", "--grid", "4", "4",
                                      "--elements", "8"])
    assert args.hardware == "wse3"
    assert inspect.signature(check).parameters["hardware"].default == "wse3"


def _fake_cases(monkeypatch, off: bool = False):
    """``validate`` without simulating: each case predicted 1% (or 50%) above its
    measurement."""
    import wsesim.validate as v

    def fake(case, loo=None):
        err = 0.5 if off else 0.01
        return v.CaseResult(case.spec.name, case.spec.metric, case.spec.measured,
                            case.spec.measured * (1 + err), err, case.spec.tolerance,
                            case.spec.source, case.hardware.name)
    monkeypatch.setattr(v, "run_case", fake)


HOSTILE_CASE = "[/oops] llama [v2] :smile:\nerror: forged\x1b[31m"


@pytest.mark.parametrize("off", [False, True])
def test_validate_table_prints_case_names_and_sources_literally(tmp_path, capsys,
                                                                monkeypatch, off):
    import yaml

    from wsesim.literal import printable
    case = yaml.safe_load(open("validation/waferllm-decode-p420.yaml"))
    case["name"] = HOSTILE_CASE
    case["source"] = "a [b]source[/b] \x1b[2J"
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(case))
    _fake_cases(monkeypatch, off)
    assert main(["validate", str(path)]) == (1 if off else 0)
    captured = capsys.readouterr()
    out = captured.out
    assert printable(HOSTILE_CASE) in out
    assert printable(f"{HOSTILE_CASE}: a [b]source[/b] \x1b[2J") in out
    assert "\x1b" not in out and "\x1b" not in captured.err
    assert not [line for line in out.splitlines() if line.startswith("error:")]
    assert captured.err.count("\n") == (1 if off else 0)


# ---- a reader that goes away ---------------------------------------------------------

def _sweep_file(tmp_path):
    from conftest import tiny_hardware, tiny_model
    spec = {"name": "pipe", "base": {"name": "pipe", "model": tiny_model(),
                                     "hardware": tiny_hardware(8, 8), "wafers": 1,
                                     "quantization": "int4-g128",
                                     "workload": {"prompt_tokens": 16, "output_tokens": 8}},
            "grid": {"wafers": [1]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(spec))
    return str(path)


BROKEN_PIPE_EXIT = 141   # 128 + SIGPIPE, as a shell reports a process the signal ended


@pytest.mark.parametrize("command", [
    ["models"], ["--version"], ["run", "examples/llama-3.1-8b-bf16-wse3.yaml"],
    ["validate", "waferllm-decode-p420", "--format", "json"],
    ["fabric-check", "gemv", "--grid", "4", "4", "--elements", "16"],
    ["sweep", "SWEEP", "--workers", "1", "--out", "OUT"],
])
def test_a_closed_stdout_ends_quietly(command, tmp_path):
    """``wsesim ... | head -1``: the reader is gone before wsesim writes (a pipe whose
    read end is closed), and wsesim stops without a word on stderr."""
    import os
    command = [_sweep_file(tmp_path) if c == "SWEEP" else str(tmp_path / "out")
               if c == "OUT" else c for c in command]
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "wsesim", *command], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode in (0, BROKEN_PIPE_EXIT)   # argparse's --version exits itself
    if command != ["--version"]:
        assert proc.returncode == BROKEN_PIPE_EXIT


def test_an_unwritable_path_with_a_newline_stays_one_line(tmp_path, capsys):
    taken = tmp_path / "a\nerror: forged"
    taken.write_text("not a folder")
    assert main(["run", "examples/llama-3.1-8b-bf16-wse3.yaml", "--format", "json",
                 "--plots", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "a\\nerror: forged" in err


@pytest.mark.parametrize("argv,shown", [
    (["run", "f.yaml", "\x1b]0;evil\x07"], "\\x1b]0;evil\\x07"),   # a terminal title, a bell
    (["models", "\u202eevil"], "\\u202eevil"),                     # right-to-left override
    (["run", "f.yaml", "a\tb"], "a\\tb"),
])
def test_an_argument_error_prints_no_control_character(capsys, argv, shown):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err[:-1].isprintable(), repr(err)
    assert err.startswith(f"error: {argv[0]}: arguments: unrecognized arguments: {shown}")


@pytest.mark.parametrize("argv", [["fabric-check"], ["fabric-check", "allreduce"],
                                  ["fabric-check", "allreduce", "--grid", "8"]])
def test_a_fabric_check_argument_error_is_returned_as_every_command_s(capsys, argv):
    assert main(argv) == 2   # not SystemExit: main returns its code, as for run or sweep
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: fabric-check: arguments: ")
