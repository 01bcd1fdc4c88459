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
    """One PE's arithmetic, as WaferLLM's kernels drive it: every vector (DSD)
    instruction costs ``op_cycles`` to issue and then streams its ``n`` elements at
    ``rate`` per cycle; an instruction that uses the previous one's result (the next
    multiply-accumulate into the same output, say) cannot finish sooner than
    ``latency`` cycles after it, so a short instruction costs ``op_cycles + latency``
    whatever its length and a long one ``op_cycles + n / rate``."""

    rate: float
    op_cycles: float
    latency: float
    elementwise: dict[str, float]
    dequant_ops: dict[str, float]

    @classmethod
    def of(cls, hw: HardwareProfile, activations: QuantFormat) -> "PECompute":
        dtype = "fp32" if activations.bits == 32 else activations.float16
        rate = hw.macs_per_cycle.get(dtype, hw.macs_per_cycle["fp16"])
        k = hw.kernel
        return cls(rate, k.vector_op_cycles, k.vector_latency_cycles,
                   dict(k.elementwise_ops), dict(k.dequant_ops_per_weight))

    def _streams(self, length: Num) -> np.ndarray:
        """Cycles one instruction over ``length`` elements holds the pipeline."""
        length = np.asarray(length, dtype=float)
        return np.where(length > 0, np.maximum(self.latency, length / self.rate), 0.0)

    def instructions(self, count: Num, length: Num) -> Cost:
        """``count`` dependent vector instructions over ``length`` elements each."""
        count = np.asarray(count, dtype=float)
        busy = (count > 0) & (np.asarray(length) > 0)
        return Cost(compute=count * self._streams(length),
                    overhead=np.where(busy, count * self.op_cycles, 0.0))

    def vector(self, elements: Num, ops: float = 1.0) -> Cost:
        """``ops`` vector instructions over ``elements`` values each."""
        return self.instructions(ops, elements)

    def elementwise_op(self, name: str, elements: Num) -> Cost:
        """A function built from vector instructions (exp, silu, rsqrt, rope)."""
        return self.vector(elements, self.elementwise[name])

    def gemv(self, inputs: Num, outputs: Num) -> Cost:
        """Local block of a matrix-vector product, as WaferLLM's kernel runs it: one
        multiply-accumulate instruction over the outputs per input element, each
        accumulating into the same outputs (dependent)."""
        inputs = np.asarray(inputs)
        return self.instructions(np.where(np.asarray(outputs) > 0, inputs, 0), outputs)

    def gemm(self, rows: Num, inputs: Num, outputs: Num) -> Cost:
        """Local tile of a matrix-matrix product (MeshGEMM): one multiply-accumulate
        instruction over the tile's ``rows`` per (input, output) pair."""
        pairs = np.asarray(inputs) * np.asarray(outputs)
        return self.instructions(np.where(np.asarray(rows) > 0, pairs, 0), rows)

    def dequant(self, fmt: QuantFormat, weights: Num) -> Cost:
        """Turning ``weights`` stored values into the arithmetic type before use."""
        key = dequant_key(fmt)
        if key is None:
            return Cost()
        return Cost(dequant=np.asarray(weights) * self.dequant_ops[key] / self.rate)
