"""Deployment specs: quantization forms, defaults, name resolution."""
from __future__ import annotations

from conftest import deployment

from wsesim.quant import preset
from wsesim.specs import load_deployment, load_hardware


def test_quantization_as_a_preset_string():
    dep = deployment(quantization="w3.5-g128")
    assert dep.quantization.weights == preset("w3.5-g128")
    assert dep.quantization.embeddings.bits == 16 and dep.quantization.kv_cache.bits == 16


def test_quantization_full_form_and_preset_with_overrides():
    dep = deployment(quantization={
        "weights": {"bits": 3.5, "group_size": 64, "scale_bits": 16, "zero_bits": 0,
                    "packing": "byte"},
        "embeddings": {"preset": "int8", "scale_bits": 32},
        "kv_cache": "int8", "activations": {"bits": 32}})
    q = dep.quantization
    assert (q.weights.bits, q.weights.group_size, q.weights.packing) == (3.5, 64, "byte")
    assert q.embeddings.bits == 8 and q.embeddings.scale_bits == 32
    assert q.activations.bits == 32


def test_defaults():
    dep = deployment(workload={}, mapping={})
    assert dep.workload.batch_size == 1
    assert dep.workload.context_tokens == dep.workload.prompt_tokens + dep.workload.output_tokens
    assert dep.mapping.strategy == "pipeline" and dep.simulation.fidelity == "tile"


def test_grid_sub_rectangle():
    dep = deployment(mapping={"strategy": "sequential", "grid": [4, 6]})
    assert dep.grid_shape == (4, 6)


def test_shipped_profiles_match_their_sources():
    wse3 = load_hardware("wse3")
    assert (wse3.grid_rows, wse3.grid_cols) == (1172 - 2, 762 - 7)  # fabric minus memcpy
    assert wse3.usable_pe_bytes == 44_976
    wse2 = load_hardware("wse2")
    assert (wse2.grid_rows, wse2.grid_cols) == (994, 750)
    assert wse2.wafer_sram_bytes == 994 * 750 * 49152


def test_every_example_loads():
    from pathlib import Path
    paths = [p for p in sorted(Path("examples").glob("*.yaml")) if "sweep" not in p.name]
    assert len(paths) >= 5, paths   # run from the project root (conftest), not an empty glob
    for path in paths:
        assert load_deployment(path).name == path.stem


def test_each_package_imports_first_in_a_fresh_interpreter():
    """wsesim.quant uses wsesim.specs.bounds, and wsesim.specs uses wsesim.quant: the
    specs package imports its modules when their names are first used, so either
    package can be imported first."""
    import subprocess
    import sys
    for module in ("wsesim.quant", "wsesim.quant.formats", "wsesim.specs.bounds",
                   "wsesim.specs"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}; "
                               "from wsesim.specs import Deployment, load_model"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
