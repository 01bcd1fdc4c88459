"""Running a sweep: read its file, check the results folder (resume: keep the rows whose
key still matches, recompute the others, refuse rows of another sweep), run the missing
points, save each row as it completes, draw the charts."""
from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from wsesim.errors import SpecError
from wsesim.literal import printable
from wsesim.sweeps import executors
from wsesim.sweeps.executors import check_executor, check_workers, open_backend
from wsesim.sweeps.rows import resolve_point
from wsesim.sweeps.spec import SweepSpec, load_sweep
from wsesim.sweeps.store import ResultStore

MAX_SHOWN_POINT_CHARS = 120   # of a foreign row's point quoted in the refusal


@dataclass
class SweepOutcome:
    """What a sweep did: every row of its points (in point order) and a summary.
    ``recomputed`` counts the saved rows run again because their key no longer matched
    (``recompute_reasons``: why, and how many each)."""

    name: str
    out: Path | None
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    seconds: float
    charts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recomputed: int = 0
    recompute_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def failed_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]

    @property
    def all_failed(self) -> bool:
        """Every point of the sweep failed (the command exits 1)."""
        return bool(self.rows) and len(self.failed_rows) == len(self.rows)

    @property
    def reasons(self) -> dict[str, int]:
        """Distinct failure messages and how many points failed with each."""
        return dict(Counter(r["error"] for r in self.failed_rows).most_common())

    def summary(self) -> str:
        lines = [f"sweep {printable(self.name)}: {len(self.rows)} points; {self.ran} run in "
                 f"{self.seconds:.1f} s, {self.skipped} skipped (already present), "
                 f"{len(self.failed_rows)} failed"]
        for reason, count in self.reasons.items():
            lines.append(f"  {count} x {reason}")
        if self.recomputed:
            plural = "s" if self.recomputed != 1 else ""
            lines.append(f"{self.recomputed} saved row{plural} recomputed (their key no "
                         "longer matched):")
            lines += [f"  {count} x {why}" for why, count in self.recompute_reasons.items()]
        if self.out is not None:
            lines.append(f"results: {self.out / 'results.csv'}, "
                         f"{self.out / 'results.jsonl'}")
        lines += [f"chart: {p}" for p in self.charts]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class SweepCancelled(KeyboardInterrupt):
    """Ctrl-C during a sweep: the workers are stopped and the rows saved so far kept;
    running the same sweep again into the same folder resumes it."""

    def __init__(self, saved: int, total: int, out: Path | None) -> None:
        self.saved, self.total, self.out = saved, total, out
        if out is None:
            text = f"interrupted: {saved} of {total} points done, none saved (no folder)"
        else:
            text = (f"interrupted: {saved} of {total} points are saved in {out}; run the "
                    "same command again to resume")
        super().__init__(text)


