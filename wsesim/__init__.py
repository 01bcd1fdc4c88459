"""wsesim: a wafer-scale dataflow simulator for quantized LLaMA-family models."""
__version__ = "0.1.0"

# ---- the Python API: wsesim.load, wsesim.simulate, wsesim.sweep, ... (see wsesim/api.py)
# ``wsesim.simulate`` and ``wsesim.sweep`` are submodules and functions at once: the
# submodule object is made callable (calling it calls the API function of its name), so
# ``wsesim.simulate(dep)``, ``wsesim.simulate.simulate(dep)`` and
# ``from wsesim.simulate import simulate`` all work, and nothing heavy (matplotlib, dask,
# the simulator itself) is imported before it is used.
import importlib as _importlib
import sys as _sys
import types as _types

from wsesim.api import load, rows_to_dataframe, write_plots  # noqa: E402


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from wsesim import api
        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def _callable_submodule(name: str) -> property:
    slot = f"_submodule_{name}"

    def store(pkg, module):
        if type(module) is _types.ModuleType:
            module.__class__ = _CallableModule
        pkg.__dict__[slot] = module

    def get(pkg):
        if slot not in pkg.__dict__:
            store(pkg, _importlib.import_module(f"{pkg.__name__}.{name}"))
        return pkg.__dict__[slot]

    return property(get, store)


class _Package(_types.ModuleType):
    simulate = _callable_submodule("simulate")
    sweep = _callable_submodule("sweep")


_sys.modules[__name__].__class__ = _Package
__all__ = ["__version__", "load", "rows_to_dataframe", "simulate", "sweep", "write_plots"]
