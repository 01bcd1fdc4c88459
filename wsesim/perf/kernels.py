"""Cycles of one kernel on a grid, by the closed forms (the tile fidelity) or by
simulating every PE and link (the PE fidelity): what a kernel measurement is compared
with."""
from __future__ import annotations

import math

from wsesim.perf.cost import Cost
from wsesim.perf.stages import Kernels, meshgemm_cost
from wsesim.quant import QuantFormat
from wsesim.specs.kernel import KernelSpec


def kernels_of(spec: KernelSpec) -> Kernels:
    """The kernels of the spec's hardware, in its arithmetic type."""
    fmt = QuantFormat(bits=32) if spec.dtype == "fp32" else QuantFormat(
        bits=16, float16=spec.dtype)
    return Kernels.for_hardware(spec.hardware, fmt, spec.algorithm, spec.groups)


def kernel_cost(spec: KernelSpec) -> Cost:
    """Cycles of the kernel by cause, at the spec's fidelity."""
    if spec.fidelity == "pe":
        from wsesim.sim.pe import kernel_op
        return kernel_op(spec).pe
    return closed_form(spec)


def closed_form(spec: KernelSpec) -> Cost:
    """The tile fidelity's cycles of the kernel, by cause."""
    kn = kernels_of(spec)
    rows, cols = spec.grid
    if spec.op == "gemv":
        assert spec.m is not None and spec.n is not None
        inputs, outputs = math.ceil(spec.m / rows), math.ceil(spec.n / cols)
        return kn.pe.gemv(inputs, outputs) + kn.allreduce(rows, outputs)
    if spec.op == "gemm":
        assert spec.m is not None and spec.k is not None and spec.n is not None
        return meshgemm_cost(kn, rows, cols, spec.m, spec.k, spec.n)
    assert spec.elements is not None
    return kn.allreduce(cols, spec.elements)
