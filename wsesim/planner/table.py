"""``wsesim plan``: the best plan on each wafer count of a range, as rows."""
from __future__ import annotations

from typing import Any

from wsesim.errors import KeyedError
from wsesim.mapping.plan import max_wafers
from wsesim.planner.policy import search
from wsesim.specs import Deployment

MAX_COUNTS = 64   # wafer counts one command searches (each is a search of seconds)


def wafer_range(text: str, dep: Deployment) -> range:
    """``A-B`` (or ``A``) as wafer counts, within 1 and the deployment's most wafers."""
    parts = text.split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        lo, hi = 0, -1
    most = max_wafers(dep)
    if not 1 <= lo <= hi:
        raise KeyedError("--wafers", f"expected a range A-B of wafer counts with 1 <= A <= "
                         f"B, got {text!r}")
    if hi > most:
        raise KeyedError("--wafers", f"{hi} wafers is more than the {most} units "
                         "(embeddings, each layer, LM head) that wafers can split")
    if hi - lo + 1 > MAX_COUNTS:
        raise KeyedError("--wafers", f"{hi - lo + 1} wafer counts: at most {MAX_COUNTS} "
                         "per command (a bound of wsesim; each count is a search)")
    return range(lo, hi + 1)


def plan_rows(dep: Deployment, wafers: range) -> list[dict[str, Any]]:
    """The best plan that fits (or the best that does not, marked) on each count."""
    rows = []
    for w in wafers:
        found = search(dep, w)
        best = found.best
        per_user, aggregate = best.rates()
        rows.append({"wafers": w, "fits": bool(best.fits), "strategy": best.choice.strategy,
                     "regions_per_wafer": best.choice.regions_per_wafer,
                     "balance": best.choice.balance,
                     "tokens_per_s_per_user": per_user, "tokens_per_s": aggregate,
                     "max_pe_bytes": best.max_pe_bytes, "searched": found.searched,
                     "notes": found.notes})
    return rows
