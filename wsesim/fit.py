"""Fit questions: does a plan fit, and on how few wafers would a deployment fit."""
from __future__ import annotations

from dataclasses import dataclass, replace

from wsesim.errors import KeyedError
from wsesim.mapping.plan import Choice, Plan, make_plan, max_wafers, stage_units
from wsesim.memory import MemoryLedger, build_ledger, fullest_pe_bytes
from wsesim.result import FullestPESummary, MinWafersDetail
from wsesim.specs import Deployment


def fullest_pe_bounds(plan: Plan) -> tuple[float, float]:
    """Bounds on the fullest PE's bytes, cheap to compute: below, the densest region's
    mean (the bytes its stages' tensors and KV store as cut, groups stored twice
    included, over its PEs: the fullest PE holds at least the mean); above, the sum
    over its stages of every tensor's largest block and of the largest buffers."""
    by_region: dict = {}
    for s in plan.stages:
        by_region.setdefault(s.region, []).append(s.content)
    low = high = 0.0
    for r, contents in by_region.items():
        low = max(low, sum(c.stored_bytes_low(r.rows, r.cols) for c in contents) / r.pes)
        high = max(high, sum(c.peak_bytes(r.rows, r.cols) for c in contents))
    reserve = plan.deployment.hardware.runtime_reserve_bytes
    return low + reserve, high + reserve


def plan_fits(plan: Plan) -> bool:
    """Every PE's bytes (tensors, metadata, KV, buffers, runtime) within its SRAM. The
    cheap bounds settle most plans; the per-PE ledger decides the rest."""
    sram = plan.deployment.hardware.pe_sram_bytes
    low, high = fullest_pe_bounds(plan)
    if high <= sram:
        return True
    if low > sram:
        return False
    return fullest_pe_bytes(plan) <= sram


def requested_plan(dep: Deployment, wafers: int) -> Plan:
    """The plan ``dep``'s mapping asks for on ``wafers`` wafers: cut by bytes, or with
    ``balance: time`` re-cut by the stages' decode times as the planner does (the byte
    plan, noted, when no re-cut makes the slowest region quicker)."""
    choice = Choice.of(dep)
    if choice.balance == "bytes":
        return make_plan(dep, wafers, choice)
    from wsesim.planner.space import PlanMaker   # the planner imports this module
    plan = PlanMaker(dep, wafers).build(choice).plan
    if plan.choice.balance != "time":
        plan = replace(plan, notes=(*plan.notes, "balance: time: no re-cut by the stages' "
                                    "decode times made the slowest region quicker; the "
                                    "byte-balanced plan runs"))
    return plan


def _stored_bytes(dep: Deployment) -> int:
    """Every tensor and KV cache packed whole (cutting into PE blocks only adds)."""
    units, _ = stage_units(dep, 1)
    return sum(s.content.whole_bytes for u in units for s in u)


def fewest_wafers_bound(dep: Deployment) -> int:
    """No fewer wafers can fit: the stored bytes exceed their usable SRAM otherwise."""
    rows, cols = dep.grid_shape
    per_wafer = rows * cols * dep.hardware.usable_pe_bytes
    return max(1, -(-_stored_bytes(dep) // per_wafer))


@dataclass
class WaferSearch:
    """What the search for the fewest wafers found: the count (None if none fits) and the
    last count that failed (``wafers - 1``, or the largest count when none fits; None
    when one wafer fits), with the plans it made on the way."""

    dep: Deployment
    wafers: int | None
    missed: int | None
    plans: dict[int, Plan]

    def miss(self, ledger: MemoryLedger | None = None) -> MinWafersDetail | None:
        """By how much the last count that failed missed: the bytes above SRAM on its
        fullest PE, and where that PE is. Uses the search's plan of that count (or
        ``ledger`` if it is that plan's, built by the caller already); a count the search
        skipped (its stored bytes exceed its usable SRAM) is planned once, and if it
        cannot be planned at all, the overflow is bounded below by the stored bytes."""
        n = self.missed
        if n is None:
            return None
        if ledger is None or ledger.plan is not self.plans.get(n):
            plan = self.plans.get(n)
            if plan is None:
                try:
                    plan = requested_plan(self.dep, n)
                except (KeyedError, ValueError):
                    return _bound_miss(self.dep, n)
            ledger = build_ledger(plan)
        fp = ledger.fullest_pe()
        sram = ledger.pe_sram_bytes
        where = f"wafer {fp.wafer}, PE row {fp.row} col {fp.col}, {fp.stage}"
        return MinWafersDetail(
            wafers=n, over_bytes=fp.bytes - sram, exact=True,
            fullest_pe=FullestPESummary(fp.wafer, fp.row, fp.col, fp.stage, fp.bytes,
                                        fp.by_category),
            summary=f"on {_count(n)}: {fp.bytes - sram:,} B over on the fullest PE "
                    f"({where}: {fp.bytes:,} of {sram:,} B)")


def _count(n: int) -> str:
    return f"{n} wafer{'s' if n != 1 else ''}"


def _bound_miss(dep: Deployment, n: int) -> MinWafersDetail:
    """A count that cannot be planned and whose stored bytes exceed its usable SRAM: its
    fullest PE is at least the mean overflow over its PEs."""
    rows, cols = dep.grid_shape
    pes = n * rows * cols
    short = _stored_bytes(dep) - pes * dep.hardware.usable_pe_bytes
    over = max(1, -(-short // pes))
    return MinWafersDetail(
        wafers=n, over_bytes=over, exact=False, fullest_pe=None,
        summary=f"on {_count(n)}: at least {over:,} B over on the fullest PE (the stored "
                f"bytes exceed the usable SRAM by {short:,} B; no plan could be made)")


def search_wafers(dep: Deployment, known: dict[int, Plan] | None = None) -> WaferSearch:
    """Fewest wafers on which ``dep`` fits, and the last count that did not.

    Tries counts upward from the aggregate bound; ``known`` holds plans already made
    (the requested count's, say) so they are not made twice, and receives the plans
    made here.
    """
    known = {} if known is None else known
    last = max_wafers(dep)
    for wafers in range(fewest_wafers_bound(dep), last + 1):
        if wafers not in known:
            known[wafers] = requested_plan(dep, wafers)
        if plan_fits(known[wafers]):
            return WaferSearch(dep, wafers, wafers - 1 if wafers > 1 else None, known)
    return WaferSearch(dep, None, last, known)


