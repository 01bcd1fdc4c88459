"""How activations travel from one region to the next: the lane plan both fidelities
use (the closed form prices it; the PE level routes it wavelet by wavelet).

The source holds the hidden vector cut along its rows (every PE of a row has that row's
slice). ``min(src rows, dst rows)`` lanes carry a slice each, along parallel tracks
through the boundary the two regions share: rows when they sit side by side, columns
when one is above the other, one track when they only touch at a corner (the lanes then
queue on it). Each lane is a straight run along its track; then every destination row
multicasts its slice along its columns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from wsesim.mapping.layout import Region


def _overlap(a0: int, an: int, b0: int, bn: int) -> tuple[int, int]:
    lo, hi = max(a0, b0), min(a0 + an, b0 + bn)
    return lo, max(0, hi - lo)


def _middle(start: int, size: int) -> int:
    return start + (size - 1) // 2


@dataclass(frozen=True)
class LanePlan:
    lanes: int
    tracks: int
    routes: tuple[tuple[tuple[int, int], tuple[int, int]], ...]  # (src PE, dst PE)

    @property
    def rounds(self) -> int:
        """Lanes one after another on the busiest track."""
        return math.ceil(self.lanes / self.tracks)

    @property
    def hops(self) -> int:
        """Hops of the longest lane."""
        return max((abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in self.routes), default=0)

    @property
    def turns(self) -> int:
        return int(any(a[0] != b[0] and a[1] != b[1] for a, b in self.routes))


def lane_plan(src: Region | None, dst: Region) -> LanePlan:
    """The lanes from ``src`` (None: the wafer's west edge) into ``dst``."""
    if src is None:  # from the west edge, along the destination's rows
        routes = tuple(((dst.row0 + i, 0), (dst.row0 + i, _middle(dst.col0, dst.cols)))
                       for i in range(dst.rows))
        return LanePlan(dst.rows, dst.rows, routes)
    lanes = min(src.rows, dst.rows)
    row_lo, rows_shared = _overlap(src.row0, src.rows, dst.row0, dst.rows)
    col_lo, cols_shared = _overlap(src.col0, src.cols, dst.col0, dst.cols)
    if rows_shared:      # side by side: lanes along shared rows
        tracks = min(lanes, rows_shared)
        routes = tuple(((row_lo + i % tracks, _middle(src.col0, src.cols)),
                        (row_lo + i % tracks, _middle(dst.col0, dst.cols)))
                       for i in range(lanes))
    elif cols_shared:    # stacked: lanes down (or up) shared columns
        tracks = min(lanes, cols_shared)
        routes = tuple(((_middle(src.row0, src.rows), col_lo + i % tracks),
                        (_middle(dst.row0, dst.rows), col_lo + i % tracks))
                       for i in range(lanes))
    else:                # corner to corner: one track, the lanes queue on it
        tracks = 1
        a = (_middle(src.row0, src.rows), _middle(src.col0, src.cols))
        b = (_middle(dst.row0, dst.rows), _middle(dst.col0, dst.cols))
        routes = tuple((a, b) for _ in range(lanes))
    return LanePlan(lanes, tracks, routes)
