"""Charts of a serving study (matplotlib, Agg, no pyplot): latency percentiles against
the request rate (a capacity search), KV-cache occupancy and concurrency over time.
Imported only to draw."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wsesim.figtext import set_headings
from wsesim.literal import clipped
from wsesim.naming import slug
from wsesim.serving.capacity import Capacity
from wsesim.serving.service import Served, Study

MAX_NAME_CHARS = 120          # of a deployment's name in a heading
MAX_STEP_POINTS = 20_000      # points of a step curve drawn (longer runs are thinned)


def _figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, k + 1) for k in range(panels)]
    return fig, axes


def latency_figure(capacity: Capacity, name: str, slo_ttft_s: float | None,
                   slo_tpot_s: float | None) -> Figure:
    """p50, p90, p99 of TTFT and TPOT against the rates a capacity search tried."""
    fig, (left, right) = _figure(10.0, 4.2, 2)
    rates = [p["rate_per_s"] for p in capacity.points]
    for ax, key, slo, what in ((left, "ttft_s", slo_ttft_s, "time to first token"),
                               (right, "tpot_s", slo_tpot_s, "time per output token")):
        for q, style in (("p50", ":"), ("p90", "--"), ("p99", "-")):
            ys = [np.nan if p[key][q] is None else p[key][q] * 1e3
                  for p in capacity.points]
            ax.plot(rates, ys, style, marker="o", markersize=3, label=q)
        if slo is not None:
            ax.axhline(slo * 1e3, color="red", linewidth=1, label="SLO")
        if capacity.requests_per_s is not None:
            ax.axvline(capacity.requests_per_s, color="grey", linewidth=1,
                       label="capacity")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("requests/s")
        ax.set_ylabel(f"{what}, ms")
        ax.legend(fontsize=7)
    set_headings(fig, [left, right], "Latency against request rate: "
                 + clipped(name, MAX_NAME_CHARS), 10)
    return fig


def _thin(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most MAX_STEP_POINTS points of a step curve (every k-th)."""
    step = max(1, len(x) // MAX_STEP_POINTS)
    return (x[::step], *(y[::step] for y in ys))


def timeline_figures(study: Study, served: Served, name: str) -> dict[str, Figure]:
    """KV-cache occupancy, and running and waiting requests, over the run."""
    times, running, waiting, kv = served.run.timeline
    t = times / study.clock_hz
    out = {}
    fig, (ax,) = _figure(7.5, 3.6)
    tt, kk = _thin(t, kv)
    ax.step(tt, kk * 100, where="post")
    ax.set_ylim(0, 105)
    ax.set_xlabel("time, s")
    ax.set_ylabel("KV cache slots taken, % (fullest region)")
    set_headings(fig, [ax], f"KV-cache occupancy ({study.kv.tokens:,} tokens): "
                 + clipped(name, MAX_NAME_CHARS), 10)
    out["kv-occupancy"] = fig
    fig, (ax,) = _figure(7.5, 3.6)
    tt, rr, ww = _thin(t, running, waiting)
    ax.step(tt, rr, where="post", label="admitted (KV in SRAM)")
    ax.step(tt, ww, where="post", label="waiting for admission")
    ax.set_xlabel("time, s")
    ax.set_ylabel("requests")
    ax.legend(fontsize=8)
    set_headings(fig, [ax], "Concurrent requests: " + clipped(name, MAX_NAME_CHARS), 10)
    out["concurrency"] = fig
    return out


def write_serving_plots(study: Study, served: Served, out_dir: str | Path,
                        capacity: Capacity | None = None, fmt: str = "png") -> list[Path]:
    """The charts into ``out_dir``: ``<name>-serving-<kind>.<fmt>``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = study.result.name
    stem = slug(name, "deployment")
    figures = timeline_figures(study, served, name)
    if capacity is not None and capacity.points:
        figures = {"latency-vs-rate": latency_figure(
            capacity, name, study.spec.slo_ttft_s, study.spec.slo_tpot_s), **figures}
    paths = []
    for kind, fig in figures.items():
        path = out / f"{stem}-serving-{kind}.{fmt}"
        fig.savefig(path)
        paths.append(path)
    return paths
