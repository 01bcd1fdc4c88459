"""Small deployments for the serving tests (a 2-layer model on a small grid runs a few
thousand requests in a second)."""
from __future__ import annotations

from typing import Any

from conftest import deployment, tiny_hardware

from wsesim.serving import Study, prepare
from wsesim.specs import Deployment
from wsesim.specs.serving import ServingSpec


POWER_W = 20_000.0   # the tiny systems' wall power


def tiny(strategy: str = "pipeline", wafers: int = 1, prompt: int = 64, output: int = 16,
         rows: int = 32, cols: int = 32, sram: int = 49152, **over: Any) -> Deployment:
    """A 2-layer, hidden-256 model on a rows x cols grid, batch 1, systems of
    ``POWER_W``."""
    mapping = {"strategy": strategy}
    if strategy == "grouped":
        mapping["regions_per_wafer"] = 2
    return deployment(hardware=tiny_hardware(rows, cols, sram=sram, system_power_w=POWER_W),
                      mapping=mapping,
                      wafers=wafers,
                      workload={"batch_size": 1, "prompt_tokens": prompt,
                                "output_tokens": output}, **over)


def study(dep: Deployment, **serving: Any) -> Study:
    """The serving study of ``dep`` with these serving settings (rate 1/s by default)."""
    serving.setdefault("rate_per_s", 1.0)
    return prepare(dep, spec=ServingSpec(**serving))
