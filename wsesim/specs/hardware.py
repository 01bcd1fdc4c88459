"""A wafer's hardware profile: the grid, SRAM, clock, fabric and inter-wafer links.

Every number comes from a profile YAML in ``hardware_profiles/`` whose comments give
its source; nothing here has a hidden default for a hardware number.
"""
from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

# What the kernels look up in a profile: vector instructions per element of these
# functions, and SIMD operations per stored weight of these formats.
ELEMENTWISE_OPS = ("rope", "exp", "rsqrt", "silu")
DEQUANT_FORMATS = ("int8", "int4", "int4-byte", "w3.5", "w3.5-byte")


class Calibration(BaseModel):
    """Which constants of a profile are fitted, and on which validation cases (all
    jointly: every constant on every case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constants: list[str] = []   # dotted paths in the profile: kernel.vector_op_cycles
    cases: list[str] = []       # validation case names


class KernelProfile(BaseModel):
    """How the PE programs behave, beyond the raw hardware numbers: the cost of issuing
    and chaining vector instructions, of a chain stage, of calling a fabric operation,
    of re-routing a region's reductions, of a MeshGEMM step; elementwise functions and
    dequantization work.

    ``calibrated`` names the constants fitted to measurements and the validation cases
    they were fitted on (``python -m wsesim.calibrate`` fits them jointly); every other
    number carries its source in the profile's comments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vector_op_cycles: NonNegativeFloat        # issue of one vector (DSD) instruction
    vector_latency_cycles: NonNegativeFloat   # least time before a dependent instruction
    receive_add_forward_cycles: NonNegativeFloat  # a chain stage, beyond its two ramps
    fabric_call_cycles: NonNegativeFloat      # fixed cost of one fabric operation
    library_call_cycles: NonNegativeFloat     # one call of the SDK collectives library
    route_switch_cycles: NonNegativeFloat     # re-routing reductions to the other axis
    mesh_step_cycles: NonNegativeFloat        # MeshGEMM: hand-off between Cannon steps
    elementwise_ops: dict[str, PositiveFloat]  # vector instructions per element, by function
    dequant_ops_per_weight: dict[str, NonNegativeFloat]  # SIMD ops per weight, by format
    calibrated: Calibration = Calibration()

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
    vendor_pe_count: PositiveInt | None = None  # marketing figure, for reference only
    grid_rows: PositiveInt                      # usable program grid
    grid_cols: PositiveInt
    pe_sram_bytes: PositiveInt
    runtime_reserve_bytes: NonNegativeInt       # per PE, taken by the runtime
    clock_hz: PositiveFloat
    macs_per_cycle: dict[str, PositiveFloat]    # per PE, by arithmetic type (fp16, fp32)
    sram_read_bytes_per_cycle: PositiveFloat    # per PE
    sram_write_bytes_per_cycle: PositiveFloat   # per PE
    link_bytes_per_cycle: PositiveFloat         # per link, per direction
    hop_latency_cycles: NonNegativeFloat        # router to router
    ramp_latency_cycles: NonNegativeFloat       # router <-> PE
    turn_latency_cycles: NonNegativeFloat = 0.0  # extra cost of a turn in the mesh
    colors: PositiveInt                         # routing colors (virtual channels)
    colors_reserved: NonNegativeInt = 0
    interwafer_bytes_per_s: PositiveFloat       # per wafer, each direction
    interwafer_latency_s: NonNegativeFloat
    kernel: KernelProfile

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareProfile":
        if self.runtime_reserve_bytes >= self.pe_sram_bytes:
            raise ValueError(
                f"runtime_reserve_bytes {self.runtime_reserve_bytes} leaves no SRAM of "
                f"pe_sram_bytes {self.pe_sram_bytes}"
            )
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
