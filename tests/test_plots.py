"""Heatmaps: the images drawn have the grid's shape and the plan's colours, the files
read back show them at the grid's aspect, overflowing PEs are marked and counted, one
panel per wafer side by side, and `wsesim run --plots` writes them."""
from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import tiny_hardware, tiny_model
from matplotlib.figure import Figure

from wsesim import plots
from wsesim.cli import main
from wsesim.literal import printable
from wsesim.run import simulate
from wsesim.specs import deployment_from_mapping

ROWS, COLS = 12, 20  # not square, so a transposed or resized image shows


def tiny_result(wafers=2, strategy="pipeline", rows=ROWS, cols=COLS, sram=49152,
                performance=True, layers=4):
    dep = deployment_from_mapping({
        "name": "plot-test", "model": tiny_model(num_hidden_layers=layers),
        "hardware": tiny_hardware(rows, cols, sram=sram), "wafers": wafers,
        "quantization": "int4-g128",
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8},
        "mapping": {"strategy": strategy}}, "<test>")
    return simulate(dep, with_performance=performance)


@pytest.fixture(scope="module")
def result():
    return tiny_result()


def test_wafer_arrays_are_the_ledgers(result):
    for w in range(result.wafers):
        used, stage_map = plots.used_map(result, w), plots.stage_map(result, w)
        ref = result.ledger.wafer(w)
        assert used.shape == stage_map.shape == (ROWS, COLS)
        np.testing.assert_array_equal(used, ref.used)
        np.testing.assert_array_equal(stage_map, ref.stage_map)


def _pixel_box(fig: Figure, ax, image_height: int) -> tuple[int, int, int, int]:
    """The heatmap axes' data area in the saved image: left, top, right, bottom (px)."""
    bb = ax.get_window_extent()
    return (round(bb.x0), round(image_height - bb.y1), round(bb.x1),
            round(image_height - bb.y0))


def test_placement_image_has_the_grid_shape_and_the_plans_colours(result, tmp_path):
    fig = plots.placement_figure(result, 0)
    (drawn,) = plots.drawn_images(fig)
    assert drawn.shape == (ROWS, COLS, 4)
    stage_map = plots.stage_map(result, 0)
    stages = result.plan.stages
    colour_of = {}
    for s in result.plan.wafers[0].stages:
        r = s.region
        block = drawn[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols].reshape(-1, 4)
        assert (block == block[0]).all(), s.name  # one colour per region
        colour_of[s.index] = tuple(block[0])
    # different parts (and different layers of one part) look different
    assert len(set(colour_of.values())) == len(colour_of)
    idle = drawn[stage_map == -1]
    assert (idle == np.round(np.array(plots.IDLE) * 255)).all()
    att = [colour_of[s.index] for s in stages if s.part == "attention" and s.index in colour_of]
    mlp = [colour_of[s.index] for s in stages if s.part == "mlp" and s.index in colour_of]
    assert att and mlp
    # attention is the blue ramp, MLP the orange one
    assert all(c[2] > c[0] for c in att) and all(c[0] > c[2] for c in mlp)

    # read the file back: the data area has the grid's aspect, and the PE at (r, c)
    # shows the colour drawn for it
    path = plots.save(fig, tmp_path / "placement.png")
    png = mpimg.imread(path)
    width, height = fig.get_size_inches() * fig.dpi
    assert png.shape[:2] == (round(height), round(width))
    (ax,) = plots.heatmap_axes(fig)
    left, top, right, bottom = _pixel_box(fig, ax, png.shape[0])
    assert abs((bottom - top) / (right - left) - ROWS / COLS) < 0.02
    for r in range(ROWS):
        for c in range(COLS):
            x = int(left + (c + 0.5) * (right - left) / COLS)
            y = int(top + (r + 0.5) * (bottom - top) / ROWS)
            np.testing.assert_allclose(png[y, x, :3], drawn[r, c, :3] / 255, atol=0.02)


def test_sequential_placement_says_every_pe_holds_every_layer():
    res = tiny_result(wafers=1, strategy="sequential", performance=False)
    fig = plots.placement_figure(res, 0)
    assert "every PE holds every layer" in fig.get_suptitle()
    (drawn,) = plots.drawn_images(fig)
    assert drawn.shape == (ROWS, COLS, 4)
    assert (drawn == drawn[0, 0]).all()


def test_overflow_mask_counts_the_right_pes_on_a_hand_made_grid():
    used = np.array([[100, 200, 300, 299],
                     [400, 50, 301, 0],
                     [300, 300, 1000, 10]], np.int64)
    sram = 300  # exactly full is not an overflow
    expected = {(1, 0), (1, 2), (2, 2)}
    mask = plots.overflow_mask(used, sram)
    assert {tuple(p) for p in np.argwhere(mask)} == expected
    ax = Figure().subplots()
    from matplotlib.colors import Normalize
    im, overlay, count = plots._draw_sram(ax, used, sram, 3, 4, 1, Normalize(0, 100),
                                          Normalize(100, 400))
    assert count == 3
    shown = overlay.get_array()
    assert {tuple(p) for p in np.argwhere(~np.ma.getmaskarray(shown))} == expected
    np.testing.assert_allclose(im.get_array(), used * 100 / sram, rtol=1e-6)


