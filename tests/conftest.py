"""Shared builders for small, hand-checkable deployments."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wsesim.specs import Deployment, deployment_from_mapping

ROOT = Path(__file__).resolve().parent.parent


def tiny_hardware(rows: int = 8, cols: int = 8, sram: int = 49152,
                  reserve: int = 4176, **extra: Any) -> dict[str, Any]:
    """A WSE-like profile on a small grid (numbers as in wse2.yaml unless given)."""
    hw = {
        "name": f"tiny{rows}x{cols}", "grid_rows": rows, "grid_cols": cols,
        "pe_sram_bytes": sram, "runtime_reserve_bytes": reserve, "clock_hz": 1.1e9,
        "macs_per_cycle": {"fp16": 4, "fp32": 0.5}, "sram_read_bytes_per_cycle": 16,
        "sram_write_bytes_per_cycle": 8, "link_bytes_per_cycle": 4,
        "hop_latency_cycles": 1, "ramp_latency_cycles": 2, "colors": 24,
        "interwafer_bytes_per_s": 1.5e11, "interwafer_latency_s": 5e-6,
        "kernel": {"vector_op_cycles": 4, "vector_latency_cycles": 2,
                   "receive_add_forward_cycles": 1, "fabric_call_cycles": 200,
                   "library_call_cycles": 300, "route_switch_cycles": 50,
                   "mesh_step_cycles": 100,
                   "elementwise_ops": {"rope": 3, "exp": 6, "rsqrt": 6, "silu": 10},
                   "dequant": {"shift_cycles": 1, "logic_cycles": 1,
                               "convert_cycles": 1, "fma_cycles": 1, "scalar_cycles": 1,
                               "int16_lanes": 4, "fp16_lanes": 4}},
    }
    hw.update(extra)
    return hw


def tiny_model(**extra: Any) -> dict[str, Any]:
    """hidden 256, MLP 512, 2 layers, 4 heads of 64, 2 KV heads, vocab 1000."""
    m = {"name": "tiny", "hidden_size": 256, "intermediate_size": 512,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 1000}
    m.update(extra)
    return m


def deployment(**over: Any) -> Deployment:
    data: dict[str, Any] = {
        "name": "test", "model": tiny_model(), "hardware": tiny_hardware(),
        "wafers": 1, "quantization": "fp16",
        "workload": {"batch_size": 2, "prompt_tokens": 32, "output_tokens": 32},
        "mapping": {"strategy": "sequential"},
    }
    data.update(over)
    return deployment_from_mapping(data, "<test>")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def _run_from_project_root():
    """Example paths in tests are relative to the project root, wherever pytest starts."""
    import os
    before = os.getcwd()
    os.chdir(ROOT)
    yield
    os.chdir(before)
