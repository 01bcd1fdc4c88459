"""A wafer's hardware profile: the grid, SRAM, clock, fabric and inter-wafer links.

Every number comes from a profile YAML in ``hardware_profiles/`` whose comments give
its source; nothing here has a hidden default for a hardware number.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from wsesim.specs.bounds import (
    MAX_GRID_PES,
    ClockHz,
    Colors,
    ColorsReserved,
    GridSide,
    LatencyCycles,
    LatencyS,
    LinkBytesPerS,
    OpsPerElement,
    PECount,
    PESramBytes,
    PositiveOpsPerElement,
    Rate,
    ReserveBytes,
)

# What the kernels look up in a profile: vector instructions per element of these
# functions, and SIMD operations per stored weight of these formats.
ELEMENTWISE_OPS = ("rope", "exp", "rsqrt", "silu")
DEQUANT_FORMATS = ("int8", "int4", "int4-byte", "w3.5", "w3.5-byte")


class KernelProfile(BaseModel):
    """How the PE programs behave, beyond the raw hardware numbers: fixed costs of
    instructions and fabric phases, elementwise functions and dequantization work.

    ``calibrated`` names, for every constant fitted to a measurement, the validation
    case it was fitted on; everything else carries its source in the profile's comments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vector_op_cycles: LatencyCycles          # fixed issue cost of one vector instruction
    comm_step_cycles: LatencyCycles          # fixed cost of one synchronized fabric phase
    add_cycles: LatencyCycles                # receive-add-forward of one wavelet in a chain
    elementwise_ops: dict[str, PositiveOpsPerElement]  # vector instructions per element
    dequant_ops_per_weight: dict[str, OpsPerElement]  # SIMD ops per weight, by format
    calibrated: dict[str, str] = {}

    @model_validator(mode="after")
    def _complete(self) -> "KernelProfile":
        for key, names in (("elementwise_ops", ELEMENTWISE_OPS),
                           ("dequant_ops_per_weight", DEQUANT_FORMATS)):
            missing = [n for n in names if n not in getattr(self, key)]
            if missing:
                raise ValueError(f"{key} needs an entry for each of {', '.join(names)} "
                                 f"(missing {', '.join(missing)})")
        return self


class HardwareProfile(BaseModel):
    """One wafer-scale engine and the links between several of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    vendor_pe_count: PECount | None = None      # marketing figure, for reference only
    grid_rows: GridSide                         # usable program grid
    grid_cols: GridSide
    pe_sram_bytes: PESramBytes
    runtime_reserve_bytes: ReserveBytes         # per PE, taken by the runtime
    clock_hz: ClockHz
    macs_per_cycle: dict[str, Rate]             # per PE, by arithmetic type (fp16, fp32)
    sram_read_bytes_per_cycle: Rate             # per PE
    sram_write_bytes_per_cycle: Rate            # per PE
    link_bytes_per_cycle: Rate                  # per link, per direction
    hop_latency_cycles: LatencyCycles           # router to router
    ramp_latency_cycles: LatencyCycles          # router <-> PE
    turn_latency_cycles: LatencyCycles = 0.0    # extra cost of a turn in the mesh
    colors: Colors                              # routing colors (virtual channels)
    colors_reserved: ColorsReserved = 0
    interwafer_bytes_per_s: LinkBytesPerS       # per wafer, each direction
    interwafer_latency_s: LatencyS
    kernel: KernelProfile

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareProfile":
        if self.runtime_reserve_bytes >= self.pe_sram_bytes:
            raise ValueError(
                f"runtime_reserve_bytes {self.runtime_reserve_bytes} leaves no SRAM of "
                f"pe_sram_bytes {self.pe_sram_bytes}"
            )
        if self.grid_rows * self.grid_cols > MAX_GRID_PES:
            raise ValueError(
                f"grid_rows x grid_cols = {self.grid_rows * self.grid_cols:,} PEs must be "
                f"at most {MAX_GRID_PES:,} (a bound of wsesim)")
        if self.colors_reserved >= self.colors:
            raise ValueError("colors_reserved must be fewer than colors")
        if "fp16" not in self.macs_per_cycle:
            raise ValueError("macs_per_cycle needs an fp16 entry")
        return self

    @property
    def pes(self) -> int:
        return self.grid_rows * self.grid_cols

    @property
    def usable_pe_bytes(self) -> int:
        return self.pe_sram_bytes - self.runtime_reserve_bytes

    @property
    def wafer_sram_bytes(self) -> int:
        return self.pes * self.pe_sram_bytes
