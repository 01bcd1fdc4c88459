"""Contiguous ranges (layers to wafers, stages to bands), balanced so that the fullest
range is as light as it can be."""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Sequence


def _ranges_needed(prefix: list[float], limit: float, most: int) -> int:
    """Fewest contiguous ranges with sums <= limit (stops counting past ``most``)."""
    n = len(prefix) - 1
    start, ranges = 0, 0
    while start < n:
        end = bisect_right(prefix, prefix[start] + limit) - 1
        if end <= start:
            return most + 1  # an item heavier than the limit
        start, ranges = end, ranges + 1
        if ranges > most:
            return ranges
    return ranges


def partition_contiguous(weights: Sequence[float], parts: int) -> list[range]:
    """Split ``weights`` into ``parts`` non-empty contiguous ranges minimizing the
    largest range sum (bisection on the limit to a relative 1e-9, then a greedy cut)."""
    n = len(weights)
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} items into {parts} non-empty contiguous ranges")
    prefix = [0.0, *accumulate(float(w) for w in weights)]
    lo, hi = max(weights), prefix[-1]
    slack = 1e-10 * max(hi, 1.0)
    hi += slack
    if _ranges_needed(prefix, lo + slack, parts) <= parts:
        hi = lo + slack
    while hi - lo > slack:
        mid = (lo + hi) / 2
        if _ranges_needed(prefix, mid, parts) <= parts:
            hi = mid
        else:
            lo = mid
    limit = hi
    # Greedy from the end, leaving at least one item for each range still to come, so
    # every range is non-empty and none exceeds the limit.
    cuts: list[int] = []
    end = n
    for remaining in range(parts, 1, -1):
        start = end - 1
        while start - 1 >= remaining - 1 and prefix[end] - prefix[start - 1] <= limit:
            start -= 1
        cuts.append(start)
        end = start
    bounds = [0, *reversed(cuts), n]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]
