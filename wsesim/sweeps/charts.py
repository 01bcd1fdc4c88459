"""The charts of a sweep: tokens/s and bytes on the fullest wafer against wafer count,
the fewest wafers against context length. Imports matplotlib: import it lazily (a
sweep without ``out`` or with ``charts=False`` never does).

The x axis shows the swept values: a log axis (base 2) when they span 16x or more in
even ratios (the context lengths 2,048 ... 131,072 are then evenly spaced), labels with
thousands separators and slanted, and ticks thinned until no two labels touch.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from wsesim.figtext import set_panel_title
from wsesim.literal import clipped
from wsesim.sweeps.spec import point_key

BITS_KEY = "quantization.weights.bits"  # the sweep parameter drawn as one line per value
MAX_CHART_PANELS = 12
MAX_X_TICKS = 8             # swept values shown as ticks at most (more: a locator picks)
LOG_X_SPAN = 16             # x values spanning this ratio or more go on a log axis
MAX_THINNING_ROUNDS = 6     # halvings of the ticks (2**6 = 64x fewer) before giving up
MAX_LABEL_CHARS = 80        # of a swept value in a panel title or legend entry
PANEL_WIDTH_IN = 4.2


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1] if key != BITS_KEY else "weight bits"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _sort_key(v: Any) -> tuple:
    n = _num(v)
    return (0, -n, "") if n is not None else (1, 0, str(v))


def tick_text(value: float, _pos: Any = None) -> str:
    """A tick label: integers with thousands separators (131,072), others in 4
    significant digits."""
    if math.isfinite(value) and value == round(value) and abs(value) < 1e15:
        return f"{int(round(value)):,}"
    return f"{value:.4g}"


def _spread(gaps: Sequence[float]) -> float:
    """How uneven the gaps are (coefficient of variation)."""
    mean = sum(gaps) / len(gaps)
    return math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean if mean else 0.0


def wants_log(values: Sequence[float]) -> bool:
    """A log axis for positive values spanning LOG_X_SPAN or more whose steps are more
    even as ratios than as differences (2,048, 4,096, ... 131,072), a linear one
    otherwise (1, 2, ... 40)."""
    if len(values) < 2 or values[0] <= 0 or values[-1] / values[0] < LOG_X_SPAN:
        return False
    if len(values) == 2:
        return True
    linear = [b - a for a, b in zip(values, values[1:])]
    ratios = [math.log(b / a) for a, b in zip(values, values[1:])]
    return _spread(ratios) < _spread(linear)


def _x_axis(ax: Any, xs: Sequence[float]) -> None:
    """Ticks at the swept values (up to MAX_X_TICKS), a log axis for wide geometric
    spans."""
    values = sorted(set(xs))
    log = wants_log(values)
    if log:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    if len(values) <= MAX_X_TICKS:
        ax.xaxis.set_major_locator(FixedLocator(values))
    elif log:
        step = math.ceil(len(values) / MAX_X_TICKS)
        ax.xaxis.set_major_locator(FixedLocator(values[::step]))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=MAX_X_TICKS - 2, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(tick_text))
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")


def shown_tick_labels(ax: Any) -> list[Any]:
    """The x tick labels drawn inside the axis' view (text not empty)."""
    lo, hi = sorted(ax.get_xlim())
    ticks = ax.xaxis.get_major_ticks()
    locs = ax.xaxis.get_majorticklocs()
    return [t.label1 for t, x in zip(ticks, locs)
            if t.label1.get_visible() and t.label1.get_text() and lo <= x <= hi]


def thin_overlapping_ticks(fig: Figure) -> None:
    """Drop every other x tick of an axis while two of its labels overlap (as rendered),
    so long numbers never run together whatever the panel width."""
    for _ in range(MAX_THINNING_ROUNDS):
        fig.draw_without_rendering()   # layout and text extents, no pixels
        renderer = fig.canvas.get_renderer()
        crowded = []
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            boxes = [lbl.get_window_extent(renderer) for lbl in shown_tick_labels(ax)]
            if any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2)):
                crowded.append(ax)
        if not crowded:
            return
        for ax in crowded:
            lo, hi = sorted(ax.get_xlim())
            locs = [x for x in ax.xaxis.get_majorticklocs() if lo <= x <= hi]
            ax.xaxis.set_major_locator(FixedLocator(locs[::2]))


