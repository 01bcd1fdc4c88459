"""Cutting dimensions, contiguous partitions and band layouts."""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wsesim.mapping.layout import apportion, layout_regions
from wsesim.mapping.partition import partition_contiguous
from wsesim.mapping.tiling import cut_row, groups_touched, split_units
from wsesim.quant import preset


@given(total=st.integers(0, 5000), parts=st.integers(1, 300), unit=st.integers(1, 256))
def test_split_units_sums_and_aligns(total, parts, unit):
    k = split_units(total, parts, unit)
    assert len(k) == parts and k.sum() == total and (k >= 0).all()
    # every cut but the partial last unit falls on a unit boundary
    ends = np.cumsum(k)[:-1]
    assert all(e % unit == 0 or e == total for e in ends)
    # no PE holds more than one unit above another
    assert k.max() - k.min() <= unit


def test_split_units_by_hand():
    assert split_units(10, 4).tolist() == [2, 2, 3, 3]
    assert split_units(256, 3, 128).tolist() == [0, 128, 128]
    assert split_units(7, 2, 2).tolist() == [4, 3]  # the partial pair ends the row
    assert split_units(7, 2, 3).tolist() == [3, 4]  # 3 units: the extra one holds the partial


def test_groups_touched_by_hand():
    # pieces [0,100) [100,200) [200,256) of a row with groups of 128
    assert groups_touched(np.array([100, 100, 56]), 128).tolist() == [1, 2, 1]
    assert groups_touched(np.array([0, 5]), None).tolist() == [0, 1]


def test_cut_row_prefers_group_boundaries_when_they_are_even():
    k, g = cut_row(1024, 4, preset("int4-g128"))
    assert k.tolist() == [256] * 4 and g.tolist() == [2] * 4


def test_cut_row_goes_fine_when_groups_are_too_few():
    # 2 groups over 8 PEs: aligned leaves 6 PEs idle; fine cuts store each scale 4 times
    k, g = cut_row(256, 8, preset("int4-g128"))
    assert k.tolist() == [32] * 8 and g.tolist() == [1] * 8


def test_cut_row_keeps_3p5_pairs_whole():
    k, _ = cut_row(258, 4, preset("w3.5-dense"))
    assert all(x % 2 == 0 for x in k) and k.sum() == 258


def brute_force_partition(w, parts):
    best = None
    for cuts in itertools.combinations(range(1, len(w)), parts - 1):
        b = [0, *cuts, len(w)]
        worst = max(sum(w[b[i]:b[i + 1]]) for i in range(parts))
        best = worst if best is None else min(best, worst)
    return best


@settings(max_examples=150)
@given(st.lists(st.floats(0.01, 100), min_size=1, max_size=9), st.data())
def test_partition_is_contiguous_nonempty_and_optimal(weights, data):
    parts = data.draw(st.integers(1, len(weights)))
    ranges = partition_contiguous(weights, parts)
    assert len(ranges) == parts
    assert [i for r in ranges for i in r] == list(range(len(weights)))  # each once, in order
    assert all(len(r) > 0 for r in ranges)
    worst = max(sum(weights[i] for i in r) for r in ranges)
    assert worst <= brute_force_partition(weights, parts) * (1 + 1e-9)


@given(st.lists(st.floats(0.1, 50), min_size=1, max_size=12), st.integers(12, 200))
def test_apportion_is_minmax_optimal(weights, total):
    sizes = apportion(weights, total)
    assert sum(sizes) == total and min(sizes) >= 1
    worst = max(w / s for w, s in zip(weights, sizes))
    # moving any unit from one item to another cannot lower the worst density
    for i, j in itertools.permutations(range(len(sizes)), 2):
        if sizes[i] > 1:
            moved = list(sizes)
            moved[i] -= 1
            moved[j] += 1
            assert max(w / s for w, s in zip(weights, moved)) >= worst * (1 - 1e-12)


@settings(max_examples=60)
@given(st.lists(st.floats(0.1, 50), min_size=1, max_size=30), st.integers(6, 60),
       st.integers(6, 60))
def test_layout_tiles_the_grid_exactly(weights, rows, cols):
    regions = layout_regions(weights, rows, cols, wafer=3)
    assert len(regions) == len(weights)
    owner = np.full((rows, cols), -1)
    for i, r in enumerate(regions):
        assert r.wafer == 3 and r.rows >= 1 and r.cols >= 1
        assert 0 <= r.row0 and r.row0 + r.rows <= rows
        assert 0 <= r.col0 and r.col0 + r.cols <= cols
        window = owner[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols]
        assert (window == -1).all(), "regions overlap"
        window[...] = i
    assert (owner >= 0).all(), "a PE belongs to no region"


def test_layout_keeps_consecutive_stages_adjacent():
    regions = layout_regions([1.0] * 12, 30, 40)
    for a, b in zip(regions, regions[1:]):
        touching_rows = a.row0 <= b.row0 + b.rows and b.row0 <= a.row0 + a.rows
        touching_cols = a.col0 <= b.col0 + b.cols and b.col0 <= a.col0 + a.cols
        assert touching_rows and touching_cols


def test_a_heavy_stage_among_light_ones_still_gets_a_layout():
    """Weight-balanced bands can give one band more stages than rows (found by
    hypothesis: 12 stages on 6 x 6); equal-count bands still tile the grid."""
    regions = layout_regions([1, 1, 1, 1, 7] + [1] * 7, 6, 6)
    assert len(regions) == 12
    assert sum(r.pes for r in regions) == 36
