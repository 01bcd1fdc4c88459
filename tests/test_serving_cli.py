"""wsesim serve: the command, its JSON contract, arrivals files, trace, plots, sweeps, and
bad input as one located line (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from wsesim.cli import main
from wsesim.serving.arrivals import MAX_ARRIVALS_FILE_BYTES
from wsesim.specs.serving import MAX_PASSES, MAX_REQUESTS

TINY = """\
name: tiny-serve
model: {name: toy, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2,
        num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000}
hardware: wse3
wafers: 1
quantization: {weights: int4-g128, embeddings: bf16}
workload: {batch_size: 1, prompt_tokens: 100, output_tokens: 12}
mapping: {strategy: pipeline, grid: [32, 32]}
"""
SERVING = """\
serving:
  rate_per_s: 2000
  requests: 60
  seed: 4
  slo_ttft_s: 0.01
  slo_tpot_s: 0.001
  price_per_system_hour: 40
"""
CONTRACT = {"requests", "completed", "rate_per_s", "duration_s", "throughput_tokens_per_s",
            "request_throughput_per_s", "ttft_s", "tpot_s", "itl_s", "e2e_s",
            "goodput_requests_per_s", "slo_attainment", "mean_concurrent",
            "max_concurrent", "energy_j_per_output_token",
            "cost_per_million_output_tokens"}


def write(tmp_path: Path, text: str, name: str = "dep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def serve_json(capsys, *argv: str) -> dict:
    assert main(["serve", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---- the answer ----------------------------------------------------------------------------

def test_json_has_the_contract_keys_and_the_version(tmp_path, capsys):
    import wsesim
    doc = serve_json(capsys, str(write(tmp_path, TINY + SERVING)))
    assert doc["wsesim_version"] == wsesim.__version__
    s = doc["serving"]
    assert CONTRACT <= set(s)
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(s[key]) == {"mean", "p50", "p90", "p99"}
        assert s[key]["p50"] <= s[key]["p90"] <= s[key]["p99"]
    assert s["requests"] == s["completed"] == 60 and s["rate_per_s"] == 2000
    assert s["throughput_tokens_per_s"] == pytest.approx(60 * 12 / s["duration_s"])
    assert s["cost_per_million_output_tokens"] == pytest.approx(
        40 * s["duration_s"] / 3600 / (60 * 12) * 1e6)
    assert s["energy_j_per_output_token"] == pytest.approx(
        23_000 * s["duration_s"] / (60 * 12))      # wse3: 23 kW, one wafer
    assert "capacity_requests_per_s" not in doc


def test_the_command_line_wins_over_the_file(tmp_path, capsys):
    path = write(tmp_path, TINY + SERVING)
    doc = serve_json(capsys, str(path), "--rate", "500", "--requests", "30", "--seed", "9",
                     "--arrivals", "constant", "--slo-tpot", "1")
    s = doc["serving"]
    assert s["rate_per_s"] == 500 and s["requests"] == 30 and s["slo_tpot_s"] == 1
    assert s["arrivals"] == "constant, seed 9"


def test_a_deployment_without_a_serving_section_serves_with_flags(tmp_path, capsys):
    doc = serve_json(capsys, str(write(tmp_path, TINY)), "--rate", "100", "--requests", "5")
    assert doc["serving"]["completed"] == 5


def test_capacity_in_json_and_text(tmp_path, capsys):
    path = write(tmp_path, TINY + SERVING)
    doc = serve_json(capsys, str(path), "--capacity", "--requests", "40")
    cap = doc["capacity_requests_per_s"]
    assert cap is not None and cap > 0
    assert doc["serving"]["capacity_requests_per_s"] == cap
    assert doc["serving"]["rate_per_s"] == pytest.approx(cap)
    assert any(p["meets"] for p in doc["capacity"]["points"])
    assert main(["serve", str(path), "--capacity", "--requests", "40"]) == 0
    out = capsys.readouterr().out
    assert "capacity" in out and "requests/s" in out and "Rates tried" in out


def test_text_report_has_units(tmp_path, capsys):
    assert main(["serve", str(write(tmp_path, TINY + SERVING))]) == 0
    out = capsys.readouterr().out
    for words in ("time to first token", "ms", "output tokens/s", "KV cache",
                  "energy per output token", " J", "assumptions"):
        assert words in out


def test_trace_is_chrome_json_and_bounded(tmp_path, capsys):
    from wsesim.serving.engine import TRACE_MICRO_BATCHES, TRACE_REQUESTS
    path = write(tmp_path, TINY + SERVING)
    trace = tmp_path / "out" / "serve.json"
    assert main(["serve", str(path), "--requests", "2000", "--trace", str(trace)]) == 0
    capsys.readouterr()
    doc = json.loads(trace.read_text())
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    requests = {e["tid"] for e in spans if e["cat"] == "request"}
    assert requests and len(requests) <= TRACE_REQUESTS
    elements = sum(1 for e in doc["traceEvents"] if e["name"] == "thread_name")
    visits = [e for e in spans if e["cat"] != "request"]
    assert 0 < len(visits) <= TRACE_MICRO_BATCHES * elements
    assert len(spans) - len(visits) <= 3 * TRACE_REQUESTS
    assert all(e["dur"] >= 0 for e in spans)


def test_plots_are_written(tmp_path, capsys):
    path = write(tmp_path, TINY + SERVING)
    out = tmp_path / "plots"
    assert main(["serve", str(path), "--capacity", "--requests", "30", "--plots",
                 str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny-serve-serving-concurrency.png", "tiny-serve-serving-kv-occupancy.png",
                     "tiny-serve-serving-latency-vs-rate.png"]


# ---- arrivals files ---------------------------------------------------------------------

def test_csv_and_jsonl_arrivals_are_replayed(tmp_path, capsys):
    rows = [(0.0, 50, 3), (0.002, 80, 5), (0.001, 20, 1)]
    csv = tmp_path / "a.csv"
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n"
                   + "".join(f"{t},{p},{o}\n" for t, p, o in rows))
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"arrival_s": t, "prompt_tokens": p,
                                         "output_tokens": o}) + "\n" for t, p, o in rows))
    path = write(tmp_path, TINY)
    docs = [serve_json(capsys, str(path), "--arrivals-file", str(f)) for f in (csv, jsonl)]
    for doc, f in zip(docs, (csv, jsonl)):
        assert doc["serving"].pop("arrivals") == f"file {f.name}"
    assert docs[0]["serving"] == docs[1]["serving"]
    s = docs[0]["serving"]
    assert s["completed"] == 3 and s["output_tokens"] == 9 and s["prompt_tokens"] == 150
    assert s["rate_per_s"] == pytest.approx(2 / 0.002)   # the file's own rate
    faster = serve_json(capsys, str(path), "--arrivals-file", str(csv), "--rate", "4000")
    assert faster["serving"]["rate_per_s"] == 4000


def test_arrivals_file_in_yaml_is_relative_to_the_deployment(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,2\n")
    path = write(tmp_path, TINY + "serving: {arrivals_file: sub/a.csv}\n")
    assert serve_json(capsys, str(path))["serving"]["completed"] == 1


BAD_FILES = [
    ("a.csv", "", "(top level)", "empty file"),
    ("a.csv", "arrival_s,prompt_tokens\n0,1\n", "line 1.output_tokens", "missing"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens,x\n0,1,1,1\n", "line 1.x", "unknown"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,1\n-1,2,2\n",
     "line 3.arrival_s", "negative"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,0,1\n", "line 2.prompt_tokens",
     "whole number of tokens"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1.5,1\n", "line 2.prompt_tokens",
     "whole number"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\nnan,1,1\n", "line 2.arrival_s",
     "finite"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,abc,1\n", "line 2.prompt_tokens",
     "expected a number"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1\n", "line 2", "values for"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,999999999\n",
     "line 2.output_tokens", "from 1 to 32,768"),
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,100000\n",
     "line 2.output_tokens", "from 1 to 32,768"),   # the workload's bound
    ("a.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n{oops\n',
     "line 2", "malformed JSON"),
    ("a.jsonl", "[1, 2, 3]\n", "line 1", "JSON object"),
    ("a.jsonl", '{"arrival_s": true, "prompt_tokens": 1, "output_tokens": 1}\n',
     "line 1.arrival_s", "expected a number"),
    ("a.txt", "arrival_s,prompt_tokens,output_tokens\n", "(top level)", ".csv or .jsonl"),
    # whole numbers too large for a float (OverflowError tracebacks before)
    ("a.csv", "arrival_s,prompt_tokens,output_tokens\n0,1" + "0" * 400 + ",1\n",
     "line 2.prompt_tokens", "finite"),
    ("a.jsonl", '{"arrival_s": 1' + "0" * 400 + ', "prompt_tokens": 1, "output_tokens": 1}\n',
     "line 1.arrival_s", "finite"),
    ("a.jsonl", '{"arrival_s": 0, "prompt_tokens": 1' + "0" * 400 + ', "output_tokens": 1}\n',
     "line 1.prompt_tokens", "finite"),
]


@pytest.mark.parametrize("name,text,key,words", BAD_FILES,
                         ids=[f"{k}-{w}" for _, _, k, w in BAD_FILES])
def test_a_malformed_arrivals_file_is_one_located_line(tmp_path, capsys, name, text, key,
                                                         words):
    bad = tmp_path / name
    bad.write_text(text)
    line = one_line(capsys, ["serve", str(write(tmp_path, TINY)), "--arrivals-file",
                             str(bad)])
    assert line.startswith(f"error: {bad}: {key}: "), line
    assert words in line, line


def test_too_many_rows_or_bytes_are_refused_quickly(tmp_path, capsys):
    big = tmp_path / "big.csv"
    big.write_text("arrival_s,prompt_tokens,output_tokens\n" + "0,1,1\n" * (MAX_REQUESTS + 1))
    line = one_line(capsys, ["serve", str(write(tmp_path, TINY)), "--arrivals-file",
                             str(big)])
    assert f"more than {MAX_REQUESTS:,} requests" in line
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f:
        f.truncate(MAX_ARRIVALS_FILE_BYTES + 1)
    line = one_line(capsys, ["serve", str(write(tmp_path, TINY)), "--arrivals-file",
                             str(huge)])
    assert line.startswith(f"error: {huge}: (top level): ") and "bytes" in line


def test_more_requests_than_the_file_lists(tmp_path, capsys):
    f = tmp_path / "a.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n")
    path = write(tmp_path, TINY)
    line = one_line(capsys, ["serve", str(path), "--arrivals-file", str(f), "--requests", "5"])
    assert line.startswith(f"error: {path}: serving.requests: ") and "lists 1" in line


def test_missing_arrivals_file(tmp_path, capsys):
    path = write(tmp_path, TINY + "serving: {arrivals_file: nowhere.csv}\n")
    line = one_line(capsys, ["serve", str(path)])
    assert line.startswith(f"error: {path}: serving.arrivals_file: no such file")


# ---- bad serving input ------------------------------------------------------------------

BAD_SERVING = [
    ("{rate_per_s: -1}", "serving.rate_per_s", "greater than 0"),
    ("{rate_per_s: abc}", "serving.rate_per_s", "expected a number"),
    ("{rate_per_s: .inf}", "serving.rate_per_s", "finite"),
    ("{rate_per_s: true}", "serving.rate_per_s", "expected a number"),
    ("{rate_per_s: 1.0e+9}", "serving.rate_per_s", "at most 1,000,000 requests/s"),
    ("{rate_per_s: 1" + "0" * 400 + "}", "serving.rate_per_s", "valid number"),
    ("{rate_per_s: 1.0e-300}", "serving.rate_per_s", "at least 0.001 requests/s"),
    ('{rate_per_s: "12"}', "serving.rate_per_s", "not the text '12'"),
    ("{rate: 1}", "serving.rate", "unknown key"),
    ("{rate_per_s: 1, requests: 0}", "serving.requests", "greater than 0"),
    ("{rate_per_s: 1, requests: 1000000}", "serving.requests", "at most 100,000 requests"),
    ("{rate_per_s: 1, requests: 2.5}", "serving.requests", "fractional part"),
    ("{rate_per_s: 1, requests: 1" + "0" * 400 + "}", "serving.requests",
     "at most 100,000 requests"),
    ("{rate_per_s: 1, arrivals: burst}", "serving.arrivals", "poisson"),
    ("{rate_per_s: 1, arrivals: gamma}", "serving.cv", "required with arrivals: gamma"),
    ("{rate_per_s: 1, cv: 2}", "serving.cv", "only applies to arrivals: gamma"),
    ("{rate_per_s: 1, arrivals: gamma, cv: 0}", "serving.cv", "greater than 0"),
    ("{rate_per_s: 1, arrivals: gamma, cv: 1.0e-300}", "serving.cv",
     "at least 0.001 (a bound of wsesim: below it the gaps are equal to within 0.1%"),
    ("{rate_per_s: 1, arrivals: gamma, cv: 1" + "0" * 400 + "}", "serving.cv",
     "valid number"),
    ("{rate_per_s: 1, seed: -1}", "serving.seed", "greater than or equal to 0"),
    ("{rate_per_s: 1, seed: true}", "serving.seed", "not a boolean"),
    ("{rate_per_s: 1, slo_tpot_s: -0.1}", "serving.slo_tpot_s", "greater than 0"),
    ("{rate_per_s: 1, slo_ttft_s: 0}", "serving.slo_ttft_s", "greater than 0"),
    ("{rate_per_s: 1, max_stage_batch: 0}", "serving.max_stage_batch", "greater than"),
    ("{rate_per_s: 1, max_stage_batch: 100000}", "serving.max_stage_batch",
     "at most 512 sequences"),
    ("{rate_per_s: 1, prefill_chunk_tokens: 0}", "serving.prefill_chunk_tokens",
     "greater than"),
    ("{rate_per_s: 1, kv_window_tokens: 0}", "serving.kv_window_tokens", "greater than"),
    ("{rate_per_s: 1, price_per_system_hour: -5}", "serving.price_per_system_hour",
     "greater than or equal to 0"),
    ("{rate_per_s: 1, prompt_tokens: 0}", "serving.prompt_tokens", "greater than"),
    # the workload's bounds, and its words
    ("{rate_per_s: 1, output_tokens: 100000}", "serving.output_tokens",
     "must be at most 32,768 tokens (a bound of wsesim)"),
    ("{rate_per_s: 1, prompt_tokens: 2000000}", "serving.prompt_tokens",
     "must be at most 1,048,576 tokens (a bound of wsesim)"),
    ("{rate_per_s: 1, output_tokens: {mean: 100, sigma: 1, max: 100000}}",
     "serving.output_tokens.max", "must be at most 32,768 tokens"),
    ("{rate_per_s: 1, output_tokens: {mean: 40000, sigma: 1}}",
     "serving.output_tokens.mean", "must be at most 32,768 tokens"),
    ("{rate_per_s: 1, prompt_tokens: {mean: 100, sigma: 9}}", "serving.prompt_tokens.sigma",
     "at most 4"),
    ("{rate_per_s: 1, output_tokens: {mean: 100, sigma: 1, max: 50}}",
     "serving.output_tokens", "outside"),
    ("{rate_per_s: 1, output_tokens: {mean: 100, sigma: 1, shape: 2}}",
     "serving.output_tokens.shape", "unknown key"),
    ("{arrivals_file: a.csv, prompt_tokens: 10}", "serving.prompt_tokens", "arrivals file"),
    ("{requests: 10}", "serving.rate_per_s", "required"),
    ("[1, 2]", "serving", "mapping"),
]


@pytest.mark.parametrize("serving,key,words", BAD_SERVING,
                         ids=[f"{k}-{w}" for _, k, w in BAD_SERVING])
def test_bad_serving_input_is_one_located_line(tmp_path, capsys, serving, key, words):
    path = write(tmp_path, TINY + f"serving: {serving}\n")
    line = one_line(capsys, ["serve", str(path)])
    assert line.startswith(f"error: {path}: {key}: "), line
    assert words in line, line


@pytest.mark.parametrize("flag,value,key", [
    ("--rate", "-1", "serving.rate_per_s"), ("--rate", "abc", "serving.rate_per_s"),
    ("--requests", "0", "serving.requests"), ("--seed", "x", "serving.seed"),
    ("--slo-tpot", "-2", "serving.slo_tpot_s"), ("--slo-ttft", "nan", "serving.slo_ttft_s"),
    ("--rate", "1" + "0" * 400, "serving.rate_per_s"), ("--rate", "1e-300", "serving.rate_per_s")])
def test_a_bad_flag_names_its_key_and_itself(tmp_path, capsys, flag, value, key):
    path = write(tmp_path, TINY + SERVING)
    line = one_line(capsys, ["serve", str(path), flag, value])
    assert line.startswith(f"error: {path}: {key}: ") and f"(from {flag})" in line, line


def test_run_also_refuses_a_bad_serving_section(tmp_path, capsys):
    path = write(tmp_path, TINY + "serving: {rate_per_s: -3}\n")
    line = one_line(capsys, ["run", str(path)])
    assert line.startswith(f"error: {path}: serving.rate_per_s: ")


def test_too_much_work_is_refused_before_it_starts(tmp_path, capsys):
    import time
    path = write(tmp_path, TINY + "serving: {rate_per_s: 1, requests: 100000, "
                                  "output_tokens: 32768}\n")
    start = time.perf_counter()
    line = one_line(capsys, ["serve", str(path)])
    assert time.perf_counter() - start < 10
    assert line.startswith(f"error: {path}: serving.requests: ")
    assert f"{MAX_PASSES:,}" in line


def test_pe_fidelity_is_refused(tmp_path, capsys):
    path = write(tmp_path, TINY.replace("grid: [32, 32]}", "grid: [32, 32]}\n"
                                        "simulation: {fidelity: pe}") + SERVING)
    line = one_line(capsys, ["serve", str(path)])
    assert line.startswith(f"error: {path}: simulation.fidelity: ")


def test_subprocess_shows_no_traceback(tmp_path):
    path = write(tmp_path, TINY + "serving: {rate_per_s: -1}\n")
    proc = subprocess.run([sys.executable, "-m", "wsesim", "serve", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_requests_too_long_for_sram_are_rejected_not_waited_for(tmp_path, capsys):
    path = write(tmp_path, TINY + "serving: {rate_per_s: 100, requests: 20, "
                 "prompt_tokens: {mean: 20000, sigma: 1, max: 131072}}\n")
    doc = serve_json(capsys, str(path))
    s = doc["serving"]
    assert 0 < s["rejected"] < 20 and s["completed"] == 20 - s["rejected"]
    assert any("rejected" in n for n in doc["notes"])
    assert s["slo_attainment"] is None


# ---- sweeps -------------------------------------------------------------------------------

def test_a_sweep_with_a_serving_base_has_serving_columns(tmp_path):
    from wsesim.sweeps import run_sweep
    sweep = write(tmp_path, "name: s\nbase:\n" + textwrap.indent(TINY + SERVING, "  ")
                  + "grid: {serving.rate_per_s: [500, 4000]}\n", "sweep.yaml")
    rows = run_sweep(sweep, tmp_path / "out", workers=1).rows
    assert [r["error"] for r in rows] == ["", ""]
    assert [r["serving.rate_per_s"] for r in rows] == [500, 4000]
    for r in rows:
        assert r["serving.completed"] == 60 and r["serving.ttft_s.p99"] > 0
    assert rows[0]["serving.ttft_s.p99"] <= rows[1]["serving.ttft_s.p99"]
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert "serving.tpot_s.p99" in header


def test_a_sweep_without_serving_has_no_serving_columns(tmp_path):
    from wsesim.sweeps import run_sweep
    sweep = write(tmp_path, "name: s\nbase:\n" + textwrap.indent(TINY, "  ")
                  + "grid: {wafers: [1]}\n", "sweep.yaml")
    rows = run_sweep(sweep, tmp_path / "out", workers=1).rows
    assert not any(k.startswith("serving.") for k in rows[0])
    assert np.isfinite(rows[0]["tokens_per_s"])


def test_a_sweep_resumed_after_its_arrivals_file_changed_serves_the_new_requests(tmp_path):
    """A row is keyed by the arrivals file's contents, not its name: the same sweep run
    again after the file gained requests recomputes its point."""
    from wsesim.sweeps import run_sweep
    arrivals = tmp_path / "a.csv"
    arrivals.write_text("arrival_s,prompt_tokens,output_tokens\n0,16,8\n")
    serving = "serving: {arrivals_file: a.csv, slo_ttft_s: 1, slo_tpot_s: 1}\n"
    sweep = write(tmp_path, "name: s\nbase:\n" + textwrap.indent(TINY + serving, "  ")
                  + "grid: {wafers: [1]}\n", "sweep.yaml")
    first = run_sweep(sweep, tmp_path / "out", workers=1)
    assert first.rows[0]["serving.completed"] == 1
    arrivals.write_text("arrival_s,prompt_tokens,output_tokens\n0,16,8\n1,16,8\n2,16,8\n")
    again = run_sweep(sweep, tmp_path / "out", workers=1)
    assert again.ran == 1 and again.rows[0]["serving.completed"] == 3
