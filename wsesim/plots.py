"""Heatmaps of the PE grid: placement (which layer and part each PE holds), SRAM used
per PE (with the PEs that overflow marked), and utilization (busy fraction per region,
or per link when the PE-level fidelity provides it).

Every panel is one image drawn from a numpy array (``imshow``), never one patch per PE,
so a full 1170 x 755 WSE-3 wafer renders in well under a second. Figures are plain
:class:`matplotlib.figure.Figure` objects rendered by Agg (no pyplot, no global state).
This module imports matplotlib at import time: import it lazily (``wsesim run`` without
``--plots`` never does).

Axes are in PE coordinates: x = PE column, y = PE row (row 0 at the top), one image per
wafer or all wafers side by side (``layout="side-by-side"``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from wsesim.figtext import set_headings, set_panel_title
from wsesim.literal import clipped, printable
from wsesim.result import Result
from wsesim.naming import slug

KINDS = ("placement", "sram", "utilization")
LAYOUTS = ("per-wafer", "side-by-side", "both")
FORMATS = ("png", "svg")

IMAGE_GID = "wsesim-heatmap"      # the main image of a panel (see drawn_images)
OVERFLOW_GID = "wsesim-overflow"  # the overlay marking PEs above their SRAM

# placement colours (RGBA, 0..1): attention and MLP are two ramps of lightness by layer
IDLE = (0.90, 0.90, 0.90, 1.0)
SHARED = (0.25, 0.55, 0.55, 1.0)      # sequential: every PE holds every layer
EMBEDDING = (0.17, 0.63, 0.17, 1.0)
LM_HEAD = (0.58, 0.20, 0.60, 1.0)
OVERFLOW_CMAP = "Reds"                # PEs above their SRAM, by how far
NO_DATA = (0.85, 0.85, 0.85, 1.0)
ATTENTION_CMAP = "Blues"
MLP_CMAP = "Oranges"
RAMP = (0.35, 1.0)                    # the part of each ramp used (light to dark)

PANEL_INCHES = 4.6                    # the longer side of one wafer's panel
MAX_SIDE_BY_SIDE_PIXELS = 1500        # decimate grids beyond this many px per panel side
MAX_OUTLINES = 5000                   # more region outlines than this would hide the map
MAX_NAME_CHARS = 160                  # of a model or deployment name in a figure's heading
MIN_FIGURE_WIDTH_INCHES = 5.8         # the narrowest figure (room for the colour bars)
MIN_FIGURE_HEIGHT_INCHES = 3.4        # room for a colour bar's label beside a wide grid
COLORBAR_PAD = 0.04                   # gap before a colour bar, as a fraction of the panels
SRAM_NORM = (0.0, 100.0)              # % of the PE's SRAM: the scale is the PE, not the data
BUSY_NORM = (0.0, 100.0)              # % of the simulated run
MIN_OVERFLOW_SPAN = 10.0              # the red ramp spans at least 100..110 % of SRAM


class PlotFiles(list):
    """The files written (a ``list[Path]``) and the notes on what was skipped."""

    def __init__(self, paths: Iterable[Path] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(paths)
        self.notes = list(notes)


# ----------------------------------------------------------------------------- data
def used_map(result: Result, wafer: int) -> npt.NDArray[np.int64]:
    """Bytes used per PE of one wafer (runtime reserve included): the ledger's array,
    built from its regions without caching whole-grid arrays per wafer (a 128-wafer
    plan would otherwise hold gigabytes)."""
    return _ledger(result).used_map(wafer)


def stage_map(result: Result, wafer: int) -> npt.NDArray[np.int32]:
    """The stage index per PE of one wafer (-1 none, -2 several stages share the PE)."""
    return _ledger(result).stage_map(wafer)


def _ledger(result: Result) -> Any:
    if result.ledger is None:
        raise ValueError("this result carries no ledger (a Result read back from JSON "
                         "has no per-PE arrays); plot the Result that simulate() returns")
    return result.ledger


def overflow_mask(used: npt.ArrayLike, sram_bytes: int) -> npt.NDArray[np.bool_]:
    """PEs whose bytes exceed their SRAM."""
    return np.asarray(used) > sram_bytes


def stage_busy_map(source: Any) -> dict[int, float] | None:
    """Busy fraction per stage index from ``result.performance`` (its ``stage_busy``), a
    list of ``{"stage": index, "busy": fraction}``, or a mapping ``{index: fraction}``;
    None when there is none."""
    if source is None:
        return None
    if isinstance(source, Result):
        source = source.performance
        if not source:
            return None
    if isinstance(source, Mapping) and "stage_busy" in source:
        source = source["stage_busy"]
    if source is None:
        return None
    if isinstance(source, Mapping):
        return {int(k): float(v) for k, v in source.items()}
    if isinstance(source, (list, tuple)):
        return {int(e["stage"]): float(e["busy"]) for e in source}
    raise TypeError("stage_busy: expected a mapping {stage: busy} or a list of "
                    "{'stage': index, 'busy': fraction}")


def _decimation(rows: int, cols: int, panels: int) -> int:
    """PEs per image pixel along each axis: every PE of a single wafer; side by side,
    at most MAX_SIDE_BY_SIDE_PIXELS per panel side."""
    if panels == 1:
        return 1
    return max(1, math.ceil(max(rows, cols) / MAX_SIDE_BY_SIDE_PIXELS))


def _block_max(a: np.ndarray, k: int) -> np.ndarray:
    """Max over k x k blocks (so one overflowing PE still shows when decimating)."""
    if k == 1:
        return a
    rows, cols = a.shape
    pr, pc = -rows % k, -cols % k
    fill = np.nan if a.dtype.kind == "f" else False   # float values or a bool mask
    padded = np.pad(a, ((0, pr), (0, pc)), constant_values=fill)
    blocks = padded.reshape((rows + pr) // k, k, (cols + pc) // k, k)
    return np.nanmax(blocks, axis=(1, 3)) if a.dtype.kind == "f" else blocks.max(axis=(1, 3))


def _stride(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else a[k // 2::k, k // 2::k]


# --------------------------------------------------------------------------- colours
def _ramp_cmap(name: str) -> ListedColormap:
    return ListedColormap(matplotlib.colormaps[name](np.linspace(*RAMP, 256)))


def placement_colors(result: Result, layers: tuple[int, int]) -> np.ndarray:
    """RGBA (uint8) per stage-map value: row ``value + 2`` for value -2 (shared), -1
    (idle), then stage 0, 1, ... Attention and MLP stages take a lightness by layer on
    their own ramp (blue, orange) normalised over ``layers``; embeddings are green, the
    LM head purple."""
    stages = result.plan.stages
    first, last = layers
    span = max(last - first, 1)
    att = matplotlib.colormaps[ATTENTION_CMAP]
    mlp = matplotlib.colormaps[MLP_CMAP]
    lut = np.empty((len(stages) + 2, 4))
    lut[0], lut[1] = SHARED, IDLE
    for s in stages:
        if s.part == "embedding":
            c = EMBEDDING
        elif s.part == "lm_head":
            c = LM_HEAD
        else:
            t = RAMP[0] + (RAMP[1] - RAMP[0]) * min(max((s.layer - first) / span, 0), 1)
            c = (att if s.part == "attention" else mlp)(t)
        lut[s.index + 2] = c
    return np.round(lut * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- figure
def _wafer_list(result: Result, wafers: int | Sequence[int] | None) -> list[int]:
    if wafers is None:
        return list(range(result.wafers))
    if isinstance(wafers, (int, np.integer)):
        wafers = [int(wafers)]
    out = [int(w) for w in wafers]
    for w in out:
        if not 0 <= w < result.wafers:
            raise ValueError(f"wafer {w} does not exist (this plan has {result.wafers})")
    return out


def _panel_grid(n: int, aspect: float) -> tuple[int, int]:
    """Rows and columns of panels: one row up to 8 wafers, then a near-square grid."""
    if n <= 8:
        return 1, n
    ncols = math.ceil(math.sqrt(n * aspect))
    return math.ceil(n / ncols), ncols


def _new_figure(rows: int, cols: int, n: int, dpi: int, extra_width: float,
                extra_height: float) -> tuple[Figure, list, float]:
    """A figure with ``n`` panels sized to the grid's aspect (``extra_width`` inches
    beside them for tick labels and colour bars), its axes, and the width in inches
    of one panel's heatmap: what its title may take, so that no title reaches a
    neighbour, a colour bar or the figure's edge."""
    aspect = rows / cols
    prow, pcol = _panel_grid(n, aspect)
    side = PANEL_INCHES if n == 1 else max(1.6, PANEL_INCHES * 1.6 / max(prow, pcol) ** 0.5)
    w = side if aspect <= 1 else side / aspect
    h = w * aspect
    if h > 7:  # keep very tall grids on a page
        h, w = 7.0, 7.0 / aspect
    width = max(pcol * w + extra_width, MIN_FIGURE_WIDTH_INCHES)
    height = max(prow * h + extra_height, MIN_FIGURE_HEIGHT_INCHES)
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(prow, pcol, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n], w


