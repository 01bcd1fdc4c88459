"""The sweep charts: x tick labels that never run together (measured as rendered: no two
label boxes overlap) and that still show the swept range; charts for the swept keys
only."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from wsesim.sweeps.charts import (
    shown_tick_labels,
    tick_text,
    wants_log,
    write_sweep_charts,
)

CONTEXT = "workload.context_length"
BITS = "quantization.weights.bits"


def rows_for(xs, panels=("a",), bits=(16, 4), key=CONTEXT):
    rows = []
    for m, b, x in itertools.product(panels, bits, xs):
        rows.append({"model": m, BITS: b, key: x, "wafers": x if key == "wafers" else 1,
                     "min_wafers": 1 + x % 7, "tokens_per_s": 100.0 + x % 13,
                     "max_wafer_used_bytes": 1e9 * (1 + x % 5),
                     "wafer_capacity_bytes": 44e9, "fits": x % 3 > 0, "error": ""})
    return rows


def drawn(monkeypatch, tmp_path, rows, param_keys):
    """The figures write_sweep_charts saves, as drawn."""
    figures = []
    real = Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    paths, _ = write_sweep_charts(rows, tmp_path, param_keys)
    assert len(paths) == len(figures) >= 1
    return figures


def assert_readable_x(fig, distinct: int) -> None:
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if not ax.get_visible() or not ax.get_xlabel():
            continue
        labels = shown_tick_labels(ax)
        boxes = [lbl.get_window_extent(renderer) for lbl in labels]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), [lbl.get_text() for lbl in labels]
        assert len(labels) >= min(distinct, 2)


CASES = {
    "powers of two to 128K": [2048, 4096, 8192, 16384, 32768, 65536, 131072],
    "linear to a million": list(range(100_000, 1_000_001, 100_000)),
    "forty small values": list(range(1, 41)),
    "billions": [10**9, 2 * 10**9, 3 * 10**9, 5 * 10**9],
    "two close values": [131071, 131072],
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("panels", [4])
def test_min_wafers_chart_x_labels_do_not_overlap(monkeypatch, tmp_path, case, panels):
    xs = CASES[case]
    models = [f"m{i}" for i in range(panels)]
    figs = drawn(monkeypatch, tmp_path, rows_for(xs, models),
                 ["model", BITS, CONTEXT])
    assert_readable_x(figs[0], len(xs))


@settings(max_examples=6, deadline=None)
@given(xs=st.lists(st.integers(1, 10**7), min_size=2, max_size=24, unique=True),
       panels=st.integers(1, 3))
def test_any_swept_values_give_readable_x_labels(xs, panels):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        figs = drawn(mp, Path(tmp), rows_for(sorted(xs), [f"m{i}" for i in range(panels)]),
                     ["model", BITS, CONTEXT])
        assert_readable_x(figs[0], len(xs))


def test_wafer_charts_too(monkeypatch, tmp_path):
    figs = drawn(monkeypatch, tmp_path, rows_for(list(range(1, 65)), key="wafers"),
                 ["wafers", BITS])
    assert len(figs) == 2   # tokens/s and bytes per wafer
    for fig in figs:
        assert_readable_x(fig, 64)


def test_log_axis_for_geometric_values_only():
    assert wants_log([2048, 4096, 8192, 16384, 32768])
    assert not wants_log(list(range(1, 41)))
    assert not wants_log([1000, 2000, 4000])   # spans 4x only
    assert not wants_log([0, 1, 1000])


def test_tick_text():
    assert tick_text(131072) == "131,072"
    assert tick_text(2048.0) == "2,048"
    assert tick_text(0.5) == "0.5"


def test_titles_and_legends_draw_any_swept_text_literally(tmp_path):
    """A model named with mathtext's ``$`` (or a long name) draws as typed: no
    matplotlib parse error, no title wider than its panel."""
    odd = ["a$b", "x$^{$y", "m" * 400]
    rows = rows_for([1, 2, 4], panels=odd, key="wafers")
    for r in rows:
        r["quantization.weights"] = f"int{r[BITS]}$g"
    paths, _ = write_sweep_charts(rows, tmp_path, ["model", "wafers"])
    assert paths
    paths, _ = write_sweep_charts(rows, tmp_path, ["model", "quantization.weights",
                                                   "wafers"])
    assert paths
