"""Fit questions: does a plan fit, and on how few wafers would a deployment fit."""
from __future__ import annotations

from wsesim.mapping.plan import Plan, make_plan, max_wafers, stage_units
from wsesim.memory import fullest_pe_bytes
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


def fewest_wafers_bound(dep: Deployment) -> int:
    """No fewer wafers can fit: the stored bytes exceed their usable SRAM otherwise."""
    units, _ = stage_units(dep, 1)
    stored = sum(s.content.whole_bytes for u in units for s in u)
    rows, cols = dep.grid_shape
    per_wafer = rows * cols * dep.hardware.usable_pe_bytes
    return max(1, -(-stored // per_wafer))


def fewest_wafers(dep: Deployment, known: dict[int, Plan] | None = None) -> int | None:
    """Fewest wafers on which ``dep`` fits (None if no count does).

    Tries counts upward from the aggregate bound; ``known`` holds plans already made
    (the requested count's, say) so they are not made twice.
    """
    known = {} if known is None else known
    for wafers in range(fewest_wafers_bound(dep), max_wafers(dep) + 1):
        if wafers not in known:
            known[wafers] = make_plan(dep, wafers)
        if plan_fits(known[wafers]):
            return wafers
    return None