def _show(ax, image: np.ndarray, rows: int, cols: int, gid: str = IMAGE_GID, **kwargs):
    """One PE per cell (row 0 at the top); ``gid`` tells the main image from overlays."""
    im = ax.imshow(image, origin="upper", interpolation="nearest", aspect="equal",
                   extent=(-0.5, cols - 0.5, rows - 0.5, -0.5), **kwargs)
    im.set_gid(gid)
    ax.set_xlabel("PE column")
    ax.set_ylabel("PE row")
    return im


def _outlines(ax, result: Result, wafer: int) -> None:
    """Each stage's region as a thin outline (one collection per wafer)."""
    rects = []
    seen = set()
    for s in result.plan.stages:
        r = s.region
        if r is None or r.wafer != wafer or (r.row0, r.col0, r.rows, r.cols) in seen:
            continue
        seen.add((r.row0, r.col0, r.rows, r.cols))
        x0, y0 = r.col0 - 0.5, r.row0 - 0.5
        x1, y1 = x0 + r.cols, y0 + r.rows
        rects.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    if 1 < len(rects) <= MAX_OUTLINES:
        ax.add_collection(PolyCollection(rects, facecolors="none", edgecolors="white",
                                         linewidths=0.3, alpha=0.8))


def _wafer_words(result: Result, wafer: int) -> str:
    return printable(", ".join(result.partition[wafer].holds))


