"""Closed-form costs of moving data on the wafer mesh and between wafers.

A message is a train of 32-bit wavelets, one per cycle per link. Its head pays
``hop_latency`` per router and ``ramp_latency`` to leave and to enter a PE; a PE that
receives, adds its own contribution and forwards (a chain stage) adds the kernel
profile's ``receive_add_forward_cycles`` beyond its two ramps. Every fabric operation a
kernel calls (an allreduce, a broadcast, a transfer) pays ``fabric_call_cycles`` once
(DSD and queue setup, the first and last wavelets' hand-off); the SDK's collectives
library, which the ``chain`` allreduce stands for, pays ``library_call_cycles`` per call.
These follow the reduce model of "Near-Optimal Wafer-Scale Reduce" (HPDC 2024):
T = max(compute, E/N + L) + (2 T_R + 1) D, with the per-hop ``+1`` measured on WSE-3 as
a receive-add-forward stage of about 10 cycles (a GEMV's chain allreduce grows by 14.7
cycles per PE: that stage, its hop and the broadcast's hop back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np

from wsesim.perf.cost import Cost, Num, later, stack
from wsesim.specs import HardwareProfile

# Bytes per element the SDK collectives library (the chain allreduce) moves: it reduces
# fp32, whatever the activations' width (collectives_2d's reduce_fadds, as the measured
# chain GEMV's pe.csl calls it: validation/wse3-chaingemv-*.yaml).
LIBRARY_ELEMENT_BYTES = 4.0

ALGORITHMS = ("chain", "tree", "two-level")


@dataclass(frozen=True)
class Fabric:
    """The numbers of one hardware profile that fabric costs need."""

    hop: float
    ramp: float
    turn: float
    add: float              # receive-add-forward of a chain stage, beyond its two ramps
    link_bytes: float
    call: float             # fixed cost of one fabric operation a kernel calls
    library_call: float     # the same for one call of the SDK's collectives library
    interwafer_bytes_per_cycle: float
    interwafer_latency_cycles: float

    @classmethod
    def of(cls, hw: HardwareProfile) -> "Fabric":
        k = hw.kernel
        return cls(hw.hop_latency_cycles, hw.ramp_latency_cycles, hw.turn_latency_cycles,
                   k.receive_add_forward_cycles, hw.link_bytes_per_cycle,
                   k.fabric_call_cycles, k.library_call_cycles,
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
                    overhead=np.where(busy, self.call, 0.0))

    def broadcast(self, distance: Num, elements: Num, element_bytes: float) -> Cost:
        """Router multicast from one PE to every PE within ``distance`` hops of a line."""
        busy = np.asarray(distance) > 0
        return Cost(latency=np.where(busy, distance * self.hop + 2 * self.ramp, 0.0),
                    bandwidth=np.where(busy, self.wavelets(elements, element_bytes), 0.0),
                    overhead=np.where(busy, self.call, 0.0))

    def meet(self, a_stages: int, a_hops: int, b_stages: int, b_hops: int,
             elements: Num, element_bytes: float) -> Cost:
        """Two pipelined chains, ``a_stages`` receive-add-forward stages over ``a_hops``
        hops from one side and ``b_stages`` over ``b_hops`` from the other, ending in one
        root PE (one phase of a collective: the call's fixed cost is the caller's). A PE
        takes one wavelet per cycle off the fabric (its down-ramp is a
        router port like the others, and the kernels add the two sides with one
        instruction each), so the root receives the second train after the first: it
        finishes at max(second head, first head + W) + W, not at the later head + W."""
        w = self.wavelets(elements, element_bytes)
        per = 2 * self.ramp + self.add
        sides = [h * self.hop + s * per for s, h in ((a_stages, a_hops), (b_stages, b_hops))
                 if s > 0]
        if not sides:
            return Cost()
        if len(sides) == 1:
            return Cost(latency=sides[0], bandwidth=w)
        first, second = min(sides), max(sides)
        return Cost(latency=second, bandwidth=w + np.maximum(0.0, first + w - second))

    def allreduce(self, n: int, elements: Num, element_bytes: float,
                  algorithm: str = "two-level", groups: int | None = None) -> Cost:
        """Every one of ``n`` PEs on a line ends with the sum of their vectors.

        two-level (WaferLLM's K-tree with K = 2): contiguous groups of ceil(n / groups)
        PEs, chains into the middle of each group, chains over the group roots into the
        middle group's root, a broadcast back from there over the whole line; one fabric
        call. tree: each half of the line reduces by a binomial tree into its PE next to
        the middle (levels 1, 2, 4, ... hops apart), the right half's root then sends to
        the left half's (one hop), a broadcast back; one fabric call. chain (the Cerebras
        SDK's collectives library, as its GEMV examples use it): one pipelined chain from
        the first PE to the last, then a broadcast back from the last over the whole
        line, two library calls, in fp32 (the library reduces fp32 only). ``groups`` None
        picks the fastest group count. The PE-level simulation (``wsesim.sim.pe``) runs
        exactly these kernels.
        """
        if n <= 1:
            return Cost()
        if algorithm == "chain":
            wide = max(element_bytes, LIBRARY_ELEMENT_BYTES)
            there_and_back = self.chain(n - 1, 1, elements, wide) + \
                self.broadcast(n - 1, elements, wide)
            return replace(there_and_back, overhead=2 * self.library_call)
        if algorithm == "tree":
            m = (n - 1) // 2
            root = self._binomial(m + 1, elements, element_bytes)
            if n - 1 - m > 0:        # the right half's root sends its sum one hop
                root = self._receive(root, self._binomial(n - 1 - m, elements,
                                                          element_bytes), 1,
                                     elements, element_bytes)
            return root + self.broadcast(max(m, n - 1 - m), elements, element_bytes)
        if algorithm != "two-level":
            raise ValueError(f"unknown allreduce algorithm {algorithm!r}; "
                             f"one of {', '.join(ALGORITHMS)} or auto")
        if groups is None:
            return self.allreduce(n, elements, element_bytes, "two-level",
                                  self.best_groups(n, elements, element_bytes))
        size, count, roots = group_layout(n, groups)
        a = (size - 1) // 2
        within = self.meet(a, a, size - 1 - a, size - 1 - a, elements, element_bytes)
        mid = (count - 1) // 2
        across = self.meet(mid, roots[mid] - roots[0], count - 1 - mid,
                           roots[-1] - roots[mid], elements, element_bytes)
        back = self.broadcast(max(roots[mid], n - 1 - roots[mid]), elements, element_bytes)
        return within + across + back

    def best_groups(self, n: int, elements: Num, element_bytes: float) -> int:
        """The group count of the fastest two-level allreduce on ``n`` PEs."""
        return _best_groups(self, n, float(np.max(elements)), element_bytes)

    def _receive(self, own: Cost, partner: Cost, hops: int, elements: Num,
                  element_bytes: float) -> Cost:
        """One tree level: a PE done with ``own`` adds the vector of a partner ``hops``
        away that was done with ``partner``: the train's head must be there (and the PE
        ready) before its W wavelets stream in."""
        head = partner + Cost(latency=hops * self.hop + 2 * self.ramp + self.add)
        return later(own, head) + Cost(bandwidth=self.wavelets(elements, element_bytes))

    def _binomial(self, size: int, elements: Num, element_bytes: float) -> Cost:
        """A binomial tree reducing ``size`` PEs of a line into its end PE (level l:
        partners 2^l apart), every PE starting at once: the root's finish. A partial
        last subtree finishes early, so its root's train may be there first."""
        if np.ndim(elements) == 0:
            return _binomial(self, size, float(elements), element_bytes)
        return self._binomial_of(size, elements, element_bytes)

    def _binomial_of(self, size: int, elements: Num, element_bytes: float) -> Cost:
        if size <= 1:
            return Cost()
        levels = math.ceil(math.log2(size))
        half = 2 ** (levels - 1)
        return self._receive(self._binomial(half, elements, element_bytes),
                             self._binomial(size - half, elements, element_bytes), half,
                             elements, element_bytes)

    def choose_allreduce(self, n: int, elements: Num, element_bytes: float,
                         algorithm: str = "auto", groups: int | None = None
                         ) -> tuple[str, int | None]:
        """The (algorithm, groups) that ``best_allreduce`` prices: the fastest for
        ``auto``, the fastest group count for two-level without ``groups``."""
        options = ALGORITHMS if algorithm == "auto" else (algorithm,)
        choices = [(a, (groups if groups is not None else
                        self.best_groups(n, elements, element_bytes))
                    if a == "two-level" else None) for a in options]
        return min(choices,
                   key=lambda c: self.allreduce(n, elements, element_bytes, *c).worst)

    def best_allreduce(self, n: int, elements: Num, element_bytes: float,
                       algorithm: str = "auto", groups: int | None = None) -> Cost:
        """``allreduce`` with ``algorithm: auto`` taking the fastest of the three. Each
        distinct vector length is priced once (layers repeat the same collectives)."""
        values = np.asarray(elements, dtype=float)
        if values.ndim == 0:
            return _best_allreduce(self, n, float(values), element_bytes, algorithm, groups)
        unique, where = np.unique(values, return_inverse=True)
        each = stack([_best_allreduce(self, n, float(u), element_bytes, algorithm, groups)
                      for u in unique])
        return Cost(*(getattr(each, f.name)[where].reshape(values.shape)
                      for f in fields(Cost)))

    def transfer(self, hops: float, turns: int, elements: Num, element_bytes: float
                 ) -> Cost:
        """A vector sent ``hops`` hops (with ``turns`` turns) from one PE to another."""
        return Cost(latency=hops * self.hop + turns * self.turn + 2 * self.ramp,
                    bandwidth=self.wavelets(elements, element_bytes), overhead=self.call)

    def interwafer_occupancy(self, nbytes: Num) -> Num:
        """Cycles the link between two wafers is busy carrying ``nbytes``."""
        return np.asarray(nbytes) / self.interwafer_bytes_per_cycle

    def interwafer(self, nbytes: Num) -> Cost:
        """Bytes over the link between two wafers (its bandwidth, then its latency)."""
        return Cost(interwafer=self.interwafer_occupancy(nbytes)
                    + self.interwafer_latency_cycles)


