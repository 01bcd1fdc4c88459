"""wsesim: a wafer-scale dataflow simulator for quantized LLaMA-family models.

The Python API (see :mod:`wsesim.api`)::

    import wsesim
    result = wsesim.simulate(wsesim.load("examples/llama-3.1-70b-w3.5-1x-wse3.yaml"))
    rows = wsesim.sweep("examples/sweep-wafers-bits.yaml", workers=2)

Importing the package loads nothing heavy (no matplotlib, dask or simulator).
"""
from wsesim.api import load, rows_to_dataframe, simulate, sweep, write_plots

__version__ = "0.2.0"  # every JSON answer and sweep row records it
__all__ = ["__version__", "load", "rows_to_dataframe", "simulate", "sweep", "write_plots"]