def _heading(result: Result, what: str, wafers: list[int]) -> str:
    where = f"wafer {wafers[0]} of {result.wafers}" if len(wafers) == 1 else \
        f"{len(wafers)} wafers"
    return (f"{clipped(result.model.name, MAX_NAME_CHARS)} "
            f"({clipped(result.name, MAX_NAME_CHARS)}), {where}\n{what}")


def _wafer_title(result: Result, wafer: int, extra: str = "") -> str:
    words = _wafer_words(result, wafer)
    return "\n".join(t for t in (f"wafer {wafer}", words, extra) if t)


def _title_size(wafers: list[int]) -> float:
    return 9 if len(wafers) == 1 else 7


def _label_outer(axes: list, n: int) -> None:
    """Axis labels on the outer panels only (side by side)."""
    if n == 1:
        return
    for ax in axes:
        ss = ax.get_subplotspec()
        if ss is not None and not ss.is_first_col():
            ax.set_ylabel("")


def _pct(frac: float) -> str:
    return f"{100 * frac:.1f}%"


def placement_figure(result: Result, wafers: int | Sequence[int] | None = None,
                     dpi: int = 100) -> Figure:
    """Which layer and part each PE holds: one panel per wafer in ``wafers`` (an index,
    a list, or None for all, side by side). Attention regions are blue and MLP regions
    orange, darker for later layers; embeddings green, the LM head purple, idle PEs
    light grey. Under ``sequential`` every PE of a wafer holds every layer of it."""
    wl = _wafer_list(result, wafers)
    rows, cols = result.ledger.deployment.grid_shape
    plan = result.plan
    layer_ids = [s.layer for s in plan.stages if s.layer is not None and s.region is not None
                 and s.region.wafer in wl]
    layers = (min(layer_ids), max(layer_ids)) if layer_ids else (0, 0)
    lut = placement_colors(result, layers)
    fig, axes, panel_inches = _new_figure(rows, cols, len(wl), dpi, 2.2, 1.2)
    k = _decimation(rows, cols, len(wl))
    sequential = result.strategy == "sequential"
    parts_seen: set[str] = set()
    for ax, w in zip(axes, wl):
        shown = _stride(stage_map(result, w), k)
        _show(ax, lut[shown + 2], rows, cols)
        present = np.unique(shown)
        parts_seen.update(plan.stages[i].part for i in present if i >= 0)
        if -1 in present:
            parts_seen.add("idle")
        if -2 in present:
            parts_seen.add("shared")
        if not sequential:
            _outlines(ax, result, w)
        set_panel_title(ax, _wafer_title(result, w), panel_inches, _title_size(wl))
    _label_outer(axes, len(wl))
    what = "placement (colour: layer; blue attention, orange MLP)"
    if sequential:
        what = "placement, sequential: every PE holds every layer of its wafer"
    set_headings(fig, axes, _heading(result, what, wl), _title_size(wl))
    if {"attention", "mlp"} & parts_seen and layers[1] >= layers[0]:
        norm = Normalize(layers[0] - 0.5, layers[1] + 0.5)
        for part, cmap, label in (("attention", ATTENTION_CMAP, "attention: layer"),
                                  ("mlp", MLP_CMAP, "MLP: layer")):
            if part in parts_seen:
                sm = ScalarMappable(norm, _ramp_cmap(cmap))
                cb = fig.colorbar(sm, ax=axes, shrink=0.8, aspect=30, pad=COLORBAR_PAD)
                cb.set_label(label)
                cb.ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    handles = [Patch(color=c, label=lbl) for key, c, lbl in (
        ("embedding", EMBEDDING, "embeddings"), ("lm_head", LM_HEAD, "final norm + LM head"),
        ("shared", SHARED, "every layer of the wafer (sequential)"),
        ("idle", IDLE, "idle (runtime only)")) if key in parts_seen]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   fontsize=8, frameon=False)
    return fig


