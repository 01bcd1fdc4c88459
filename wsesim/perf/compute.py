"""Closed-form costs of work inside one PE: vector instructions, the local part of a
matrix-vector or matrix-matrix product, dequantization."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsesim.perf.cost import Cost, Num
from wsesim.quant import QuantFormat
from wsesim.specs import HardwareProfile


def dequant_key(fmt: QuantFormat) -> str | None:
    """The kernel profile's name for a stored weight format (None: no dequantization)."""
    if fmt.is_float:
        return None
    name = {8.0: "int8", 4.0: "int4", 3.5: "w3.5"}[fmt.bits]
    return f"{name}-byte" if fmt.packing == "byte" and fmt.bits != 8 else name


@dataclass(frozen=True)
class PECompute:
    """One PE's arithmetic: ``rate`` elements per cycle through its SIMD unit, a fixed
    ``op_cycles`` to issue each vector instruction (a DSD operation)."""

    rate: float
    op_cycles: float
    elementwise: dict[str, float]
    dequant_ops: dict[str, float]

    @classmethod
    def of(cls, hw: HardwareProfile, activations: QuantFormat) -> "PECompute":
        dtype = "fp32" if activations.bits == 32 else activations.float16
        rate = hw.macs_per_cycle.get(dtype, hw.macs_per_cycle["fp16"])
        return cls(rate, hw.kernel.vector_op_cycles, dict(hw.kernel.elementwise_ops),
                   dict(hw.kernel.dequant_ops_per_weight))

    def vector(self, elements: Num, ops: float = 1.0) -> Cost:
        """``ops`` vector instructions over ``elements`` values each."""
        busy = np.asarray(elements) > 0
        return Cost(compute=ops * np.asarray(elements) / self.rate,
                    overhead=np.where(busy, ops * self.op_cycles, 0.0))

    def elementwise_op(self, name: str, elements: Num) -> Cost:
        """A function built from vector instructions (exp, silu, rsqrt, rope)."""
        return self.vector(elements, self.elementwise[name])

    def gemv(self, inputs: Num, outputs: Num) -> Cost:
        """Local block of a matrix-vector product, as WaferLLM's kernel runs it: one
        multiply-accumulate vector instruction over the outputs per input element."""
        inputs = np.asarray(inputs)
        busy = (inputs > 0) & (np.asarray(outputs) > 0)
        return Cost(compute=inputs * outputs / self.rate,
                    overhead=np.where(busy, inputs * self.op_cycles, 0.0))

    def gemm(self, rows: Num, inputs: Num, outputs: Num) -> Cost:
        """Local tile of a matrix-matrix product (MeshGEMM): one multiply-accumulate
        instruction over the tile's ``rows`` per (input, output) pair."""
        pairs = np.asarray(inputs) * np.asarray(outputs)
        return Cost(compute=pairs * np.asarray(rows) / self.rate,
                    overhead=np.where(np.asarray(rows) > 0, pairs * self.op_cycles, 0.0))

    def dequant(self, fmt: QuantFormat, weights: Num) -> Cost:
        """Turning ``weights`` stored values into the arithmetic type before use."""
        key = dequant_key(fmt)
        if key is None:
            return Cost()
        return Cost(dequant=np.asarray(weights) * self.dequant_ops[key] / self.rate)
