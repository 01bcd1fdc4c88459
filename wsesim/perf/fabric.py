"""Closed-form costs of moving data on the wafer mesh and between wafers.

A message is a train of 32-bit wavelets, one per cycle per link. Its head pays
``hop_latency`` per router and ``ramp_latency`` to leave and to enter a PE; a PE that
receives, adds its own contribution and forwards (a chain stage) adds ``add_cycles``.
Every synchronized phase of a collective (a chain, a broadcast, a shift) pays the kernel
profile's ``comm_step_cycles`` once. These follow the reduce model of "Near-Optimal
Wafer-Scale Reduce" (HPDC 2024): T = max(compute, E/N + L) + (2 T_R + 1) D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsesim.perf.cost import Cost, Num
from wsesim.specs import HardwareProfile

ALGORITHMS = ("chain", "tree", "two-level")


@dataclass(frozen=True)
class Fabric:
    """The numbers of one hardware profile that fabric costs need."""

    hop: float
    ramp: float
    turn: float
    add: float
    link_bytes: float
    step: float
    interwafer_bytes_per_cycle: float
    interwafer_latency_cycles: float

    @classmethod
    def of(cls, hw: HardwareProfile) -> "Fabric":
        return cls(hw.hop_latency_cycles, hw.ramp_latency_cycles, hw.turn_latency_cycles,
                   hw.kernel.add_cycles, hw.link_bytes_per_cycle, hw.kernel.comm_step_cycles,
                   hw.interwafer_bytes_per_s / hw.clock_hz,
                   hw.interwafer_latency_s * hw.clock_hz)

    def wavelets(self, elements: Num, element_bytes: float) -> Num:
        """Cycles a link needs to carry ``elements`` values: one wavelet per cycle."""
        return np.ceil(np.asarray(elements) * element_bytes / self.link_bytes)

    def chain(self, depth: Num, spacing: Num, elements: Num, element_bytes: float) -> Cost:
        """A pipelined chain of ``depth`` receive-add-forward stages ``spacing`` hops apart
        (PEs in between only route), reducing vectors of ``elements`` values."""
        stage = spacing * self.hop + 2 * self.ramp + self.add
        busy = np.asarray(depth) > 0
        return Cost(latency=depth * stage,
                    bandwidth=np.where(busy, self.wavelets(elements, element_bytes), 0.0),
                    overhead=np.where(busy, self.step, 0.0))

    def broadcast(self, distance: Num, elements: Num, element_bytes: float) -> Cost:
        """Router multicast from one PE to every PE within ``distance`` hops of a line."""
        busy = np.asarray(distance) > 0
        return Cost(latency=np.where(busy, distance * self.hop + 2 * self.ramp, 0.0),
                    bandwidth=np.where(busy, self.wavelets(elements, element_bytes), 0.0),
                    overhead=np.where(busy, self.step, 0.0))

    def allreduce(self, n: int, elements: Num, element_bytes: float,
                  algorithm: str = "two-level", groups: int | None = None) -> Cost:
        """Every one of ``n`` PEs on a line ends with the sum of their vectors.

        chain: one chain into the middle PE, then a broadcast back. two-level (WaferLLM):
        chains into the middle of each of ``groups`` groups, a chain over the group roots
        into the middle root, a broadcast back. tree: a binary reduction tree (level l
        spans 2^l hops), then a broadcast. ``groups`` None picks the fastest group count.
        """
        if n <= 1:
            return Cost()
        half = math.ceil((n - 1) / 2)
        back = self.broadcast(half, elements, element_bytes)
        if algorithm == "chain":
            return self.chain(half, 1, elements, element_bytes) + back
        if algorithm == "tree":
            levels = math.ceil(math.log2(n))
            up = Cost()
            for level in range(levels):
                up = up + self.chain(1, 2 ** level, elements, element_bytes)
            return up + back
        if algorithm != "two-level":
            raise ValueError(f"unknown allreduce algorithm {algorithm!r}; "
                             f"one of {', '.join(ALGORITHMS)} or auto")
        if groups is None:
            return min((self.allreduce(n, elements, element_bytes, "two-level", g)
                        for g in _group_counts(n)),
                       key=lambda c: float(np.max(c.total)))
        groups = max(1, min(groups, n))
        size = math.ceil(n / groups)
        within = self.chain(math.ceil((size - 1) / 2), 1, elements, element_bytes)
        across = self.chain(math.ceil((groups - 1) / 2), size, elements, element_bytes)
        return within + across + back

    def best_allreduce(self, n: int, elements: Num, element_bytes: float,
                       algorithm: str = "auto", groups: int | None = None) -> Cost:
        """``allreduce`` with ``algorithm: auto`` taking the fastest of the three."""
        if algorithm != "auto":
            return self.allreduce(n, elements, element_bytes, algorithm, groups)
        return min((self.allreduce(n, elements, element_bytes, a, groups)
                    for a in ALGORITHMS), key=lambda c: float(np.max(c.total)))

    def transfer(self, hops: float, turns: int, elements: Num, element_bytes: float
                 ) -> Cost:
        """A vector sent ``hops`` hops (with ``turns`` turns) from one PE to another."""
        return Cost(latency=hops * self.hop + turns * self.turn + 2 * self.ramp,
                    bandwidth=self.wavelets(elements, element_bytes), overhead=self.step)

    def interwafer_occupancy(self, nbytes: Num) -> Num:
        """Cycles the link between two wafers is busy carrying ``nbytes``."""
        return np.asarray(nbytes) / self.interwafer_bytes_per_cycle

    def interwafer(self, nbytes: Num) -> Cost:
        """Bytes over the link between two wafers (its bandwidth, then its latency)."""
        return Cost(interwafer=self.interwafer_occupancy(nbytes)
                    + self.interwafer_latency_cycles)


def _group_counts(n: int) -> list[int]:
    """Group counts worth trying for a two-level allreduce on ``n`` PEs."""
    best = max(1, round(math.sqrt(n)))
    return sorted({1, *range(max(1, best // 2), min(n, 2 * best) + 1)})
