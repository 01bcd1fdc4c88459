"""What-if sweeps: one deployment varied along dotted key paths, every point simulated,
one flat row per point in ``results.jsonl`` and ``results.csv``, and charts.

A sweep file::

    name: wafers-bits                 # optional; default: the file's stem
    base: llama-3.1-70b-w3.5-1x-wse3.yaml   # a deployment path (relative to this file)
                                      # or an inline deployment mapping
    grid:                             # the full cartesian product of these lists
      wafers: [1, 2, 4]
      quantization.weights.bits: [16, 8, 4, 3.5]
    zip:                              # optional: equal-length lists varied together
      workload.prompt_tokens: [1024, 2048]
      workload.context_length: [2048, 4096]
    performance: true                 # optional; false: memory and fit only (faster)

A sweep has at most :data:`MAX_SWEEP_POINTS` points (refused before any work beyond);
they are read as a stream, never built as a list.

Setting ``quantization.<tensor>.bits`` (weights, embeddings, kv_cache, activations)
keeps the rest of the base format where it still applies: bits 16 or 32 give a float
format (no groups, scales, zeros; the base's fp16/bf16 flavour kept); bits 8, 4 or 3.5
keep the base's ``group_size``, ``scale_bits`` and ``zero_bits`` when the base is an
integer format, and take groups of 128 with fp16 scales and zeros (the ``*-g128``
presets) when the base is a float format; ``packing: byte`` is kept only for 4 and 3.5
bits. Other keys set in the same point (``quantization.weights.group_size``) apply
after the bits. A point whose deployment is invalid (3.5 bits with odd groups, more
wafers than units) is recorded as failed, with its one-line error, and the sweep goes on.

Points run in parallel (``workers`` processes, or a Dask cluster); rows are appended
and flushed point by point, so an interrupted sweep loses nothing. Every row records
``wsesim_version`` and ``key``: sha256 of the point's fully resolved deployment (model
and hardware as full specs), ``performance`` and the version. Re-running into the same
folder skips the points whose saved key still matches (failed ones included: delete
their rows to retry), recomputes and replaces the others, and refuses a folder holding
rows of points this sweep does not have. A lock keeps two sweeps out of one folder.

The package, in import order (each module imports only those before it): ``points``
(applying a point), ``spec`` (the file, the points), ``rows`` (one point's key,
simulation and row), ``store`` (the folder), ``executors`` (where points run), ``run``
(:func:`run_sweep`); ``charts`` (matplotlib) is imported only to draw.
"""
from __future__ import annotations

from wsesim.naming import slug
from wsesim.sweeps.executors import (
    check_workers,
    default_workers,
    execute,
    max_workers,
    open_backend,
)
from wsesim.sweeps.points import apply_point, format_with_bits
from wsesim.sweeps.rows import (
    MEMORY_NUMBERS,
    RESULT_COLUMNS,
    TAIL_COLUMNS,
    error_line,
    min_wafers_task,
    resolve_point,
    result_row,
    run_point,
)
from wsesim.sweeps.run import SweepCancelled, SweepOutcome, rows_to_dataframe, run_sweep
from wsesim.sweeps.spec import (
    MAX_SWEEP_POINTS,
    Points,
    SweepSpec,
    check_key_path,
    load_sweep,
    point_key,
)
from wsesim.sweeps.store import ResultStore, column_order

__all__ = [
    "MAX_SWEEP_POINTS", "MEMORY_NUMBERS", "RESULT_COLUMNS", "TAIL_COLUMNS", "Points",
    "ResultStore", "SweepCancelled", "SweepOutcome", "SweepSpec", "apply_point",
    "check_key_path", "check_workers", "column_order", "default_workers", "error_line",
    "execute", "format_with_bits", "load_sweep", "max_workers", "min_wafers_task",
    "open_backend", "point_key", "resolve_point", "result_row", "rows_to_dataframe",
    "run_point", "run_sweep", "slug",
]