def _draw_sram(ax, used: np.ndarray, sram: int, rows: int, cols: int, k: int,
               norm: Normalize, over_norm: Normalize) -> tuple[Any, Any, int]:
    """SRAM fraction image plus the overflow overlay (a red ramp by how far above SRAM);
    returns (image, overlay or None, overflowing PEs)."""
    over = overflow_mask(used, sram)
    count = int(over.sum())
    frac = _block_max(used.astype(np.float32) * np.float32(100.0 / sram), k)
    im = _show(ax, frac, rows, cols, cmap="viridis", norm=norm)
    ov = None
    if count:
        shown = _block_max(over, k)
        overlay = np.ma.masked_array(frac, mask=~shown)
        ov = _show(ax, overlay, rows, cols, OVERFLOW_GID, cmap=_ramp_cmap(OVERFLOW_CMAP),
                   norm=over_norm)
    return im, ov, count


def sram_figure(result: Result, wafers: int | Sequence[int] | None = None,
                dpi: int = 100) -> Figure:
    """Bytes used per PE (runtime reserve included) as a percentage of its SRAM, on a
    colour scale from 0 to 100 % of the PE's SRAM whatever the data (an idle wafer looks
    empty, a full one full); PEs that need more than their SRAM are red (darker the
    further over, on a ramp from 100 % to the fullest PE's need, at least 110 %) and
    counted in the titles."""
    wl = _wafer_list(result, wafers)
    rows, cols = result.ledger.deployment.grid_shape
    sram = result.hardware.pe_sram_bytes
    fig, axes, panel_inches = _new_figure(rows, cols, len(wl), dpi, 1.6, 1.0)
    k = _decimation(rows, cols, len(wl))
    peak = max(result.partition[w].max_pe_bytes for w in wl)
    norm = Normalize(*SRAM_NORM)
    over_norm = Normalize(100, max(100 * peak / sram, 100 + MIN_OVERFLOW_SPAN))
    total = 0
    im = ov_image = None
    for ax, w in zip(axes, wl):
        im, ov, count = _draw_sram(ax, used_map(result, w), sram, rows, cols, k, norm,
                                   over_norm)
        ov_image = ov or ov_image
        total += count
        fullest = result.partition[w].max_pe_bytes
        if len(wl) == 1:
            extra = (f"fullest PE {fullest:,} B ({_pct(fullest / sram)}); "
                     + (f"{count:,} PEs overflow" if count else "no PE overflows"))
        else:
            extra = f"fullest {_pct(fullest / sram)}" + (
                f", {count:,} over" if count else "")
        set_panel_title(ax, _wafer_title(result, w, extra), panel_inches, _title_size(wl))
    _label_outer(axes, len(wl))
    what = f"SRAM used per PE (% of {sram:,} B)"
    what += f"; {total:,} PEs overflow (red)" if total else "; no PE overflows"
    set_headings(fig, axes, _heading(result, what, wl), _title_size(wl))
    cb = fig.colorbar(im, ax=axes, shrink=0.8, aspect=30, pad=COLORBAR_PAD)
    cb.set_label("SRAM used (% of the PE's)")
    if ov_image is not None:
        cb = fig.colorbar(ov_image, ax=axes, shrink=0.8, aspect=30, pad=COLORBAR_PAD)
        cb.set_label("overflow: needs (% of SRAM)")
    return fig


