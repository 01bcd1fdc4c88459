"""Sweeps: one row per point (grid and zip), the bits rule, resume without recomputing,
a failing point recorded while the sweep goes on, the same rows serially, in processes
and on a Dask cluster, well-formed CSV, charts, and one-line errors for bad files."""
from __future__ import annotations

import csv
import importlib
import itertools
import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_model
from sweep_helpers import toy_base as base

from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.quant import QuantFormat
from wsesim.run import simulate
from wsesim.specs import deployment_from_mapping
from wsesim.sweeps import (
    apply_point,
    format_with_bits,
    load_sweep,
    point_key,
    rows_to_dataframe,
    run_sweep,
)

EXECUTORS = importlib.import_module("wsesim.sweeps.executors")  # run_point, execute


def spec(**over):
    s = {"name": "t", "base": base(),
         "grid": {"wafers": [1, 2], "quantization.weights.bits": [16, 4]},
         "zip": {"workload.prompt_tokens": [16, 32],
                 "workload.context_length": [64, 128]}}
    s.update(over)
    return s


def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


@pytest.fixture(scope="module")
def serial_rows():
    return run_sweep(spec()).rows


def test_one_row_per_point_of_the_grid_and_zip(serial_rows):
    expected = [{"wafers": w, "quantization.weights.bits": b,
                 "workload.prompt_tokens": p, "workload.context_length": c}
                for w, b, (p, c) in itertools.product([1, 2], [16, 4],
                                                      [(16, 64), (32, 128)])]
    assert [json.loads(r["point"]) for r in serial_rows] == \
        [json.loads(point_key(e)) for e in expected]
    for row, params in zip(serial_rows, expected):
        assert {k: row[k] for k in params} == params
        assert row["error"] == ""
    # the overrides reached the simulation
    by = {(r["wafers"], r["quantization.weights.bits"], r["workload.context_length"]): r
          for r in serial_rows}
    assert by[(1, 4, 64)]["weights_bytes"] < by[(1, 16, 64)]["weights_bytes"]
    assert by[(1, 4, 128)]["kv_cache_bytes"] == 2 * by[(1, 4, 64)]["kv_cache_bytes"]


def test_rows_carry_the_contract_numbers_and_performance(serial_rows):
    row = serial_rows[0]
    for key in ("name", "fits", "min_wafers", "wafers", "weights_bytes",
                "quant_metadata_bytes", "kv_cache_bytes", "activation_bytes",
                "runtime_reserved_bytes", "total_bytes", "capacity_bytes", "pe_sram_bytes",
                "max_pe_bytes", "tokens_per_s", "time_per_output_token_s", "error"):
        assert key in row, key
    assert not any(isinstance(v, (list, dict)) for v in row.values())  # flat
    # the shared fewest-wafers search gives what simulate() itself finds
    point = json.loads(row["point"])
    dep = deployment_from_mapping(apply_point(base(), point), "<test>")
    result = simulate(dep, with_performance=False)
    assert row["min_wafers"] == result.min_wafers
    assert row["max_pe_bytes"] == result.memory.max_pe_bytes


def test_bits_rule():
    assert format_with_bits("w3.5-g128", 16) == {"bits": 16, "float16": "fp16"}
    assert format_with_bits("bf16", 32) == {"bits": 32, "float16": "bf16"}
    eight = format_with_bits("w3.5-byte-g128", 8)
    assert eight["group_size"] == 128 and eight["scale_bits"] == 16
    assert eight["zero_bits"] == 16 and "packing" not in eight  # byte packing: 4/3.5 only
    assert format_with_bits("w3.5-byte-g128", 4)["packing"] == "byte"
    assert format_with_bits({"preset": "int4", "zero_bits": 8}, 3.5)["zero_bits"] == 8
    assert format_with_bits("int4", 8)["group_size"] is None  # per-channel stays
    from_float = format_with_bits("bf16", 4)
    assert (from_float["group_size"], from_float["scale_bits"],
            from_float["zero_bits"]) == (128, 16, 16)
    assert format_with_bits(None, 3.5)["group_size"] == 128
    for fmt in (eight, from_float, format_with_bits("w3.5-g128", 16)):
        QuantFormat(**fmt)  # every result is a valid format
    # a bare preset is expanded; a later key on the same format applies after the bits
    data = apply_point({"quantization": "w3.5-g128"},
                       {"quantization.weights.group_size": 64,
                        "quantization.weights.bits": 4})
    assert data["quantization"]["weights"]["bits"] == 4
    assert data["quantization"]["weights"]["group_size"] == 64


