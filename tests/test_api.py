"""The Python API: wsesim.load / simulate / sweep / rows_to_dataframe / write_plots, a
JSON round trip of the result, and an ``import wsesim`` that stays light."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml
from conftest import tiny_hardware, tiny_model

import wsesim

DEPLOYMENT = {"name": "api-test", "model": tiny_model(), "hardware": tiny_hardware(8, 8),
              "wafers": 2, "quantization": "int4-g128",
              "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8}}


def test_import_wsesim_is_light():
    code = ("import sys, wsesim\n"
            "heavy = [m for m in ('matplotlib', 'dask', 'distributed', 'simpy', "
            "'wsesim.run', 'wsesim.sweeps', 'wsesim.plots', 'pandas') "
            "if m in sys.modules]\n"
            "print(heavy)\n"
            "assert callable(wsesim.simulate) and callable(wsesim.sweep)\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "False"]


def test_load_simulate_to_dict_round_trip(tmp_path):
    path = tmp_path / "dep.yaml"
    path.write_text(yaml.safe_dump(DEPLOYMENT))
    dep = wsesim.load(path)
    assert dep.name == "api-test" and dep.wafers == 2
    result = wsesim.simulate(dep)
    d = result.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON, nothing lost
    assert {"model", "memory", "partition", "performance", "min_wafers"} <= set(d)
    # the same answer from a path, a mapping, and the module's own function
    from wsesim.run import simulate
    for other in (wsesim.simulate(path), wsesim.simulate(DEPLOYMENT), simulate(dep)):
        assert other.to_dict()["memory"] == d["memory"]
        assert other.to_dict()["performance"]["tokens_per_s"] == \
            d["performance"]["tokens_per_s"]
    # and the same as `wsesim run --format json`
    proc = subprocess.run([sys.executable, "-m", "wsesim", "run", str(path), "--format",
                           "json"], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["memory"] == d["memory"]


def test_api_functions_are_the_package_attributes():
    from wsesim import api
    assert wsesim.simulate is api.simulate and wsesim.sweep is api.sweep
    assert wsesim.load is api.load


def test_sweep_returns_rows(tmp_path):
    # (rows_to_dataframe, with and without pandas, is tested with the sweeps)
    rows = wsesim.sweep({"base": DEPLOYMENT, "grid": {"wafers": [1, 2]},
                         "performance": False}, out=tmp_path)
    assert [r["wafers"] for r in rows] == [1, 2] and all(r["error"] == "" for r in rows)
    assert (tmp_path / "results.csv").is_file()


def test_write_plots_from_the_package(tmp_path):
    files = wsesim.write_plots(wsesim.simulate(DEPLOYMENT), tmp_path, kinds=("sram",))
    assert [p.name for p in files] == ["api-test-sram-wafer0.png", "api-test-sram-wafer1.png"]
