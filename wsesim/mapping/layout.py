"""Rectangular regions of one wafer's grid for a sequence of stages.

Stages are laid out in bands (guillotine cuts): the stages are cut into contiguous
groups, each group takes a band of full-height columns (or full-width rows), and inside
a band each stage takes a run of rows (or columns) in proportion to its weight.
Consecutive stages stay adjacent (a serpentine order: bands alternate direction), so
activations move a short distance. Both band directions and many band counts are tried;
the candidate whose worst stage scores lowest wins (by default the densest region; the
planner scores by the bytes of the fullest PE).
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from wsesim.mapping.partition import partition_contiguous


@dataclass(frozen=True)
class Region:
    """A rectangle of PEs on one wafer, in grid coordinates (row, col of its corner)."""

    wafer: int
    row0: int
    col0: int
    rows: int
    cols: int

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def center(self) -> tuple[float, float]:
        return (self.row0 + (self.rows - 1) / 2, self.col0 + (self.cols - 1) / 2)


def apportion(weights: Sequence[float], total: int) -> list[int]:
    """Integer sizes >= 1 summing to ``total`` that minimize the largest weight/size.

    Any feasible split bounds the optimal density from above; sizes of
    ``ceil(weight / bound)`` are then no larger than optimal ones, and handing the
    remaining units one by one to the densest item (greedy, optimal for min-max)
    completes them.
    """
    n = len(weights)
    if n > total:
        raise ValueError(f"{n} stages cannot each get a row or column out of {total}")
    wsum = sum(weights) or 1.0
    first = [max(1, int(total * w / wsum)) for w in weights]
    while sum(first) > total:  # flooring at 1 can overshoot: take from the sparsest
        i = min((i for i in range(n) if first[i] > 1), key=lambda i: weights[i] / first[i])
        first[i] -= 1
    bound = max(w / f for w, f in zip(weights, first)) * (1 + 1e-12)
    sizes = [max(1, math.ceil(w / bound)) for w in weights]
    heap = [(-weights[i] / sizes[i], i) for i in range(n)]
    heapq.heapify(heap)
    for _ in range(total - sum(sizes)):
        _, i = heapq.heappop(heap)
        sizes[i] += 1
        heapq.heappush(heap, (-weights[i] / sizes[i], i))
    return sizes


def _band_groups(weights: Sequence[float], bands: int, rows: int) -> list[range]:
    """Contiguous groups of stages, one per band, balanced by weight; if that gives a band
    more stages than it has rows (one heavy stage among light ones), groups of equal
    counts instead (ceil(n / bands) <= rows is checked by the caller)."""
    groups = partition_contiguous(weights, bands)
    if max(len(g) for g in groups) <= rows:
        return groups
    return partition_contiguous([1.0] * len(weights), bands)


def _column_bands(weights: Sequence[float], rows: int, cols: int, bands: int,
                  ) -> list[tuple[int, int, int, int]]:
    """(row0, col0, rows, cols) per stage: ``bands`` full-height column bands."""
    groups = _band_groups(weights, bands, rows)
    widths = apportion([sum(weights[i] for i in g) for g in groups], cols)
    boxes = []
    col = 0
    for b, (group, width) in enumerate(zip(groups, widths)):
        heights = apportion([weights[i] for i in group], rows)
        row = 0
        band = []
        for h in heights:
            band.append((row, col, h, width))
            row += h
        if b % 2:  # serpentine: odd bands run bottom-up
            band = [(rows - r0 - h, c0, h, w) for r0, c0, h, w in band]
        boxes.extend(band)
        col += width
    return boxes


def _band_counts(n: int, rows: int, cols: int) -> list[int]:
    """Band counts worth trying. Rounding costs about bands/cols of density across the
    bands and (n/bands)/rows inside them, least near sqrt(n*cols/rows): all counts for a
    few stages, else a window around that and a geometric spread."""
    most = min(n, cols)
    if most <= 16:
        return list(range(1, most + 1))
    best = max(1, round((n * cols / rows) ** 0.5))
    counts = set(range(max(1, best - 4), min(most, best + 4) + 1))
    b = 1
    while b <= most:
        counts.add(b)
        b = max(b + 1, int(b * 1.5))
    counts.add(most)
    return sorted(counts)


def layout_regions(weights: Sequence[float], rows: int, cols: int, wafer: int = 0,
                   score: Callable[[int, int, int], float] | None = None) -> list[Region]:
    """One region per stage (in order) on a ``rows x cols`` grid, area ~ weight.

    ``score(stage, rows, cols)`` rates a stage on a region of that shape (lower is
    better); the layout whose worst stage rates lowest wins. Default: weight / area.
    """
    n = len(weights)
    if n == 0:
        return []
    if n > rows * cols:
        raise ValueError(f"{n} stages do not fit on {rows} x {cols} PEs, one PE each")
    rate = score or (lambda i, r, c: weights[i] / (r * c))
    best: tuple[float, list[Region]] | None = None
    for transposed in (False, True):
        r_, c_ = (cols, rows) if transposed else (rows, cols)
        for bands in _band_counts(n, r_, c_):
            if -(-n // bands) > r_:  # a band must give each of its stages a row
                continue
            try:
                boxes = _column_bands(weights, r_, c_, bands)
            except ValueError:
                continue
            if transposed:
                boxes = [(c0, r0, w, h) for r0, c0, h, w in boxes]
            worst = max(rate(i, h, w) for i, (_, _, h, w) in enumerate(boxes))
            if best is None or worst < best[0] * (1 - 1e-12):
                best = (worst, [Region(wafer, r0, c0, h, w) for r0, c0, h, w in boxes])
    if best is None:
        raise ValueError(f"no band layout of {n} stages on {rows} x {cols} PEs")
    return best[1]
