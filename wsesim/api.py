"""The Python API a notebook user expects::

    import wsesim
    dep = wsesim.load("examples/llama-3.1-70b-w3.5-1x-wse3.yaml")
    result = wsesim.simulate(dep)          # a Result; result.to_dict() is the JSON answer
    rows = wsesim.sweep("examples/sweep-wafers-bits.yaml", workers=2)
    df = wsesim.rows_to_dataframe(rows)    # with pandas installed

This module imports nothing heavy itself: each function imports what it needs when
called, so ``import wsesim`` stays light (no matplotlib, no dask).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from wsesim.result import Result
    from wsesim.specs import Deployment


def load(path: str | Path) -> "Deployment":
    """Read and validate a deployment YAML file (errors: :class:`wsesim.errors.SpecError`
    with the file and key path)."""
    from wsesim.specs import load_deployment
    return load_deployment(path)


def simulate(deployment: "Deployment | str | Path | Mapping[str, Any]", **options: Any
             ) -> "Result":
    """Plan, account and time a deployment (a :class:`Deployment`, a YAML path, or a
    deployment mapping); ``options`` go to :func:`wsesim.run.simulate`. Bad input
    raises :class:`wsesim.errors.SpecError` naming the source and the key."""
    from wsesim.errors import located
    from wsesim.run import simulate as _simulate
    from wsesim.specs import deployment_from_mapping

    source = "<deployment>"
    if isinstance(deployment, (str, Path)):
        source, deployment = str(deployment), load(deployment)
    elif isinstance(deployment, Mapping):
        source = "<mapping>"
        deployment = deployment_from_mapping(dict(deployment), source)
    with located(source):
        return _simulate(deployment, **options)


def sweep(spec_or_path: Any, out: str | Path | None = None, workers: int = 1,
          executor: Any = None, progress: bool | None = None) -> list[dict[str, Any]]:
    """Run a sweep (a sweep YAML path or mapping) and return one row per point; with
    ``out`` the rows also go to ``results.jsonl``/``results.csv`` there and the charts
    are drawn. Re-running into the same ``out`` resumes: rows whose ``key`` (the fully
    resolved deployment and the wsesim version) still matches are kept, the others
    recomputed. Bad input raises :class:`wsesim.errors.SpecError`; Ctrl-C raises
    :class:`wsesim.sweeps.SweepCancelled` (a ``KeyboardInterrupt``; the rows done are
    saved). See :mod:`wsesim.sweeps`."""
    from wsesim.sweeps import run_sweep
    return run_sweep(spec_or_path, out, workers, executor, progress).rows


def rows_to_dataframe(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Sweep rows as a pandas DataFrame (pandas is optional: ImportError otherwise)."""
    from wsesim.sweeps import rows_to_dataframe as _to_df
    return _to_df(rows)


def write_plots(result: "Result", out_dir: str | Path, fmt: str = "png",
                **options: Any) -> list[Path]:
    """The placement, SRAM and utilization heatmaps of a result; see
    :func:`wsesim.plots.write_plots`."""
    from wsesim.plots import write_plots as _write
    return _write(result, out_dir, fmt, **options)