def _link_array(link_busy: Any, wafer: int) -> np.ndarray | None:
    if link_busy is None:
        return None
    if isinstance(link_busy, Mapping):
        a = link_busy.get(wafer)
    elif isinstance(link_busy, np.ndarray) and link_busy.ndim == 2:
        a = link_busy if wafer == 0 else None
    else:
        a = link_busy[wafer] if wafer < len(link_busy) else None
    return None if a is None else np.asarray(a, np.float32)


def utilization_figure(result: Result, wafers: int | Sequence[int] | None = None,
                       stage_busy: Any = None, link_busy: Any = None,
                       dpi: int = 100) -> Figure | None:
    """Busy fraction of each region (from ``stage_busy``, by default
    ``result.performance["stage_busy"]``), or, given ``link_busy`` (a rows x cols array
    per wafer: a list, a mapping by wafer, or one array for wafer 0), the busy fraction
    of each PE's links. None when neither is available. Under ``sequential`` the
    shared grid shows the largest busy fraction reported for its stages (the
    performance model reports the whole grid's for each). Titles add the busy fraction
    of each wafer's link to the next (``performance["link_busy"]``)."""
    wl = _wafer_list(result, wafers)
    busy = stage_busy_map(stage_busy if stage_busy is not None else result)
    if busy is None and link_busy is None:
        return None
    rows, cols = result.ledger.deployment.grid_shape
    perf = result.performance or {}
    interwafer = [float(b) for b in perf.get("link_busy") or []
                  if isinstance(b, (int, float))]  # one per wafer-to-wafer link
    fig, axes, panel_inches = _new_figure(rows, cols, len(wl), dpi, 1.6, 1.0)
    k = _decimation(rows, cols, len(wl))
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad=NO_DATA)
    busy = busy or {}
    panels = []
    for w in wl:
        link = _link_array(link_busy, w)
        if link is not None:
            panels.append((link * 100, "link busy"))
            continue
        stages = stage_map(result, w)
        lut = np.full(len(result.plan.stages) + 2, np.nan, np.float32)
        known = []
        for s in result.plan.stages:
            if s.region is not None and s.region.wafer == w and s.index in busy:
                lut[s.index + 2] = busy[s.index] * 100
                known.append(busy[s.index])
        lut[0] = min(max(known), 1.0) * 100 if known else np.nan
        panels.append((lut[stages + 2], "busy per region"))
    # 0..100 % whatever the data: a pipeline at batch 1 is mostly idle, and must look so
    norm = Normalize(*BUSY_NORM)
    im = None
    for ax, w, (values, label) in zip(axes, wl, panels):
        shown = _block_max(values, k)
        im = _show(ax, np.ma.masked_invalid(shown), rows, cols, cmap=cmap, norm=norm)
        finite = values[np.isfinite(values)]
        extra = f"{label}: mean {finite.mean():.3g}%, max {finite.max():.3g}%" \
            if finite.size else f"{label}: no data"
        if w < len(interwafer):
            extra += f"\nlink to wafer {w + 1}: busy {100 * interwafer[w]:.3g}%"
        set_panel_title(ax, _wafer_title(result, w, extra), panel_inches, _title_size(wl))
    _label_outer(axes, len(wl))
    what = "link busy fraction per PE" if link_busy is not None else \
        "busy fraction per region"
    set_headings(fig, axes, _heading(result, what, wl), _title_size(wl))
    cb = fig.colorbar(im, ax=axes, shrink=0.8, aspect=30, pad=COLORBAR_PAD)
    cb.set_label("busy (% of the simulated run)")
    return fig