def _collect(rows: list[dict[str, Any]], x: str, y: str, panel_keys: list[str],
             series: str | None) -> dict[tuple, dict[str, dict[float, dict[str, Any]]]]:
    panels: dict[tuple, dict[str, dict[float, dict[str, Any]]]] = {}
    for r in rows:
        xv, yv = _num(r.get(x)), _num(r.get(y))
        if xv is None or yv is None or r.get("error"):
            continue
        pk = tuple(point_key({"v": r.get(k)}) for k in panel_keys)
        sv = r.get(series) if series else None
        panels.setdefault(pk, {}).setdefault(point_key({"v": sv}), {}).setdefault(xv, r)
    return panels


def chart_figure(rows: list[dict[str, Any]], param_keys: Sequence[str], x: str, y: str,
                 ylabel: str, title: str, scale: float = 1.0,
                 capacity: str | None = None, ignore: Sequence[str] = (),
                 mark_fit: bool = True, y_from_zero: bool = False,
                 integer_y: bool = False, linked: Sequence[Sequence[str]] = (),
                 name: str = "chart") -> tuple[Figure | None, list[str]]:
    """Lines of ``y`` against ``x``, one per value of the weight bits (when swept), one
    panel per combination of the other swept parameters; hollow markers do not fit.
    None (and a note) when no successful point has both numbers."""
    notes: list[str] = []
    series = BITS_KEY if BITS_KEY in param_keys else next(
        (k for k in ("quantization.weights", "quantization") if k in param_keys), None)
    with_x = {k for group in linked if x in group for k in group}  # zipped with x
    panel_keys = [k for k in param_keys if k not in (x, series, *ignore, *with_x)]
    panels = _collect(rows, x, y, panel_keys, series)
    if not panels:
        return None, [f"{name} skipped: no successful point has both {x} and {y}"]
    keys = list(panels)
    if len(keys) > MAX_CHART_PANELS:
        notes.append(f"{name}: {len(keys)} combinations of "
                     f"{', '.join(panel_keys)}; the first {MAX_CHART_PANELS} are drawn")
        keys = keys[:MAX_CHART_PANELS]
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(PANEL_WIDTH_IN * ncols + 1.6, 3.2 * nrows + 0.8), dpi=100,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = matplotlib.colormaps["viridis"]
    all_series = sorted({s for k in keys for s in panels[k]},
                        key=lambda s: _sort_key(json.loads(s)["v"]))
    colours = {s: cmap(i / max(len(all_series) - 1, 1) * 0.9)
               for i, s in enumerate(all_series)}
    for ax, pk in zip(axes, keys):
        for s in all_series:
            pts = panels[pk].get(s)
            if not pts:
                continue
            xs = sorted(pts)
            ys = [_num(pts[v].get(y)) * scale for v in xs]
            fits = [bool(pts[v].get("fits")) or not mark_fit for v in xs]
            label = _series_label(series, json.loads(s)["v"])
            c = colours[s]
            ax.plot(xs, ys, "-", color=c, label=label, linewidth=1.5)
            ax.scatter([a for a, f in zip(xs, fits) if f], [b for b, f in zip(ys, fits) if f],
                       color=c, zorder=3, s=22)
            ax.scatter([a for a, f in zip(xs, fits) if not f],
                       [b for b, f in zip(ys, fits) if not f],
                       facecolors="white", edgecolors=c, zorder=3, s=22)
        if capacity:
            caps = sorted({_num(r.get(capacity)) for pts in panels[pk].values()
                           for r in pts.values() if _num(r.get(capacity))})
            for cap in caps:
                ax.axhline(cap * scale, color="black", linestyle="--", linewidth=1)
            if caps:
                ax.text(0.01, caps[-1] * scale, " SRAM per wafer", va="bottom", fontsize=7,
                        transform=ax.get_yaxis_transform())
        _x_axis(ax, [v for pts in panels[pk].values() for v in pts])
        if integer_y:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if y_from_zero:
            ax.set_ylim(bottom=0)
        ax.set_xlabel(_short(x) if x != "wafers" else "wafers")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        words = ", ".join(f"{_short(k)} {json.loads(v)['v']}" for k, v in zip(panel_keys, pk))
        if words:
            set_panel_title(ax, clipped(words, MAX_LABEL_CHARS), PANEL_WIDTH_IN, 9)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:len(keys)]:
        for h, lbl in zip(*ax.get_legend_handles_labels()):
            if lbl not in labels:
                handles.append(h)
                labels.append(lbl)
    if labels and series:
        legend = fig.legend(handles, [clipped(lbl, MAX_LABEL_CHARS) for lbl in labels],
                            loc="outside right upper", fontsize=8,
                            title="filled: fits\nhollow: does not" if mark_fit else None,
                            title_fontsize=7)
        for text in legend.get_texts():
            text.set_parse_math(False)
    fig.suptitle(title, fontsize=11)
    thin_overlapping_ticks(fig)
    return fig, notes