@lru_cache(maxsize=1 << 16)
def _best_groups(fabric: Fabric, n: int, elements: float, element_bytes: float) -> int:
    def time(g: int) -> float:
        return fabric.allreduce(n, elements, element_bytes, "two-level", g).worst
    # With g groups the chains inside groups take about n/(2g) stages of one hop, ramps
    # and an add each, the chain over the roots about g/2 ramps and adds (its hops add
    # up to about n/2 whatever g): least near g* = sqrt(n (hop + 2 ramp + add) /
    # (2 ramp + add)). The exact cost is checked around it, and at one group.
    per_stage = fabric.hop + 2 * fabric.ramp + fabric.add
    g_star = round(math.sqrt(n * per_stage / max(2 * fabric.ramp + fabric.add, 1e-9)))
    return min({1, *range(max(1, g_star - 3), min(n, g_star + 3) + 1)}, key=time)


@lru_cache(maxsize=1 << 16)
def _binomial(fabric: Fabric, size: int, elements: float, element_bytes: float) -> Cost:
    return fabric._binomial_of(size, elements, element_bytes)


@lru_cache(maxsize=1 << 16)
def _best_allreduce(fabric: Fabric, n: int, elements: float, element_bytes: float,
                    algorithm: str, groups: int | None) -> Cost:
    return fabric.allreduce(n, elements, element_bytes,
                            *fabric.choose_allreduce(n, elements, element_bytes, algorithm,
                                                     groups))


def group_layout(n: int, groups: int) -> tuple[int, int, list[int]]:
    """Two-level groups on a line of ``n`` PEs: (group size, group count, the root
    position of each group). Groups are contiguous runs of ceil(n / groups) PEs (the last
    may be shorter, and there may be fewer than ``groups``); a root is its group's
    middle PE."""
    size = math.ceil(n / max(1, min(groups, n)))
    count = math.ceil(n / size)
    roots = [g * size + (min(size, n - g * size) - 1) // 2 for g in range(count)]
    return size, count, roots
