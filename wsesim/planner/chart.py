"""The chart of ``wsesim plan --plot``: tokens/s against wafers, the fewest marked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plan_chart(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Tokens/s per user and of all users of the best plan that fits on each wafer count
    (a hollow marker where none fits: the plan closest to fitting), the fewest wafers
    that fit marked."""
    fig = Figure(figsize=(7.5, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, label, colour in (("tokens_per_s_per_user", "tokens/s per user", "tab:blue"),
                               ("tokens_per_s", "tokens/s, all users", "tab:orange")):
        fit = [r for r in rows if r["fits"]]
        ax.plot([r["wafers"] for r in fit], [r[key] for r in fit], color=colour,
                marker="o", label=label, zorder=1)
        over = [r for r in rows if not r["fits"]]
        ax.scatter([r["wafers"] for r in over], [r[key] for r in over], color=colour,
                   facecolors="none", zorder=2)
    fitting = [r for r in rows if r["fits"]]
    if fitting:
        fewest = fitting[0]["wafers"]
        ax.axvline(fewest, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"fewest that fit: {fewest}", (fewest, ax.get_ylim()[1]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8, color="grey")
    ax.set_xlabel("wafers")
    ax.set_ylabel("tokens/s")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, title="hollow: no plan fits (the closest shown)",
              title_fontsize=7)
    path = Path(path)
    fig.savefig(path)
    return path