def test_sram_figure_marks_and_counts_overflowing_pes():
    res = tiny_result(wafers=1, sram=15000, performance=False)  # some PEs overflow
    used = res.ledger.wafer(0).used
    over = int((used > 15000).sum())
    assert 0 < over < used.size
    fig = plots.sram_figure(res, 0)
    assert f"{over:,} PEs overflow" in fig.get_suptitle()
    overlays = [im for ax in fig.axes for im in ax.get_images()
                if im.get_gid() == plots.OVERFLOW_GID]
    assert len(overlays) == 1
    np.testing.assert_array_equal(~np.ma.getmaskarray(overlays[0].get_array()),
                                  used > 15000)


def test_side_by_side_has_one_panel_per_wafer():
    res = tiny_result(wafers=3, performance=False)
    for make in (plots.placement_figure, plots.sram_figure):
        fig = make(res)
        assert len(plots.heatmap_axes(fig)) == 3
        assert [d.shape for d in plots.drawn_images(fig)] == [(ROWS, COLS, 4)] * 3
    titles = [ax.get_title() for ax in plots.heatmap_axes(plots.placement_figure(res))]
    assert [t.splitlines()[0] for t in titles] == ["wafer 0", "wafer 1", "wafer 2"]


def test_utilization_draws_each_regions_busy_fraction(result):
    busy = {s.index: (s.index + 1) / 100 for s in result.plan.stages}
    as_list = {"stage_busy": [{"stage": k, "busy": v} for k, v in busy.items()]}
    # given as a mapping, as a list, or by default the performance model's own figures
    own = {e["stage"]: e["busy"] for e in result.performance["stage_busy"]}
    for given, expected in ((busy, busy), (as_list, busy), (None, own)):
        fig = plots.utilization_figure(result, 1, stage_busy=given)
        (im,) = [i for ax in fig.axes for i in ax.get_images()]
        values = np.ma.filled(im.get_array().astype(float), np.nan)
        assert values.shape == (ROWS, COLS)
        for s in result.plan.wafers[1].stages:
            r = s.region
            np.testing.assert_allclose(
                values[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols],
                expected[s.index] * 100, rtol=1e-5)
    no_perf = tiny_result(wafers=1, performance=False)
    assert plots.utilization_figure(no_perf, 0) is None


def test_link_busy_array_is_drawn_per_pe(result):
    link = np.random.default_rng(0).random((ROWS, COLS))
    fig = plots.utilization_figure(result, 0, link_busy=[link, link])
    (im,) = [i for ax in fig.axes for i in ax.get_images()]
    np.testing.assert_allclose(im.get_array(), link * 100, rtol=1e-5)
    assert "link busy" in fig.get_suptitle()


def test_write_plots_per_wafer_side_by_side_and_svg(result, tmp_path):
    files = plots.write_plots(result, tmp_path / "png")
    names = sorted(p.name for p in files)
    assert names == sorted(f"plot-test-{k}-wafer{w}.png" for k in plots.KINDS
                           for w in range(result.wafers))
    for p in files:
        image = mpimg.imread(p)
        assert image.ndim == 3 and image.shape[2] in (3, 4) and image.std() > 0  # drawn
    both = plots.write_plots(result, tmp_path / "both", layout="both")
    assert len(both) == len(files) + 3
    svg = plots.write_plots(result, tmp_path / "svg", fmt="svg", kinds=("sram",))
    assert len(svg) == result.wafers
    assert all("<svg" in p.read_text()[:2000] for p in svg)
    no_perf = tiny_result(wafers=1, performance=False)
    skipped = plots.write_plots(no_perf, tmp_path / "noperf")
    assert len(skipped) == 2 and "utilization" in skipped.notes[0]
    with pytest.raises(ValueError):
        plots.write_plots(result, tmp_path, fmt="jpg")


def test_decimated_side_by_side_keeps_a_single_overflowing_pe():
    mask = np.zeros((10, 9), bool)
    mask[7, 4] = True
    shown = plots._block_max(mask, 4)
    assert shown.shape == (3, 3) and shown.sum() == 1 and shown[1, 1]


