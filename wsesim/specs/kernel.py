"""One kernel on a grid of PEs, as a hardware measurement times it: a MeshGEMV, a MeshGEMM
or an allreduce (``validation/`` cases with ``metric: cycles``)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from wsesim.errors import KeyedError
from wsesim.specs.bounds import GridSide, Groups, Width
from wsesim.specs.hardware import HardwareProfile

# what each operation needs besides the grid (and takes: the other sizes are refused)
NEEDS = {"gemv": ("m", "n"), "gemm": ("m", "k", "n"), "allreduce": ("elements",)}
SIZES = ("m", "n", "k", "elements")
# the grid side along which each operation allreduces: gemv's columns run down the rows,
# allreduce's rows along the columns; MeshGEMM reduces nothing
REDUCED_SIDE = {"gemv": 0, "allreduce": 1}


class KernelSpec(BaseModel):
    """``gemv``: a 1 x m vector times an m x n matrix, the inputs cut along the grid's
    rows and the outputs along its columns (WaferLLM's MeshGEMV), each column
    allreducing its partial sums with ``algorithm``. ``gemm``: (m x k) @ (k x n) by
    WaferLLM's MeshGEMM. ``allreduce``: every row of the grid allreduces ``elements``
    values with ``algorithm``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["gemv", "gemm", "allreduce"]
    hardware: HardwareProfile
    grid: tuple[GridSide, GridSide]
    m: Width | None = None
    n: Width | None = None
    k: Width | None = None
    elements: Width | None = None
    algorithm: Literal["chain", "tree", "two-level"] = "two-level"
    groups: Groups | None = None   # two-level only (None: the fastest count)
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"
    fidelity: Literal["tile", "pe"] = "tile"

    @model_validator(mode="after")
    def _complete(self) -> "KernelSpec":
        needs = NEEDS[self.op]
        for key in needs:
            if getattr(self, key) is None:
                raise KeyedError(key, f"required for op {self.op}")
        for key in SIZES:
            if key not in needs and getattr(self, key) is not None:
                raise KeyedError(key, f"does not apply to op {self.op} (it takes "
                                 f"{', '.join(needs)})")
        self._reduction_keys()
        rows, cols = self.grid
        hw = self.hardware
        if rows > hw.grid_rows or cols > hw.grid_cols:
            raise KeyedError("grid", f"{list(self.grid)} is larger than the {hw.name} grid "
                             f"[{hw.grid_rows}, {hw.grid_cols}]")
        if self.fidelity == "pe":
            from wsesim.sim.limits import too_large
            why = too_large(rows, cols)
            if why:
                raise KeyedError("fidelity", f"{why}; use fidelity: tile")
        return self

    def _reduction_keys(self) -> None:
        """``algorithm`` and ``groups`` only where there is an allreduce, and ``groups``
        only for two-level, at most one group per PE of the line reduced."""
        if self.op not in REDUCED_SIDE:
            for key in ("algorithm", "groups"):
                if key in self.model_fields_set:
                    raise KeyedError(key, f"does not apply to op {self.op} (it "
                                     "allreduces nothing)")
            return
        if self.groups is None:
            return
        if self.algorithm != "two-level":
            raise KeyedError("groups", "only applies to algorithm: two-level, not "
                             f"{self.algorithm}")
        axis = REDUCED_SIDE[self.op]
        side = self.grid[axis]
        if self.groups > side:
            raise KeyedError("groups", f"{self.groups:,} groups on a line of {side:,} PEs "
                             f"(the grid's {('rows', 'columns')[axis]}): at most one "
                             "group per PE")
