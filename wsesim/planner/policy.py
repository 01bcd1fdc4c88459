"""The best plan for a deployment on a wafer count: rate every candidate by the closed
forms and cheap fit bounds, keep those that can win, and decide among them with the
exact per-PE ledger and the timeline simulation.

The search (a policy) is kept apart from what it searches (``space.py``) and from the
engines that price a plan (the closed forms, the ledger, the simulation).

Where it is a heuristic, not an exhaustive search: with more than
``space.EXHAUSTIVE_UP_TO`` stages on a wafer, regions per wafer run up a geometric ladder
and are then refined around the best rung and bisected at the fit boundary (fewer stages:
every count, both balances, is rated); region shapes come from the band
layout (rated by the fullest PE); time balance is a few rounds of re-partitioning by the
stages' own costs. On small models and grids the tests compare it with an exhaustive
enumeration of every regions-per-wafer count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wsesim.errors import KeyedError
from wsesim.fit import WaferSearch, fewest_wafers_bound, fullest_pe_bounds
from wsesim.mapping.plan import Choice, Plan, max_wafers
from wsesim.memory import fullest_pe_bytes
from wsesim.perf.model import PerformanceModel, max_tokens_per_cycle
from wsesim.planner.space import Built, PlanMaker, choices, stages_per_wafer
from wsesim.specs import Deployment

FINALISTS = 8      # candidates that fit decided by the simulation (with the classics)
MARGIN = 0.10      # ... those the rating puts within this of the best that fits
REFINE = 2         # regions-per-wafer counts tried on each side of the best rung
TIME_BALANCED = 3  # the best few by the rating, tried balanced by time too


@dataclass
class Candidate:
    """One plan and what is known of it: closed-form rates (tokens/s), bounds on its
    fullest PE, and once decided exactly, whether it fits and the simulated rates."""

    built: Built
    per_user: float
    aggregate: float
    fit_low: float
    fit_high: float
    fits: bool | None = None
    max_pe_bytes: int | None = None
    simulated: dict[str, Any] | None = None
    outcome: tuple | None = field(default=None, repr=False)  # simulate_performance's

    @property
    def choice(self) -> Choice:
        return self.built.choice

    @property
    def plan(self) -> Plan:
        return self.built.plan

    def rates(self) -> tuple[float, float]:
        """(per user, aggregate): simulated when decided, else the closed forms."""
        if self.simulated is not None:
            return (self.simulated["tokens_per_s_per_user"], self.simulated["tokens_per_s"])
        return self.per_user, self.aggregate

    def summary(self) -> dict[str, Any]:
        per_user, aggregate = self.rates()
        return {"strategy": self.choice.strategy,
                "regions_per_wafer": self.choice.regions_per_wafer,
                "balance": self.choice.balance, "fits": self.fits,
                "tokens_per_s_per_user": per_user, "tokens_per_s": aggregate,
                "max_pe_bytes": self.max_pe_bytes, "simulated": self.simulated is not None}


@dataclass
class SearchResult:
    best: Candidate
    ranked: list[Candidate]            # the decided candidates, best first
    searched: int                      # candidates rated
    notes: list[str] = field(default_factory=list)


def rate(built: Built, batch: int) -> Candidate:
    """Closed-form tokens/s of a plan (per user: one token's round trip; aggregate: the
    lesser of batch round trips at once and the slowest element's pace) and bounds on
    its fullest PE."""
    model: PerformanceModel = built.model
    hz = model.clock_hz
    path = float(model.token_path().total)
    per_user = hz / path
    aggregate = min(batch * per_user, hz * max_tokens_per_cycle(model))
    low, high = fullest_pe_bounds(built.plan)
    return Candidate(built, per_user, aggregate, low, high)


def score(dep: Deployment, per_user: float, aggregate: float) -> float:
    """What the search maximizes (a rate below the per-user floor scores nothing)."""
    m = dep.mapping
    if m.min_tokens_per_s_per_user is not None and per_user < m.min_tokens_per_s_per_user:
        return 0.0
    return aggregate if m.objective == "tokens_per_s" else per_user


def _decide(c: Candidate, sram: int) -> None:
    """The exact answers: does it fit (bounds, else the ledger), its fullest PE, and its
    simulated rates."""
    from wsesim.performance import simulate_performance
    if c.max_pe_bytes is None:
        c.max_pe_bytes = fullest_pe_bytes(c.plan)
    c.fits = c.max_pe_bytes <= sram
    c.outcome = simulate_performance(c.plan, c.fits)
    c.simulated = c.outcome[0]


def search(dep: Deployment, wafers: int) -> SearchResult:
    """The best plan of ``dep`` on ``wafers`` wafers by its ``mapping.objective`` that
    fits, with the candidates decided exactly (the best first).

    1. Rate every rung of the ladder (balanced by bytes; with few stages per wafer, every
       count both ways) by the closed forms and fit bounds.
    2. Find the fewest regions per wafer that fit, by bisection between the rungs on
       either side of the fit boundary (the fewer regions, the bigger each, the more
       quantization groups cut in two and stored twice).
    3. Try the counts next to the best rated rung that may fit; balance the best few by
       time too.
    4. Check fits exactly in the order of the rating; the candidates that fit and are
       rated within ``MARGIN`` of the best that fits (at most ``FINALISTS``), and the
       pipeline and sequential plans when they fit, are decided by the simulation.
    """
    maker = PlanMaker(dep, wafers)
    sram = dep.hardware.pe_sram_bytes
    batch = dep.workload.batch_size
    most = stages_per_wafer(maker.units[0], wafers)
    rated = _rate_all(maker, choices(most), batch)
    if not rated:
        raise KeyedError("mapping.strategy", f"no plan of {dep.model.name} can be laid out "
                         f"on {wafers} wafer(s) of this grid")
    seen = {c.choice for c in rated}

    def add(picks: list[Choice]) -> None:
        new = [c for c in picks if c not in seen and (c.regions_per_wafer is None
                                                      or 1 < c.regions_per_wafer < most)]
        seen.update(new)
        rated.extend(_rate_all(maker, new, batch))

    found = [c for c in _fit_boundary(maker, rated, "bytes", most, sram, batch)
             if c.choice not in seen]
    seen.update(c.choice for c in found)
    rated.extend(found)
    fitting = [c for c in rated if c.choice.strategy == "grouped" and _fits(c, sram)]
    pool = fitting or [c for c in rated if c.choice.strategy == "grouped"
                       and c.fit_low <= sram]
    if pool:
        k = max(pool, key=lambda c: score(dep, c.per_user, c.aggregate)
                ).choice.regions_per_wafer or 1
        add([Choice("grouped", j) for j in range(k - REFINE, k + REFINE + 1)])
    # time balance for the few best that may fit (it moves the slowest region, which sets
    # the aggregate rate of a full pipeline; a round trip barely changes)
    likely = sorted((c for c in rated if c.fit_low <= sram),
                    key=lambda c: -score(dep, c.per_user, c.aggregate))[:TIME_BALANCED]
    add([Choice(c.choice.strategy, c.choice.regions_per_wafer, "time") for c in likely])
    order = sorted(rated, key=lambda c: -score(dep, c.per_user, c.aggregate))
    best_fit = 0.0
    fits: list[Candidate] = []
    for c in order:
        value = score(dep, c.per_user, c.aggregate)
        if value < best_fit * (1 - MARGIN) or len(fits) >= FINALISTS:
            break
        if _fits(c, sram):
            fits.append(c)
            best_fit = max(best_fit, value)
    # the classic strategies are finalists whenever they fit (so that the answer is never
    # worse than either)
    baselines = [c for c in rated if c.choice in (Choice("pipeline"), Choice("sequential"))
                 and _fits(c, sram)]
    finalists = _distinct(fits + baselines)
    if not finalists:   # nothing fits: show the plan that comes closest
        finalists = [min(rated, key=lambda c: c.fit_low)]
    for c in finalists:
        _decide(c, sram)
    ranked = sorted(finalists, key=lambda c: (not c.fits, -score(dep, *c.rates())))
    notes = []
    if not ranked[0].fits:
        notes.append(f"no plan searched fits on {wafers} wafer(s): shown, the one that "
                     f"comes closest ({ranked[0].max_pe_bytes - sram:,} B over on its "
                     "fullest PE)")
    floor = dep.mapping.min_tokens_per_s_per_user
    if floor is not None and ranked[0].rates()[0] < floor:
        notes.append(f"no plan searched reaches {floor:g} tokens/s per user: the best by "
                     "the objective is shown without the floor")
    return SearchResult(ranked[0], ranked, len(rated), notes)


def _fits(c: Candidate, sram: int) -> bool:
    """Whether the candidate fits: its bounds, else the exact ledger (remembered)."""
    if c.fits is None:
        if c.fit_high <= sram:
            c.fits = True
        elif c.fit_low > sram:
            c.fits = False
        else:
            c.max_pe_bytes = fullest_pe_bytes(c.plan)
            c.fits = c.max_pe_bytes <= sram
    return c.fits


def _fit_boundary(maker: PlanMaker, rated: list[Candidate], balance: str, most: int,
                  sram: int, batch: int) -> list[Candidate]:
    """Candidates between the largest regions-per-wafer count rated that does not fit
    and the smallest that does (pipeline counts as ``most``), bisected for the fewest
    that fit."""
    by_k = {(c.choice.regions_per_wafer or (1 if c.choice.strategy == "sequential"
                                            else most)): c
            for c in rated if c.choice.balance == balance}
    fit_ks = [k for k in sorted(by_k) if _fits(by_k[k], sram)]
    below = [k for k in by_k if fit_ks and k < min(fit_ks)]
    if not below:
        return []
    lo, hi = max(below), min(fit_ks)
    tried = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            c = rate(maker.build(Choice("grouped", mid, balance)), batch)
        except (ValueError, KeyedError):
            lo = mid
            continue
        tried.append(c)
        if _fits(c, sram):
            hi = mid
        else:
            lo = mid
    return tried


def fewest_wafers_any(dep: Deployment) -> WaferSearch:
    """The fewest wafers on which SOME plan the search considers fits (``wafers`` None
    if none does up to one unit per wafer), and on the count below it the plan that
    comes closest to fitting (how far it misses is the answer's detail). Each choice is
    tried cut by bytes (the cut that holds the fewest on its fullest block)."""
    sram = dep.hardware.pe_sram_bytes
    closest: dict[int, Plan] = {}
    last = max_wafers(dep)
    for wafers in range(fewest_wafers_bound(dep), last + 1):
        maker = PlanMaker(dep, wafers)
        most = stages_per_wafer(maker.units[0], wafers)
        plans = []
        for choice in (c for c in choices(most) if c.balance == "bytes"):
            try:
                plan = maker.make(choice)
            except (ValueError, KeyedError):
                continue
            low, high = fullest_pe_bounds(plan)
            if high <= sram:
                return WaferSearch(dep, wafers, _below(wafers), closest)
            plans.append((low, plan))
        plans.sort(key=lambda x: x[0])
        for low, plan in plans:
            if low > sram:
                break
            if fullest_pe_bytes(plan) <= sram:   # its bounds straddle SRAM: the ledger
                return WaferSearch(dep, wafers, _below(wafers), closest)
        if plans:
            closest[wafers] = plans[0][1]
    return WaferSearch(dep, None, last, closest)


def _below(wafers: int) -> int | None:
    return wafers - 1 if wafers > 1 else None


def _rate_all(maker: PlanMaker, picks: list[Choice], batch: int) -> list[Candidate]:
    out = []
    for choice in picks:
        try:
            out.append(rate(maker.build(choice), batch))
        except (ValueError, KeyedError):  # more regions than the grid can lay out
            continue
    return out


def _distinct(cands: list[Candidate]) -> list[Candidate]:
    """The candidates whose plans differ (a time-balanced plan that balanced no better
    is its byte-balanced plan: kept once, under its first name)."""
    seen: set[tuple] = set()
    out = []
    for c in cands:
        key = tuple((s.name, s.region) for s in c.plan.stages)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
