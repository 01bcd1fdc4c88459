"""The results folder a sweep resumes from: rows keyed by the fully resolved point
(stale rows recomputed and replaced, rows of another sweep refused), the version in
every row, one located line for a results.jsonl line that is not a row, and a lock
that keeps two sweeps out of one folder."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_hardware, tiny_model
from sweep_helpers import rows_in, start_slow, toy_base as base, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsesim
from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.specs import deployment_from_mapping
from wsesim.sweeps import apply_point, run_sweep


def spec(performance=False, **over):
    return {"name": "t", "base": base(**over), "performance": performance,
            "grid": {"wafers": [1, 2], "quantization.weights.bits": [16, 4]}}


def jsonl_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def csv_rows(out: Path) -> list[list[str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.reader(f))


def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def assert_one_row_per_point(out: Path, n: int) -> None:
    rows = jsonl_rows(out)
    assert len(rows) == n and len({r["point"] for r in rows}) == n
    table = csv_rows(out)
    assert len(table) == n + 1 and table[0][-2:] == ["error", "point"]
    assert sum(1 for r in table if r == table[0]) == 1   # one header
    assert sorted(r[-1] for r in table[1:]) == sorted(r["point"] for r in rows)


# ---------------------------------------------------------------- keys and resume
CHANGES = {
    "prompt length": {"workload": {"batch_size": 1, "prompt_tokens": 32,
                                   "output_tokens": 8}},
    "hardware": {"hardware": tiny_hardware(8, 8, reserve=8192)},
    "model shape": {"model": tiny_model(intermediate_size=1024)},
    "kv cache format": {"quantization": {"weights": "int4-g128", "embeddings": "bf16",
                                         "kv_cache": "int8"}},
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_base_is_recomputed_not_skipped(tmp_path, change):
    first = run_sweep(spec(), tmp_path, charts=False)
    assert first.ran == 4
    again = run_sweep(spec(**CHANGES[change]), tmp_path, charts=False)
    assert again.ran == 4 and again.skipped == 0 and again.recomputed == 4
    assert "4 saved rows recomputed" in again.summary()
    assert "resolved deployment differs" in again.summary()
    fresh = run_sweep(spec(**CHANGES[change]), charts=False)
    assert canonical(again.rows) == canonical(fresh.rows)
    assert canonical(jsonl_rows(tmp_path)) == canonical(fresh.rows)
    assert canonical(again.rows) != canonical(first.rows)
    assert_one_row_per_point(tmp_path, 4)
    # unchanged now: nothing runs
    third = run_sweep(spec(**CHANGES[change]), tmp_path, charts=False)
    assert third.ran == 0 and third.skipped == 4 and third.recomputed == 0


def test_a_changed_model_file_is_recomputed(tmp_path):
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump(tiny_model()))
    s = spec(model="model.yaml")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(s))
    out = tmp_path / "out"
    assert run_sweep(path, out, charts=False).ran == 4
    time.sleep(0.01)   # a new modification time for the loader's cache
    model.write_text(yaml.safe_dump(tiny_model(num_hidden_layers=3)))
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = run_sweep(path, out, charts=False)
    assert again.recomputed == 4 and again.ran == 4
    assert {r["parameters"] for r in again.rows} != {r["parameters"] for r in
                                                     run_sweep(spec(), charts=False).rows}
    assert_one_row_per_point(out, 4)


def test_performance_switch_is_part_of_the_key(tmp_path):
    run_sweep(spec(performance=False), tmp_path, charts=False)
    again = run_sweep(spec(performance=True), tmp_path, charts=False)
    assert again.recomputed == 4
    assert all(r.get("tokens_per_s") is not None for r in again.rows)


def test_rows_record_version_and_key_of_the_resolved_deployment(tmp_path):
    rows = run_sweep(spec(), tmp_path, charts=False).rows
    for row in rows:
        assert row["wsesim_version"] == wsesim.__version__
        # the key, computed by hand: the whole validated deployment, performance, version
        point = json.loads(row["point"])
        dep = deployment_from_mapping(apply_point(base(), point), "<sweep>")
        whole = {"deployment": dep.model_dump(mode="json"), "performance": False,
                 "wsesim_version": wsesim.__version__}
        text = json.dumps(whole, sort_keys=True, separators=(",", ":"), default=str)
        assert row["key"] == hashlib.sha256(text.encode()).hexdigest()
    assert len({r["key"] for r in rows}) == 4
    header = csv_rows(tmp_path)[0]
    assert header[-4:] == ["wsesim_version", "key", "error", "point"]


def test_invalid_points_are_keyed_by_their_mapping(tmp_path):
    s = spec()
    s["grid"]["wafers"] = [1, 9]   # 9 wafers: more than the 4 units
    first = run_sweep(s, tmp_path, charts=False)
    assert sum(1 for r in first.rows if r["error"]) == 2
    assert all(len(r["key"]) == 64 for r in first.rows)
    assert run_sweep(s, tmp_path, charts=False).ran == 0
    # the mapping changed: the failed points run again too
    changed = spec(workload={"batch_size": 2, "prompt_tokens": 16, "output_tokens": 8})
    changed["grid"]["wafers"] = [1, 9]
    assert run_sweep(changed, tmp_path, charts=False).recomputed == 4


def test_rows_of_an_older_wsesim_or_without_key_are_recomputed(tmp_path):
    run_sweep(spec(), tmp_path, charts=False)
    rows = jsonl_rows(tmp_path)
    rows[0]["wsesim_version"] = "0.1.0"   # its key hashed that version
    rows[0]["key"] = hashlib.sha256(b"made by 0.1.0").hexdigest()
    del rows[1]["key"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_sweep(spec(), tmp_path, charts=False)
    assert again.recomputed == 2 and again.ran == 2 and again.skipped == 2
    assert again.recompute_reasons == {
        f"saved by wsesim 0.1.0, this is {wsesim.__version__}": 1,
        "saved without a key (by an older wsesim)": 1}
    assert_one_row_per_point(tmp_path, 4)


def test_rows_of_another_sweep_are_refused_and_left_alone(tmp_path, capsys):
    run_sweep(spec(), tmp_path / "out", charts=False)
    jsonl = tmp_path / "out" / "results.jsonl"
    first = jsonl.read_bytes().splitlines(keepends=True)[0]
    with open(jsonl, "ab") as f:   # untidy too: a point twice, a last line cut short
        f.write(first + b'{"cut')
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    other = spec()
    other["grid"]["wafers"] = [1]          # the rows of wafers 2 are another sweep's
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(other))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'out'}: (top level): holds 2 rows of "
                          "another sweep")
    assert err.rstrip().endswith("use another --out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(st.sampled_from(["drop", "stale", "dup", "keep"]),
                        min_size=4, max_size=4))
def test_resume_always_ends_with_the_fresh_rows_once(tmp_path_factory, actions):
    """Whatever happened to the saved rows (lost, stale, written twice), a re-run ends
    with exactly the rows a fresh sweep gives, one per point, in both files."""
    out = tmp_path_factory.mktemp("resume")
    fresh = run_sweep(spec(), out, charts=False).rows
    lines = []
    for row, action in zip(jsonl_rows(out), actions):
        if action == "drop":
            continue
        if action == "stale":
            row = {**row, "key": "0" * 64, "weights_bytes": 1}
        lines.append(row)
        if action == "dup":
            lines.append(row)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    again = run_sweep(spec(), out, charts=False)
    assert canonical(again.rows) == canonical(fresh)
    assert again.ran == actions.count("drop") + actions.count("stale")
    assert again.recomputed == actions.count("stale")
    assert canonical(jsonl_rows(out)) == canonical(fresh)
    assert_one_row_per_point(out, 4)


# ----------------------------------------------------------- results.jsonl lines
BAD_LINES = [
    (b"\xff\xfe{}\n", "not UTF-8 (byte 0xff at column 1)"),
    (b"[1, 2]\n", "expected a JSON object (one row), got an array"),
    (b"\"a row\"\n", "expected a JSON object (one row), got a string"),
    (b"null\n", "expected a JSON object (one row), got null"),
    (b"{\"wafers\": 1,}\n", "not JSON"),
    (b"not json at all\n", "not JSON"),
    (b"{\"wafers\": 1}\n", "a row without its 'point'"),
    (b"{\"point\": 3}\n", "a row without its 'point'"),
    (b"[" * 100_000 + b"\n", "not JSON"),
]


@pytest.mark.parametrize("line,message", BAD_LINES, ids=range(len(BAD_LINES)))
def test_a_line_that_is_not_a_row_is_one_located_error(tmp_path, capsys, line, message):
    out = tmp_path / "out"
    run_sweep(spec(), out, charts=False)
    good = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    data = b"".join(good[:2]) + line + b"".join(good[2:])   # the third line is bad
    (out / "results.jsonl").write_bytes(data)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec()))
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {out / 'results.jsonl'}: line 3: {message}"), err
    assert (out / "results.jsonl").read_bytes() == data   # nothing dropped
    with pytest.raises(SpecError, match="line 3"):
        run_sweep(spec(), out, charts=False)


def test_a_bad_last_line_without_newline_is_a_cut_write_and_repaired(tmp_path):
    run_sweep(spec(), tmp_path, charts=False)
    lines = (tmp_path / "results.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "results.jsonl").write_bytes(b"".join(lines[:3]) + b"\xff{\"cut")
    again = run_sweep(spec(), tmp_path, charts=False)
    assert again.ran == 1 and again.skipped == 3
    assert_one_row_per_point(tmp_path, 4)


def test_an_unreadable_csv_is_rewritten_from_the_jsonl(tmp_path):
    run_sweep(spec(), tmp_path, charts=False)
    (tmp_path / "results.csv").write_bytes(b"\xff\xfe\x00garbage\n\x00\x00")
    assert run_sweep(spec(), tmp_path, charts=False).ran == 0
    assert_one_row_per_point(tmp_path, 4)
    (tmp_path / "results.jsonl").unlink()   # rows no JSONL holds are not kept
    assert run_sweep(spec(), tmp_path, charts=False).ran == 4
    assert_one_row_per_point(tmp_path, 4)


# --------------------------------------------------------------------------- lock
def test_a_held_lock_refuses_the_second_sweep(tmp_path, capsys):
    from filelock import FileLock
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec()))
    lock = out / ".wsesim-sweep.lock"
    with FileLock(str(lock)):
        assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out}: (top level): another sweep is writing into this "
                   f"folder (lock {lock})\n")
    assert not (out / "results.jsonl").exists()
    assert main(["sweep", str(path), "--out", str(out)]) == 0   # released: it runs


def test_two_sweeps_into_one_folder_at_once_never_duplicate_a_row(tmp_path):
    """The real race: a second sweep started while the first is still writing."""
    path, out = tmp_path / "s.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(spec()))
    args = [str(path), "--out", str(out), "--workers", "1"]
    first = start_slow(tmp_path, 0.3, *args)
    try:
        wait_for(lambda: len(rows_in(out)) >= 1, 60, "the first sweep's first row")
        second = subprocess.run([sys.executable, "-m", "wsesim", "sweep", *args],
                                capture_output=True, text=True, timeout=120)
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert second.stderr == (f"error: {out}: (top level): another sweep is writing into "
                             f"this folder (lock {out / '.wsesim-sweep.lock'})\n")
    assert_one_row_per_point(out, 4)


def test_more_rows_than_a_sweep_may_have_are_refused(tmp_path):
    from wsesim.sweeps import MAX_SWEEP_POINTS
    out = tmp_path / "out"
    out.mkdir()
    with open(out / "results.jsonl", "w") as f:
        for i in range(MAX_SWEEP_POINTS + 1):
            f.write(f'{{"point": "{i}"}}\n')
    with pytest.raises(SpecError, match=f"holds more than {MAX_SWEEP_POINTS:,} rows"):
        run_sweep(spec(), out, charts=False)


@pytest.mark.parametrize("options,key", [
    ({"workers": 0}, "--workers"), ({"workers": True}, "--workers"),
    ({"workers": 10**6}, "--workers"), ({"workers": 2.5}, "--workers"),
    ({"executor": 5}, "--executor"), ({"executor": "dask://x"}, "--executor"),
])
def test_api_options_are_checked_before_the_folder_is_touched(tmp_path, options, key):
    with pytest.raises(SpecError, match=f"<sweep>: {key}: expected"):
        run_sweep(spec(), tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