def test_cli_run_writes_plots_after_the_report(tmp_path, capsys):
    spec = {"name": "cli-plots", "model": tiny_model(), "hardware": tiny_hardware(ROWS, COLS),
            "wafers": 2, "quantization": "int4-g128",
            "workload": {"prompt_tokens": 16, "output_tokens": 8}}
    path = tmp_path / "dep.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    out = tmp_path / "plots"
    assert main(["run", str(path), "--format", "json", "--plots", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["name"] == "cli-plots"  # stdout stays pure JSON
    assert "wrote 9 plot(s)" in captured.err  # 3 kinds x (2 wafers + side by side)
    assert len(list(out.glob("*.png"))) == 9
    assert main(["run", str(path), "--plots", str(tmp_path / "svg"), "--plot-format",
                 "svg"]) == 0
    assert len(list((tmp_path / "svg").glob("*.svg"))) == 9


def test_pe_fidelity_link_heatmaps(tmp_path):
    dep = deployment_from_mapping({
        "name": "pe-links", "model": tiny_model(), "hardware": tiny_hardware(ROWS, COLS),
        "wafers": 2, "quantization": "int4-g128",
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8},
        "simulation": {"fidelity": "pe"}}, "<test>")
    res = simulate(dep)
    links = plots.pe_link_busy(res)
    assert links is not None and [a.shape for a in links] == [(ROWS, COLS)] * 2
    files = plots.write_plots(res, tmp_path, kinds=("links",))
    assert sorted(p.name for p in files) == ["pe-links-links-wafer0.png",
                                             "pe-links-links-wafer1.png"]
    fig = plots.utilization_figure(res, 1, link_busy=links)
    (im,) = [i for ax in fig.axes for i in ax.get_images()]
    np.testing.assert_allclose(im.get_array(), links[1] * 100, rtol=1e-5)
    # a tile-fidelity result has no link heatmap
    assert plots.pe_link_busy(tiny_result(wafers=1, performance=False)) is None


# ---- colour scales and titles ---------------------------------------------------------

def _main_norms(fig):
    return [(im.norm.vmin, im.norm.vmax) for ax in fig.axes for im in ax.get_images()
            if im.get_gid() == plots.IMAGE_GID]


@pytest.mark.parametrize("sram", [9000, 49152, 2**20])   # full, part full, nearly empty
def test_sram_scale_is_the_pes_sram_whatever_the_data(sram):
    res = tiny_result(wafers=2, sram=sram, performance=False)
    for wafers in (0, None):
        fig = plots.sram_figure(res, wafers)
        assert set(_main_norms(fig)) == {(0.0, 100.0)}  # % of the PE's SRAM
        (im, *_) = [i for ax in fig.axes for i in ax.get_images()]
        # an idle PE (runtime reserve only) is drawn at its share of SRAM, not saturated
        frac = res.hardware.runtime_reserve_bytes / sram
        assert np.isclose(im.norm(100 * frac), frac)


def test_busy_scale_is_zero_to_one_hundred_percent(result):
    busy = {s.index: 0.004 for s in result.plan.stages}   # 0.4 % busy: nearly idle
    fig = plots.utilization_figure(result, None, stage_busy=busy)
    assert set(_main_norms(fig)) == {(0.0, 100.0)}
    (im, *_) = [i for ax in fig.axes for i in ax.get_images()]
    assert im.norm(0.4) == pytest.approx(0.004)   # drawn near the bottom, not the top
    link = np.full((ROWS, COLS), 0.002)
    fig = plots.utilization_figure(result, 0, link_busy=[link])
    assert set(_main_norms(fig)) == {(0.0, 100.0)}


def _title_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title for ax in plots.heatmap_axes(fig)]
    return ([t.get_window_extent(renderer) for t in titles],
            fig._suptitle.get_window_extent(renderer), fig.bbox,
            [ax.get_window_extent(renderer) for ax in fig.axes
             if ax not in plots.heatmap_axes(fig) and ax.get_visible()])


LONG = "a-deployment-name-" * 8


@pytest.mark.parametrize("wafers,rows,cols,name", [
    (1, 12, 20, "short"), (5, 40, 10, LONG), (3, 10, 60, "wide $\\frac$ [b] grid\nname"),
    (9, 16, 16, LONG)])
def test_titles_stay_inside_the_figure_and_their_panel(wafers, rows, cols, name):
    dep = deployment_from_mapping({
        "name": name, "model": tiny_model(num_hidden_layers=2 * wafers, name=LONG),
        "hardware": tiny_hardware(rows, cols), "wafers": wafers, "quantization": "int4-g128",
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8}}, "<test>")
    res = simulate(dep)
    for make in (plots.placement_figure, plots.sram_figure, plots.utilization_figure):
        for shown in (0, None) if wafers < 9 else (None,):
            fig = make(res, shown)
            titles, heading, page, others = _title_boxes(fig)
            for box in (*titles, heading):
                assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, make.__name__
                assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, make.__name__
            for i, a in enumerate(titles):
                assert not any(a.overlaps(b) for b in titles[i + 1:])   # neighbours
                assert not any(a.overlaps(b) for b in others)            # colour bars
            # the names as typed (drawn, not read as math; a newline escaped), wrapped
            words = fig._suptitle.get_text().replace("\n", "").replace(" ", "")
            assert printable(name).replace(" ", "") in words


def test_a_name_as_long_as_a_book_keeps_the_figure_a_figure():
    dep = deployment_from_mapping({
        "name": "n" * 100_000, "model": tiny_model(name="m" * 50_000),
        "hardware": tiny_hardware(ROWS, COLS), "wafers": 2, "quantization": "int4-g128",
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8}}, "<test>")
    fig = plots.sram_figure(simulate(dep, with_performance=False))
    heading = fig._suptitle.get_text()
    assert len(heading) < 2 * plots.MAX_NAME_CHARS + 400
    assert "more characters" in heading
    assert fig.get_figheight() < 12
