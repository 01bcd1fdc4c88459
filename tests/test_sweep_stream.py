"""Sweep points as a stream: a bound on their number (refused before any work), the
points computed on demand (never the whole product in memory), a bounded number of
tasks in flight, the shared fewest-wafers search on a stream; the package's imports
one way; every argument error of ``wsesim`` one line."""
from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import tiny_hardware, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.run import simulate
from wsesim.specs import deployment_from_mapping
from wsesim.sweeps import MAX_SWEEP_POINTS, apply_point, load_sweep, point_key, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def base():
    return {"name": "toy", "model": tiny_model(), "hardware": tiny_hardware(8, 8),
            "wafers": 1, "quantization": {"weights": "int4-g128"},
            "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8},
            "mapping": {"strategy": "pipeline"}}


# ------------------------------------------------------------------------ the bound
def test_a_1000_by_1000_grid_is_refused_at_once(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"base": base(), "grid": {
        "workload.prompt_tokens": list(range(1, 1001)),
        "workload.output_tokens": list(range(1, 1001))}}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "wsesim", "sweep", str(path), "--out",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {path}: grid: 1,000,000 points (1,000 x 1,000) is "
                           f"more than the {MAX_SWEEP_POINTS:,} a sweep may have: split "
                           "it into several sweeps or take fewer values\n")
    assert not out.exists()


@pytest.mark.parametrize("where", ["grid", "zip"])
def test_the_bound_is_exact(where):
    side = 317   # 317 x 316 = 100,172 > 100,000 = 100 x 1,000
    over = {"wafers": list(range(1, side + 1)),
            "workload.prompt_tokens": list(range(1, side))}
    data = {"base": base(), "grid": {"wafers": list(range(1, 101)),
                                     "workload.prompt_tokens": list(range(1, 1001))}}
    s = load_sweep(data)
    assert len(s.points()) == MAX_SWEEP_POINTS
    if where == "grid":
        bad = {"base": base(), "grid": over}
    else:
        bad = {"base": base(), "grid": {"wafers": over["wafers"]},
               "zip": {"workload.prompt_tokens": over["workload.prompt_tokens"]}}
    with pytest.raises(SpecError, match=r"grid: 100,172 points \(317 x 316\)"):
        load_sweep(bad)


@pytest.mark.parametrize("value,message", [
    (float("inf"), "inf is not a finite number"),
    (float("nan"), "nan is not a finite number"),
    ({"hidden_size": float("-inf")}, "-inf is not a finite number"),
])
def test_non_finite_values_are_refused(value, message):
    with pytest.raises(SpecError, match=f"grid.model.1: {message}"):
        load_sweep({"base": base(), "grid": {"model": [tiny_model(), value]}})


def test_a_recursive_value_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: {model: llama-3.1-8b, hardware: wse3}\n"
                    "grid: {wafers: [1, &a [*a]]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2


def test_points_are_computed_on_demand():
    """A sweep at the bound: its points take no memory until read, the first comes at
    once, and indexing, iteration and locating agree."""
    data = {"base": base(), "grid": {"wafers": list(range(1, 101)),
                                     "workload.prompt_tokens": list(range(1, 1001))}}
    s = load_sweep(data)
    tracemalloc.start()
    try:
        points = s.points()
        first = next(iter(points))
        last = points[-1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert first == {"wafers": 1, "workload.prompt_tokens": 1}
    assert last == {"wafers": 100, "workload.prompt_tokens": 1000}
    assert points.locate(point_key(last)) == MAX_SWEEP_POINTS - 1


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       zip_len=st.integers(0, 3))
def test_points_match_the_cartesian_product(sizes, zip_len):
    keys = ["wafers", "workload.batch_size", "workload.output_tokens"]
    grid = {k: list(range(1, n + 1)) for k, n in zip(keys, sizes)}
    data = {"base": base(), "grid": grid}
    if zip_len:
        data["zip"] = {"workload.prompt_tokens": list(range(1, zip_len + 1)),
                       "name": [f"n{i}" for i in range(zip_len)]}
    s = load_sweep(data)
    axes = [[{k: v} for v in vs] for k, vs in grid.items()]
    if zip_len:
        axes.append([{"workload.prompt_tokens": i + 1, "name": f"n{i}"}
                     for i in range(zip_len)])
    expected = [{k: v for d in combo for k, v in d.items()}
                for combo in itertools.product(*axes)]
    points = s.points()
    assert list(points) == expected and len(points) == len(expected)
    for i, p in enumerate(expected):
        assert points[i] == p and points.locate(point_key(p)) == i
    assert points.locate(point_key({**expected[0], "wafers": 99})) is None
    assert points.locate(point_key({**expected[0], "mapping.grid": [1, 1]})) is None
    assert points.locate("not json") is None


