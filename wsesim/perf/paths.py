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
    """``lanes`` lanes on ``tracks`` parallel tracks; each goes from ``start(i)`` to
    ``end(i)`` (row, col) in a straight line, or corner to corner."""

    lanes: int
    tracks: int
    kind: str                       # "edge", "side", "stacked" or "corner"
    first: int                      # the first shared row (side) or column (stacked)
    src: tuple[int, int]            # middle row and column of the source (or edge)
    dst: tuple[int, int]            # middle row and column of the destination

    @property
    def rounds(self) -> int:
        """Lanes one after another on the busiest track."""
        return math.ceil(self.lanes / self.tracks)

    def route(self, i: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Source and destination PE of lane ``i``."""
        track = self.first + i % self.tracks
        if self.kind in ("edge", "side"):
            return (track, self.src[1]), (track, self.dst[1])
        if self.kind == "stacked":
            return (self.src[0], track), (self.dst[0], track)
        return self.src, self.dst

    @property
    def routes(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        return [self.route(i) for i in range(self.lanes)]

    @property
    def hops(self) -> int:
        """Hops of the longest lane (every lane is as long: straight, or one corner)."""
        (a, b) = self.route(0)
        return abs(a[0] - b[0]) + abs(a[1] - b[1])

    @property
    def turns(self) -> int:
        (a, b) = self.route(0)
        return int(a[0] != b[0] and a[1] != b[1])


def lane_plan(src: Region | None, dst: Region) -> LanePlan:
    """The lanes from ``src`` (None: the wafer's west edge) into ``dst``."""
    dst_mid = (_middle(dst.row0, dst.rows), _middle(dst.col0, dst.cols))
    if src is None:  # from the west edge, along the destination's rows
        return LanePlan(dst.rows, dst.rows, "edge", dst.row0, (dst_mid[0], 0), dst_mid)
    src_mid = (_middle(src.row0, src.rows), _middle(src.col0, src.cols))
    lanes = min(src.rows, dst.rows)
    row_lo, rows_shared = _overlap(src.row0, src.rows, dst.row0, dst.rows)
    col_lo, cols_shared = _overlap(src.col0, src.cols, dst.col0, dst.cols)
    if rows_shared:      # side by side: lanes along shared rows
        return LanePlan(lanes, min(lanes, rows_shared), "side", row_lo, src_mid, dst_mid)
    if cols_shared:      # stacked: lanes down (or up) shared columns
        return LanePlan(lanes, min(lanes, cols_shared), "stacked", col_lo, src_mid, dst_mid)
    return LanePlan(lanes, 1, "corner", 0, src_mid, dst_mid)  # the lanes queue on one track
