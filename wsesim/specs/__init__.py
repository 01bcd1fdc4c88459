"""Validated inputs: hardware profile, model, quantization, workload, mapping, deployment.

The names below are imported when first used, so that importing one module of the
package (``wsesim.specs.bounds``, which :mod:`wsesim.quant` uses) does not import the
others (which use :mod:`wsesim.quant`).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsesim.specs.deployment import (
        Deployment,
        MappingSpec,
        SimulationSpec,
        WorkloadSpec,
    )
    from wsesim.specs.hardware import HardwareProfile
    from wsesim.specs.loading import (
        deployment_from_mapping,
        load_deployment,
        load_hardware,
        load_model,
        shipped,
    )
    from wsesim.specs.model import ModelSpec, TensorShape
    from wsesim.specs.quantization import QuantizationSpec
    from wsesim.specs.serving import ServingSpec

_MODULE_OF = {
    "Deployment": "deployment", "MappingSpec": "deployment",
    "SimulationSpec": "deployment", "WorkloadSpec": "deployment",
    "HardwareProfile": "hardware", "ModelSpec": "model", "TensorShape": "model",
    "QuantizationSpec": "quantization", "ServingSpec": "serving",
    "deployment_from_mapping": "loading", "load_deployment": "loading",
    "load_hardware": "loading", "load_model": "loading", "shipped": "loading",
}

__all__ = [
    "Deployment", "HardwareProfile", "MappingSpec", "ModelSpec", "QuantizationSpec",
    "ServingSpec", "SimulationSpec", "TensorShape", "WorkloadSpec",
    "deployment_from_mapping",
    "load_deployment", "load_hardware", "load_model", "shipped",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'wsesim.specs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"wsesim.specs.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
