"""Validated inputs: hardware profile, model, quantization, workload, mapping, deployment."""
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

__all__ = [
    "Deployment", "HardwareProfile", "MappingSpec", "ModelSpec", "QuantizationSpec",
    "ServingSpec", "SimulationSpec", "TensorShape", "WorkloadSpec",
    "deployment_from_mapping",
    "load_deployment", "load_hardware", "load_model", "shipped",
]