FIGURES = {"placement": placement_figure, "sram": sram_figure,
           "utilization": utilization_figure}


# ----------------------------------------------------------------------------- helpers
def drawn_images(fig: Figure) -> list[np.ndarray]:
    """The RGBA arrays (uint8, rows x cols x 4, in data order) of each panel's main
    image, as drawn: what the tests read back to check the grid's shape and colours."""
    out = []
    for ax in fig.axes:
        for im in ax.get_images():
            if im.get_gid() == IMAGE_GID:
                a = im.get_array()
                out.append(np.asarray(a) if a.ndim == 3 and a.dtype == np.uint8
                           else im.to_rgba(a, bytes=True))
    return out


def heatmap_axes(fig: Figure) -> list:
    """The axes holding a heatmap (one per wafer panel), in panel order."""
    return [ax for ax in fig.axes if any(im.get_gid() == IMAGE_GID for im in ax.get_images())]


def save(fig: Figure, path: str | Path, dpi: int | None = None) -> Path:
    """Write a figure (PNG or SVG by the suffix) with Agg at the figure's dpi."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi or fig.dpi)
    return path


def pe_link_busy(result: Result) -> list[np.ndarray] | None:
    """Per-PE link busy fractions of a ``simulation: {fidelity: pe}`` run (the busiest
    of each router's four outgoing links, one rows x cols array per wafer), or None
    when the result has none."""
    if result.plan is None or result.plan.deployment.simulation.fidelity != "pe":
        return None
    from wsesim.sim.pe import pe_utilization
    links = pe_utilization(result)["link"]
    if not links or not any(np.any(a) for a in links):
        return None
    return links


def write_plots(result: Result, out_dir: str | Path, fmt: str = "png",
                layout: str = "per-wafer", dpi: int = 100, stage_busy: Any = None,
                link_busy: Any = None, kinds: Sequence[str] = (*KINDS, "links")
                ) -> PlotFiles:
    """Write the placement, SRAM and (when busy fractions exist) utilization heatmaps of
    ``result`` into ``out_dir``: ``<name>-<kind>-wafer<i>.<fmt>`` per wafer
    (``layout="per-wafer"``), ``<name>-<kind>.<fmt>`` with all wafers side by side
    (``"side-by-side"``), or both (``"both"``; the side-by-side only for more than one
    wafer). ``links`` heatmaps (busy fraction of each PE's links) are written when
    ``link_busy`` is given or the result comes from ``simulation: {fidelity: pe}``.
    Returns the paths written, with ``.notes`` on what was skipped."""
    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = slug(result.name, "deployment")
    files = PlotFiles()
    busy = stage_busy_map(stage_busy if stage_busy is not None else result)
    links = link_busy if link_busy is not None else (
        pe_link_busy(result) if "links" in kinds else None)
    groups: list[tuple[str, list[int] | None]] = []
    if layout in ("per-wafer", "both"):
        groups += [(f"-wafer{w}", [w]) for w in range(result.wafers)]
    if layout == "side-by-side" or (layout == "both" and result.wafers > 1):
        groups.append(("", None))
    for kind in kinds:
        if kind == "utilization" and busy is None:
            files.notes.append("utilization heatmap skipped: no busy fractions (the "
                               "result has no performance['stage_busy'])")
            continue
        if kind == "links" and links is None:
            continue  # only the PE-level fidelity measures links
        for suffix, wafers in groups:
            if kind == "utilization":
                fig = utilization_figure(result, wafers, busy, None, dpi)
            elif kind == "links":
                fig = utilization_figure(result, wafers, None, links, dpi)
            else:
                fig = FIGURES[kind](result, wafers, dpi=dpi)
            files.append(save(fig, out / f"{stem}-{kind}{suffix}.{fmt}", dpi))
    return files