# ---------------------------------------------------------------- tasks in flight
class CountingPool(ThreadPoolExecutor):
    """A thread pool that records the most tasks submitted and not yet finished."""

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers)
        self.lock = threading.Lock()
        self.pending = 0
        self.most = 0

    def submit(self, fn, *args, **kwargs):
        with self.lock:
            self.pending += 1
            self.most = max(self.most, self.pending)
        fut = super().submit(fn, *args, **kwargs)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut) -> None:
        with self.lock:
            self.pending -= 1


def test_a_bounded_number_of_tasks_is_in_flight():
    s = {"base": base(), "performance": False,
         "grid": {"wafers": [1, 2], "workload.output_tokens": list(range(8, 28))}}
    with CountingPool(2) as pool:
        outcome = run_sweep(s, executor=pool)
    assert len(outcome.rows) == 40 and not outcome.failed_rows
    assert pool.most <= 2 * 2 + 1   # two per worker, plus at most one search ahead


def test_fewest_wafers_shared_on_a_stream(monkeypatch):
    """Points that differ only in wafers share one search, whatever the axis order;
    every row's min_wafers is what simulate() finds for that point alone."""
    import wsesim.sweeps.executors as ex
    calls = []
    real = ex.min_wafers_task

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(ex, "min_wafers_task", counting)
    tight = base()   # on 8 x 8 PEs the KV cache of 512 fits 1 wafer, of 4096 needs 4
    s = {"base": tight, "performance": False,
         "grid": {"wafers": [1, 2, 3], "workload.context_length": [512, 2048, 4096]}}
    rows = run_sweep(s).rows
    assert len(calls) == 3 and len({point_key(c) for c in calls}) == 3
    for row in rows:
        point = json.loads(row["point"])
        alone = simulate(deployment_from_mapping(apply_point(tight, point), "<t>"),
                         with_performance=False)
        assert row["min_wafers"] == alone.min_wafers
    assert len({r["min_wafers"] for r in rows}) > 1   # the search matters here


# ------------------------------------------------------------------- one-way imports
def _imports(path: Path, package: str) -> set[str]:
    """The wsesim modules a source file imports (anywhere in it, lazily or not)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (ROOT / (sub.replace(".", "/") + ".py")).is_file() or \
                    (ROOT / sub.replace(".", "/") / "__init__.py").is_file()
                names.add(sub if is_module else node.module)
    return {n for n in names if n == package or n.startswith(package + ".")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_two_modules_import_each_other():
    graph = {_module_name(p): _imports(p, "wsesim") for p in (ROOT / "wsesim").rglob("*.py")}
    pairs = [(a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ())]
    assert not pairs
    assert not any(m.startswith("wsesim.sweeps") for m in graph["wsesim.plots"])


def test_the_sweeps_package_imports_one_way():
    order = ["points", "spec", "rows", "store", "executors", "run"]
    files = sorted((ROOT / "wsesim" / "sweeps").glob("*.py"))
    assert {p.stem for p in files} == {"__init__", "charts", *order}
    for path in files:
        me = path.stem
        inside = {n.split(".")[2] for n in _imports(path, "wsesim.sweeps")
                  if n.count(".") >= 2}
        if me == "__init__":
            continue
        if me == "charts":
            assert inside <= {"spec"}
            continue
        assert all(order.index(m) < order.index(me) for m in inside - {"charts"}), me
    light = subprocess.run([sys.executable, "-c", "import sys, wsesim.sweeps; "
                            "print('matplotlib' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "False"


# -------------------------------------------------------------- argument errors
@pytest.mark.parametrize("argv,command", [
    (["sweep", "s.yaml", "--workers", "0"], "sweep"),
    (["sweep", "s.yaml", "--workers", "x"], "sweep"),
    (["sweep", "s.yaml", "--workers", "100000"], "sweep"),
    (["sweep", "s.yaml", "--workers"], "sweep"),
    (["sweep"], "sweep"),
    (["sweep", "s.yaml", "--bogus"], "sweep"),
    (["sweep", "s.yaml", "--out"], "sweep"),
    (["run"], "run"),
    (["run", "x.yaml", "--format", "pdf"], "run"),
    (["validate", "--format", "xml"], "validate"),
    (["models", "extra"], "models"),
    ([], "wsesim"),
    (["nosuchcommand"], "wsesim"),
    (["--bogus"], "wsesim"),
    (["sweep", "s.yaml", "--workers", "1\nerror: forged"], "sweep"),   # no second line
])
def test_every_argument_error_is_one_line(capsys, argv, command):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err
    assert err.startswith(f"error: {command}: arguments: ")
