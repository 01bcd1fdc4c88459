"""Closed-form costs of work inside one PE: vector instructions, the local part of a
matrix-vector or matrix-matrix product, dequantization."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsesim.perf.cost import Cost, Num
from wsesim.quant import QuantFormat
from wsesim.quant.dequant import LANES, block_ops
from wsesim.specs import HardwareProfile
from wsesim.specs.hardware import DequantCosts


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
    dequant_costs: DequantCosts

    @classmethod
    def of(cls, hw: HardwareProfile, activations: QuantFormat) -> "PECompute":
        dtype = "fp32" if activations.bits == 32 else activations.float16
        rate = hw.macs_per_cycle.get(dtype, hw.macs_per_cycle["fp16"])
        k = hw.kernel
        return cls(rate, k.vector_op_cycles, k.vector_latency_cycles,
                   dict(k.elementwise_ops), k.dequant.resolved(hw.macs_per_cycle["fp16"]))

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

    def dequant(self, fmt: QuantFormat, inputs: Num, outputs: Num) -> Cost:
        """Turning a block of ``inputs`` x ``outputs`` stored weights into fp16 before
        use, by the instruction sequence of :mod:`wsesim.quant.dequant` (derived, not
        measured): every step is a vector instruction over the ``outputs`` weights of
        one input, paying the issue cost and, as it uses the previous step's result, at
        least the dependent latency; a scalar step costs ``scalar_cycles``. All of it is
        the ``dequant`` cause."""
        if fmt.is_float:
            return Cost()
        n = np.asarray(outputs, dtype=float)
        ops = block_ops(fmt, np.asarray(inputs, dtype=np.int64), n.astype(np.int64))
        cycles = np.zeros(np.broadcast(np.asarray(inputs), n).shape)
        for kind, count in ops.items():
            count = np.asarray(count, dtype=float)
            if LANES[kind] is None:
                cycles = cycles + count * self.dequant_costs.scalar_cycles
                continue
            # instructions over one input's `outputs` weights
            instructions = np.divide(count, n, out=np.zeros(cycles.shape), where=n > 0)
            stream = np.maximum(self.latency, n * self._op_cycles(kind))
            cycles = cycles + instructions * (self.op_cycles + stream)
        return Cost(dequant=cycles if cycles.ndim else float(cycles))

    def _op_cycles(self, kind: str) -> float:
        """Cycles per value of one operation of ``kind`` (per SIMD op over its lanes)."""
        c = self.dequant_costs
        per_op = getattr(c, f"{kind}_cycles")
        lanes = LANES[kind]
        if lanes is None:
            return per_op
        width = getattr(c, f"{lanes}_lanes")
        if width is None:
            raise ValueError(f"dequant_costs.{lanes}_lanes is not resolved: build the "
                             "costs with DequantCosts.resolved (PECompute.of does)")
        return per_op / width
