"""The plans the search considers for a deployment on a wafer count: the mapping
choices (strategy, regions per wafer, what ranges and blocks balance), and the plans
they make, time-balanced ones refined from the stages' own costs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsesim.mapping.plan import Choice, Plan, Stage, make_plan, stage_units
from wsesim.perf.model import PerformanceModel, build_model
from wsesim.specs import Deployment

# regions per wafer tried between sequential (1) and pipeline (every stage its own): a
# geometric ladder, refined around the best rung (see policy.py)
LADDER = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
TIME_ROUNDS = 2   # re-partitions of a time-balanced plan by its stages' measured costs
RATING_STEPS = 8  # decode steps a rating prices (spread over the output)


def stages_per_wafer(units: list[list[Stage]], wafers: int) -> int:
    """The most stages any wafer holds under the byte-balanced ranges (an upper bound on
    the regions a wafer can be cut into)."""
    from wsesim.mapping.partition import partition_contiguous
    weights = [sum(s.content.whole_bytes for s in u) for u in units]
    return max(sum(len(units[i]) for i in r) for r in partition_contiguous(weights, wafers))


EXHAUSTIVE_UP_TO = 24   # stages per wafer up to which every count is tried, both ways


def choices(most_stages: int, balance: str = "bytes", ladder: tuple[int, ...] = LADDER
            ) -> list[Choice]:
    """Sequential, pipeline, and grouped with every rung of ``ladder`` below the stage
    count, balanced by ``balance``; with few stages per wafer, every count, balanced
    both ways (the whole space)."""
    if most_stages <= EXHAUSTIVE_UP_TO:
        return [Choice(s, k, b) for b in ("bytes", "time")
                for s, k in (("sequential", None), ("pipeline", None),
                             *(("grouped", k) for k in range(2, most_stages)))]
    return [Choice("sequential", None, balance), Choice("pipeline", None, balance),
            *(Choice("grouped", k, balance) for k in ladder if 1 < k < most_stages)]


@dataclass
class Built:
    """A plan and its closed-form timeline."""

    choice: Choice
    plan: Plan
    model: PerformanceModel

    @property
    def slowest_cycles(self) -> float:
        return self.model.slowest_element()[2]


class PlanMaker:
    """Plans of one deployment on one wafer count, sharing its stage units."""

    def __init__(self, dep: Deployment, wafers: int) -> None:
        self.dep = dep
        self.wafers = wafers
        self.units = stage_units(dep, wafers)
        self._bytes: dict[Choice, Built] = {}

    def make(self, choice: Choice, stage_weights: list[float] | None = None) -> Plan:
        return make_plan(self.dep, self.wafers, choice, stage_weights=stage_weights,
                         units=self.units)

    def build(self, choice: Choice) -> Built:
        """The choice's plan: byte-balanced as made; time-balanced refined by
        re-partitioning with each stage's closed-form decode cycles (path in included)
        on the previous plan's regions, keeping the plan whose slowest element is
        quickest; when no re-cut is quicker that is the byte-balanced plan, returned
        under its own name (balance: bytes), never labelled time."""
        by_bytes = Choice(choice.strategy, choice.regions_per_wafer, "bytes")
        if by_bytes not in self._bytes:
            plan = self.make(by_bytes)
            self._bytes[by_bytes] = Built(by_bytes, plan, _model(plan))
        best = self._bytes[by_bytes]
        if choice.balance == "bytes":
            return best
        current = best
        for _ in range(TIME_ROUNDS):
            weights = stage_times(current)
            plan = self.make(choice, stage_weights=weights)
            current = Built(choice, plan, _model(plan))
            if current.slowest_cycles < best.slowest_cycles:
                best = current
        return best


def _model(plan: Plan) -> PerformanceModel:
    """The closed-form decode timeline of a plan, quickly: a few decode steps, no
    prefill (the finalists are simulated in full)."""
    return build_model(plan, prefill=False, decode_samples=RATING_STEPS)


def stage_times(built: Built) -> list[float]:
    """Mean decode cycles of every stage of the plan (and of the path into it), in plan
    order."""
    order = {id(s): i for i, s in enumerate(built.plan.stages)}
    out = [0.0] * len(order)
    for stage, cost in built.model.stage_decode:
        out[order[id(stage)]] += float(np.mean(cost.total))
    return [max(t, 1e-9) for t in out]
