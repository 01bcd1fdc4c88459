"""Text in figures that stays inside them: titles wrapped to the room their panel and
the figure have, as the figure's renderer measures them (any characters, any length),
drawn literally (never read as mathtext), with the figure grown taller for the lines
that wrapping adds."""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

SUPTITLE_SIZE = 10                    # points
TITLE_ROOM = 0.95                     # share of its heatmap's width a panel title may take
HEADING_ROOM = 0.95                   # share of the figure's width the heading may take
PLANNED_TITLE_LINES = 3               # title lines a figure's height allows for, per row
PLANNED_HEADING_LINES = 2
LINE_SPACING = 1.3                    # line height / font size, with a margin
MIN_CHAR_PIXELS = 1.0                 # no glyph that takes room is narrower


def wrap_to_width(fig: Figure, text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each of its lines wrapped (at spaces, or inside a word too long for
    a line) so that no line is wider than ``width_in`` inches at ``fontsize`` points, as
    the figure's renderer measures it: titles stay inside the figure and their panel."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    prop = FontProperties(size=fontsize)
    room = width_in * fig.dpi

    def fits(line: str) -> bool:
        return renderer.get_text_width_height_descent(line, prop, ismath=False)[0] <= room

    def longest_prefix(word: str) -> int:   # at least one character per line
        lo, hi = 1, min(len(word), int(room / MIN_CHAR_PIXELS) + 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(word[:mid]) else (lo, mid - 1)
        return lo

    out: list[str] = []
    for line in text.split("\n"):
        current = ""
        for word in line.split(" "):
            candidate = f"{current} {word}" if current else word
            if fits(candidate):
                current = candidate
                continue
            if current:
                out.append(current)
            while len(word) > 1 and not fits(word):  # a word wider than a line
                cut = longest_prefix(word)
                out.append(word[:cut])
                word = word[cut:]
            current = word
        out.append(current)
    return "\n".join(out)


def set_panel_title(ax: Axes, text: str, panel_inches: float, fontsize: float) -> None:
    """A panel title, wrapped to its panel and drawn literally (no mathtext)."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    ax.set_title(wrap_to_width(fig, text, TITLE_ROOM * panel_inches, fontsize),
                 fontsize=fontsize, parse_math=False)


def set_headings(fig: Figure, axes: list[Axes], text: str, title_size: float) -> None:
    """The figure's heading, wrapped to the figure and drawn literally; then the figure
    grows taller by the lines its titles were wrapped into beyond the ones its size
    allows for (PLANNED_TITLE_LINES per row of panels, PLANNED_HEADING_LINES), so the
    panels keep their room and nothing is pushed off the figure."""
    heading = wrap_to_width(fig, text, HEADING_ROOM * fig.get_figwidth(), SUPTITLE_SIZE)
    fig.suptitle(heading, fontsize=SUPTITLE_SIZE, parse_math=False)
    lines_by_row: dict[int, int] = {}
    for ax in axes:
        spec = ax.get_subplotspec()
        row = spec.rowspan.start if spec is not None else 0
        lines_by_row[row] = max(lines_by_row.get(row, 0), ax.get_title().count("\n") + 1)
    extra_points = (sum(max(0, n - PLANNED_TITLE_LINES) for n in lines_by_row.values())
                    * title_size + max(0, heading.count("\n") + 1 - PLANNED_HEADING_LINES)
                    * SUPTITLE_SIZE) * LINE_SPACING
    if extra_points > 0:
        fig.set_figheight(fig.get_figheight() + extra_points / 72)