def test_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    s = spec(grid={"wafers": [9, 1, 2]}, zip=None)
    del s["zip"]
    outcome = run_sweep(s, tmp_path)
    rows = outcome.rows
    assert len(rows) == 3
    assert rows[0]["error"].startswith("wafers: 9 is more than the 4 units")
    assert rows[0]["wafers"] == 9 and rows[0]["fits"] is None
    assert all(r["error"] == "" and r["fits"] is not None for r in rows[1:])
    assert outcome.reasons == {rows[0]["error"]: 1}
    text = outcome.summary()
    assert "1 failed" in text and "1 x wafers: 9" in text
    # the CSV written from a failed first row still ends with every column
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.reader(f))
    header = table[0]
    assert "tokens_per_s" in header and header[-2:] == ["error", "point"]
    assert len(table) == 4 and all(len(r) == len(header) for r in table)
    # a format the bits rule cannot make valid fails as a point too
    bad = spec(grid={"quantization.weights.group_size": [96, 128]}, zip=None)
    del bad["zip"]
    bad["base"]["quantization"]["weights"] = "w3.5-g128"
    rows = run_sweep(bad).rows
    assert "group_size" in rows[0]["error"] and rows[1]["error"] == ""


def test_resume_skips_points_already_present(tmp_path, monkeypatch):
    first = run_sweep(spec(), tmp_path)
    assert first.ran == 8 and first.skipped == 0
    jsonl = tmp_path / "results.jsonl"
    lines = jsonl.read_text().splitlines(keepends=True)
    # interrupted: two rows lost, the last one cut in the middle of its line
    jsonl.write_text("".join(lines[:5]) + lines[5][:40])
    calls = []
    real = EXECUTORS.run_point

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(EXECUTORS, "run_point", counting)
    again = run_sweep(spec(), tmp_path)
    assert again.skipped == 5 and again.ran == 3 and len(calls) == 3
    assert {point_key(c) for c in calls} == {r["point"] for r in first.rows[5:]}
    assert canonical(again.rows) == canonical(first.rows)
    assert len(jsonl.read_text().splitlines()) == 8
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.reader(f))
    assert len(table) == 9 and all(len(r) == len(table[0]) for r in table)
    # a third run computes nothing
    calls.clear()
    third = run_sweep(spec(), tmp_path)
    assert third.ran == 0 and third.skipped == 8 and not calls


def test_same_rows_serially_in_processes_and_on_dask(serial_rows):
    in_processes = run_sweep(spec(), workers=2).rows
    assert canonical(in_processes) == canonical(serial_rows)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp", dashboard_address=None) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        on_dask = run_sweep(spec(), executor=f"dask://{address}").rows
        assert canonical(on_dask) == canonical(serial_rows)
        with distributed.Client(cluster) as client:
            with_client = run_sweep(spec(), executor=client).rows
        assert canonical(with_client) == canonical(serial_rows)


def test_cli_sweep_writes_results_and_charts(tmp_path, capsys):
    s = spec()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(s))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "8 points; 8 run" in text and "0 failed" in text
    assert len((out / "results.jsonl").read_text().splitlines()) == 8
    names = {p.name for p in out.glob("*.png")}
    assert names == {"tokens-per-s-vs-wafers.png", "bytes-per-wafer-vs-wafers.png",
                     "min-wafers-vs-context-length.png"}
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert "0 run" in capsys.readouterr().out and \
        len((out / "results.jsonl").read_text().splitlines()) == 8


def test_example_sweep_files_are_valid(root):
    big = load_sweep(root / "examples" / "sweep-wafers-bits.yaml")
    assert len(big.points()) == 3 * 4 * 8
    small = run_sweep(root / "examples" / "sweep-small.yaml", charts=False)
    assert len(small.rows) == 18 and not small.failed_rows


