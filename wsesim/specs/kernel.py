"""One kernel on a grid of PEs, as a hardware measurement times it: a MeshGEMV, a MeshGEMM
or an allreduce (``validation/`` cases with ``metric: cycles``)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

from wsesim.errors import KeyedError
from wsesim.specs.hardware import HardwareProfile

# what each operation needs besides the grid
NEEDS = {"gemv": ("m", "n"), "gemm": ("m", "k", "n"), "allreduce": ("elements",)}


class KernelSpec(BaseModel):
    """``gemv``: a 1 x m vector times an m x n matrix, the inputs cut along the grid's
    rows and the outputs along its columns (WaferLLM's MeshGEMV), each column
    allreducing its partial sums with ``algorithm``. ``gemm``: (m x k) @ (k x n) by
    WaferLLM's MeshGEMM. ``allreduce``: every row of the grid allreduces ``elements``
    values with ``algorithm``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["gemv", "gemm", "allreduce"]
    hardware: HardwareProfile
    grid: tuple[PositiveInt, PositiveInt]
    m: PositiveInt | None = None
    n: PositiveInt | None = None
    k: PositiveInt | None = None
    elements: PositiveInt | None = None
    algorithm: Literal["chain", "tree", "two-level"] = "two-level"
    groups: PositiveInt | None = None
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"
    fidelity: Literal["tile", "pe"] = "tile"

    @model_validator(mode="after")
    def _complete(self) -> "KernelSpec":
        for key in NEEDS[self.op]:
            if getattr(self, key) is None:
                raise KeyedError(key, f"required for op {self.op}")
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