def _chart(rows: list[dict[str, Any]], param_keys: Sequence[str], x: str, y: str,
           ylabel: str, title: str, path: Path, **options: Any
           ) -> tuple[Path | None, list[str]]:
    fig, notes = chart_figure(rows, param_keys, x, y, ylabel, title, name=path.name,
                              **options)
    if fig is None:
        return None, notes
    fig.savefig(path)
    return path, notes


def _series_label(series: str | None, value: Any) -> str:
    if series == BITS_KEY:
        return f"{value}-bit weights"
    return f"{_short(series)} {value}" if series else ""


def write_sweep_charts(rows: list[dict[str, Any]], out: str | Path,
                       param_keys: Sequence[str], fmt: str = "png",
                       linked: Sequence[Sequence[str]] = ()
                       ) -> tuple[list[Path], list[str]]:
    """The sweep's charts, those whose parameters were swept: tokens/s against wafer
    count, bytes on the fullest wafer against its SRAM per wafer count, and the fewest
    wafers against context length; one line per weight bit width, one panel per value
    of the other swept keys (``linked``: groups of keys varied together, as a zip, so
    those varied with the x axis make no panels). Returns the files and notes on what
    was skipped."""
    out = Path(out)
    paths: list[Path] = []
    notes: list[str] = []

    def add(result: tuple[Path | None, list[str]]) -> None:
        if result[0] is not None:
            paths.append(result[0])
        notes.extend(result[1])

    if "wafers" in param_keys:
        if any(_num(r.get("tokens_per_s")) is not None for r in rows):
            add(_chart(rows, param_keys, "wafers", "tokens_per_s", "tokens/s",
                       "tokens/s against wafer count", out / f"tokens-per-s-vs-wafers.{fmt}",
                       linked=linked))
        else:
            notes.append("tokens/s chart skipped: the results have no performance "
                         "figures (tokens_per_s)")
        add(_chart(rows, param_keys, "wafers", "max_wafer_used_bytes",
                   "bytes on the fullest wafer (GB)",
                   "SRAM needed per wafer against capacity",
                   out / f"bytes-per-wafer-vs-wafers.{fmt}", scale=1e-9,
                   capacity="wafer_capacity_bytes", y_from_zero=True, linked=linked))
    else:
        notes.append("wafer-count charts skipped: wafers is not swept")
    ctx = "workload.context_length"
    if ctx in param_keys:
        add(_chart(rows, param_keys, ctx, "min_wafers", "fewest wafers that fit",
                   "fewest wafers against context length",
                   out / f"min-wafers-vs-context-length.{fmt}", ignore=("wafers",),
                   mark_fit=False, y_from_zero=True, integer_y=True, linked=linked))
    else:
        notes.append("min-wafers chart skipped: workload.context_length is not swept")
    return paths, notes