def _progress(enabled: bool | None, total: int, name: str) -> Any:
    if enabled is None:
        enabled = sys.stdout.isatty()
    if not enabled or total == 0:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    # redrawn point by point (no refresh thread: worker processes fork safely)
    return Progress(TextColumn(f"sweep {name}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    transient=False, auto_refresh=False)


def _stale_reason(row: Mapping[str, Any]) -> str:
    from wsesim import __version__
    if not row.get("key"):
        return "saved without a key (by an older wsesim)"
    version = row.get("wsesim_version")
    if version != __version__:
        return f"saved by wsesim {str(version)[:40]}, this is {__version__}"
    return ("the fully resolved deployment differs (the base, a model or hardware file, "
            "or performance: changed since)")


def check_saved_rows(spec: SweepSpec, present: Mapping[str, dict[str, Any]], out: Path
                     ) -> tuple[dict[int, dict[str, Any]], Counter]:
    """The saved rows still valid, by point index, and why the others must be
    recomputed; a row of a point this sweep does not have is refused (one line naming
    the folder), before anything is changed."""
    points = spec.points()
    kept: dict[int, dict[str, Any]] = {}
    stale: Counter = Counter()
    foreign = []
    for point, row in present.items():
        index = points.locate(point)
        if index is None:
            foreign.append(point)
            continue
        _, _, key = resolve_point(spec.base, points[index], spec.base_source,
                                  spec.base_dir, spec.performance)
        if row.get("key") == key:
            kept[index] = row
        else:
            stale[_stale_reason(row)] += 1
    if foreign:
        example = foreign[0]
        if len(example) > MAX_SHOWN_POINT_CHARS:
            example = example[:MAX_SHOWN_POINT_CHARS] + "..."
        raise SpecError(out, "", f"holds {len(foreign)} rows of another sweep (points "
                        f"this sweep does not have, e.g. {example}); use another --out")
    return kept, stale


def _todo(spec: SweepSpec, done: Mapping[int, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, params in enumerate(spec.points()):
        if index not in done:
            yield index, params


def run_sweep(spec: "str | Path | Mapping[str, Any] | SweepSpec",
              out: str | Path | None = None, workers: int = 1, executor: Any = None,
              progress: bool | None = None, charts: bool = True,
              chart_format: str = "png") -> SweepOutcome:
    """Run every point of a sweep not already in ``out`` and return the outcome.

    ``out`` None keeps rows in memory only (no files, no resume, no charts).
    ``workers`` > 1 runs points in that many processes; ``executor`` may be
    ``"dask://HOST:PORT"``, a ``distributed.Client`` or a ``concurrent.futures``
    executor. ``progress`` None shows a bar only when stdout is a terminal.

    A saved row is kept only when its ``key`` (see :func:`resolve_point`) is that of
    its point now; otherwise it is recomputed and replaced. Ctrl-C stops the workers
    and raises :class:`SweepCancelled` (the rows done are saved)."""
    spec = load_sweep(spec)
    check_executor(executor, spec.source)   # before anything else
    workers = check_workers(workers, spec.source)
    t0 = time.perf_counter()
    points = spec.points()
    store = ResultStore(out, spec.param_keys) if out is not None else None
    kept: dict[int, dict[str, Any]] = {}
    new: dict[int, dict[str, Any]] = {}
    # a Dask address is connected to first: a bad one changes nothing in the folder
    backend = open_backend(executor, workers, len(points), spec.source) \
        if isinstance(executor, str) else None
    try:
        stale: Counter = Counter()
        if store:
            store.open()
            kept, stale = check_saved_rows(spec, store.load(), store.out)
            store.keep(kept[i] for i in sorted(kept))   # stale rows go: one row a point
        total = len(points) - len(kept)
        if backend is None:
            backend = open_backend(executor, workers, total, spec.source)
        stream = executors.execute(spec, _todo(spec, kept), backend)
        with _progress(progress, total, spec.name) as bar, contextlib.closing(stream):
            task = bar.add_task("points", total=total) if bar else None
            for index, row in stream:   # closed on any exit: its tasks are cancelled
                if store:
                    store.append(row)
                new[index] = row
                if bar:
                    bar.advance(task)
                    bar.refresh()
        backend.close()
        backend = None
        rows = [row for _, row in sorted({**kept, **new}.items())]
        outcome = SweepOutcome(spec.name, store.out if store else None, rows,
                               ran=len(new), skipped=len(kept),
                               seconds=time.perf_counter() - t0,
                               recomputed=sum(stale.values()),
                               recompute_reasons=dict(stale.most_common()))
        if store and charts:   # still under the folder's lock
            from wsesim.sweeps.charts import write_sweep_charts
            outcome.charts, outcome.notes = write_sweep_charts(
                rows, store.out, spec.param_keys, chart_format,
                linked=[keys for keys, _ in spec.axes])
        return outcome
    except KeyboardInterrupt:
        if backend is not None:
            backend.abort()
            backend = None
        raise SweepCancelled(len(kept) + len(new), len(points),
                             store.out if store else None) from None
    finally:
        if backend is not None:
            backend.close()
        if store:
            store.close()


def rows_to_dataframe(rows: Sequence[Mapping[str, Any]]) -> Any:
    """The rows as a pandas DataFrame (pandas is optional)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("rows_to_dataframe needs pandas: pip install pandas") from None
    return pd.DataFrame(list(rows))


__all__ = ["SweepCancelled", "SweepOutcome", "check_saved_rows", "rows_to_dataframe",
           "run_sweep"]
