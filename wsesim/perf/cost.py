"""Cycles of an operation, kept apart by physical cause (so a bottleneck can be named)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Union

import numpy as np

Num = Union[float, np.ndarray]

CAUSES = {
    "compute": "PE arithmetic (multiply-accumulates and vector work)",
    "dequant": "dequantization of sub-16-bit weights",
    "latency": "fabric latency (hops, ramps and per-hop adds)",
    "bandwidth": "fabric bandwidth (wavelets queued on a link)",
    "overhead": "fixed costs (instruction issue, fabric and library calls, route "
                "switches, MeshGEMM hand-offs)",
    "interwafer": "inter-wafer link (bandwidth and latency)",
}


@dataclass(frozen=True)
class Cost:
    """Cycles by cause. Fields may be numpy arrays (one entry per context length)."""

    compute: Num = 0.0
    dequant: Num = 0.0
    latency: Num = 0.0
    bandwidth: Num = 0.0
    overhead: Num = 0.0
    interwafer: Num = 0.0

    @property
    def total(self) -> Num:
        return (self.compute + self.dequant + self.latency + self.bandwidth
                + self.overhead + self.interwafer)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.compute + other.compute, self.dequant + other.dequant,
                    self.latency + other.latency, self.bandwidth + other.bandwidth,
                    self.overhead + other.overhead, self.interwafer + other.interwafer)

    def __mul__(self, k: Num) -> "Cost":
        return Cost(self.compute * k, self.dequant * k, self.latency * k,
                    self.bandwidth * k, self.overhead * k, self.interwafer * k)

    __rmul__ = __mul__

    @property
    def worst(self) -> float:
        """The largest total (over context lengths, when the fields are arrays)."""
        return float(np.max(self.total))

    def by_cause(self) -> dict[str, Num]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def total_of(costs: "list[Cost]") -> Cost:
    out = Cost()
    for c in costs:
        out = out + c
    return out


def cheapest(*costs: Cost) -> Cost:
    """The cost whose worst case is least (the first of equals): a kernel choice."""
    return min(costs, key=lambda c: c.worst)


def later(a: Cost, b: Cost) -> Cost:
    """Whichever of two costs ends later (elementwise over arrays), with its causes."""
    pick = np.asarray(b.total) > np.asarray(a.total)
    if pick.ndim == 0:
        return b if bool(pick) else a
    return Cost(*(np.where(pick, getattr(b, f.name), getattr(a, f.name))
                  for f in fields(Cost)))


def stack(costs: "list[Cost]") -> Cost:
    """One Cost whose fields are arrays, entry i from ``costs[i]``."""
    return Cost(*(np.array([float(np.asarray(getattr(c, f.name))) for c in costs])
                  for f in fields(Cost)))