BAD = [
    ({"base": base(), "grid": {"wafers": [1]}, "gird": {}}, "gird",
     "unknown key (did you mean 'grid'?)"),
    ({"grid": {"wafers": [1]}}, "base", "required key is missing"),
    ({"base": "missing.yaml", "grid": {"wafers": [1]}}, "base", "no deployment file"),
    ({"base": base(), "grid": {"wafers": 3}}, "grid.wafers", "non-empty list"),
    ({"base": base(), "grid": {"wafers": []}}, "grid.wafers", "non-empty list"),
    ({"base": base(), "grid": {"wafers": [1, 1]}}, "grid.wafers", "appears twice"),
    ({"base": base(), "grid": {"workload.context_lenght": [1]}},
     "grid.workload.context_lenght", "did you mean 'context_length'"),
    ({"base": base(), "grid": {"wafers.count": [1]}}, "grid.wafers.count",
     "takes a value, not keys"),
    ({"base": base(), "zip": {"wafers": [1, 2], "workload.context_length": [64]}},
     "zip.workload.context_length", "equal length"),
    ({"base": base()}, "grid", "nothing to sweep"),
    ({"base": base(), "grid": {"wafers": [1]}, "zip": {"wafers": [2]}}, "zip.wafers",
     "varied twice"),
    ({"base": base(), "grid": {"wafers": [1]}, "performance": "yes"}, "performance",
     "true or false"),
    ({"base": {**base(), "workloadd": {}}, "grid": {"wafers": [1, 2]}}, "workloadd",
     "unknown key (did you mean 'workload'?)"),
]


@pytest.mark.parametrize("data,key,message", BAD, ids=[b[1] for b in BAD])
def test_bad_sweep_files_give_one_line(tmp_path, capsys, data, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path}: {key}: "), err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_malformed_yaml_and_bad_executor(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_text("base: [unclosed\n")
    assert main(["sweep", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: (top level): malformed YAML")
    path.write_text(yaml.safe_dump(spec()))
    out = tmp_path / "never"
    assert main(["sweep", str(path), "--executor", "tcp://x:1", "--out", str(out)]) == 2
    assert "--executor: expected dask://HOST:PORT" in capsys.readouterr().err
    assert not out.exists()  # checked before anything is written
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    with pytest.raises(SpecError, match="distributed extra"):
        run_sweep(spec(), executor="dask://127.0.0.1:1")


@pytest.mark.parametrize("workers", ["0", "-3", "2.5", "x", "10000000", "9" * 5000])
def test_workers_must_be_a_bounded_whole_number(tmp_path, capsys, workers):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec()))
    assert main(["sweep", str(path), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: sweep: arguments: ")
    assert "expected a whole number from 1 to" in err


def test_rows_to_dataframe(serial_rows):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            rows_to_dataframe(serial_rows)
    else:
        df = rows_to_dataframe(serial_rows)
        assert len(df) == len(serial_rows) and "tokens_per_s" in df.columns


def test_base_file_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "toy.yaml").write_text(yaml.safe_dump(base(name="from-file")))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(
        {"base": "deps/toy.yaml", "grid": {"wafers": [1, 2]}}))
    s = load_sweep(tmp_path / "s.yaml")
    assert s.name == "s" and s.base["name"] == "from-file"
    rows = run_sweep(s).rows
    assert [r["name"] for r in rows] == ["from-file", "from-file"]
    assert Path(s.base_source) == tmp_path / "deps" / "toy.yaml"


def test_model_swept_by_name_and_key_inside_it(root):
    s = {"base": base(model="llama-3.1-8b", hardware="wse3",
                      mapping={"strategy": "pipeline", "grid": [32, 32]}),
         "grid": {"model.num_hidden_layers": [1, 2]}, "performance": False}
    rows = run_sweep(s).rows
    assert [r["error"] for r in rows] == ["", ""]
    assert rows[1]["parameters"] > rows[0]["parameters"]


def test_workers_failing_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    from wsesim.errors import SweepInterrupted

    def dead(*args, **kwargs):
        raise SweepInterrupted("the sweep's workers failed (BrokenProcessPool)")
        yield  # pragma: no cover

    monkeypatch.setattr(EXECUTORS, "execute", dead)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec()))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workers failed" in err


def test_an_unknown_key_inside_a_swept_value_is_that_rows_error_not_the_sweeps():
    good = tiny_model()
    bad = {**tiny_model(), "vocab_sizee": 3}
    rows = run_sweep({"base": base(), "grid": {"model": [bad, good]},
                      "performance": False}).rows
    assert "unknown key" in rows[0]["error"] and "vocab_sizee" in rows[0]["error"]
    assert rows[1]["error"] == ""


def test_a_swept_mapping_with_keys_that_are_not_text_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": base(),
                                    "grid": {"model": [{1: "x", "a": 2}]}}))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keys of a mapping must be text" in err


def test_the_summary_escapes_a_sweep_name_with_control_characters():
    outcome = run_sweep({"name": "a\x1b[2Jb", "base": base(), "grid": {"wafers": [1]},
                         "performance": False})
    assert "\x1b" not in outcome.summary() and "a\\x1b[2Jb" in outcome.summary()
