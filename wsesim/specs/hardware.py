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
    PECount,
    PESramBytes,
    PositiveOpsPerElement,
    Rate,
    ReserveBytes,
    number,
)

# What the kernels look up in a profile: vector instructions per element of these
# functions.
ELEMENTWISE_OPS = ("rope", "exp", "rsqrt", "silu")

# A dequantization cost beyond these is not a what-if but a typo: a SIMD operation of more
# than a thousand cycles, more than 1024 lanes or fewer than one value per hundred cycles.
MAX_OP_CYCLES = 1000.0
MIN_LANES = 0.01
MAX_LANES = 1024.0
OpCycles = number(0, MAX_OP_CYCLES, " cycles")
Lanes = number(MIN_LANES, MAX_LANES, " lanes")
# A system's wall power beyond a megawatt is a typo (a CS-2 or CS-3 draws about 23 kW).
MAX_SYSTEM_POWER_W = 1e6
SystemPowerW = number(0, MAX_SYSTEM_POWER_W, " W", low_inclusive=False)


class Calibration(BaseModel):
    """Which constants of a profile are fitted, and on which validation cases (all
    jointly: every constant on every case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constants: list[str] = []   # dotted paths in the profile: kernel.vector_op_cycles
    cases: list[str] = []       # validation case names


class DequantCosts(BaseModel):
    """The per-instruction costs that price dequantization
    (:mod:`wsesim.quant.dequant` counts the instructions of each format).

    ``*_cycles``: cycles of one SIMD operation of that kind (one pass over the lanes);
    each vector instruction also pays the kernel's issue cost (``vector_op_cycles``)
    and, as it uses the previous step's result, at least ``vector_latency_cycles``.
    ``scalar_cycles``: one scalar instruction. ``*_lanes``: values per SIMD operation
    (the SIMD width, or its effective rate) of 16-bit integer work (shift, logic) and of
    fp16 work (convert, fma); absent (None), they follow the profile's
    ``macs_per_cycle.fp16`` (see :meth:`resolved`), so a refit of that rate carries
    over. Each is a profile key a sweep can vary
    (``hardware.kernel.dequant.shift_cycles``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shift_cycles: OpCycles     # shift left, logical or arithmetic shift right
    logic_cycles: OpCycles     # and, or, xor
    convert_cycles: OpCycles   # int16 -> fp16, fp32 -> fp16
    fma_cycles: OpCycles       # fp16 fused multiply-add, or a multiply
    scalar_cycles: OpCycles    # one scalar instruction (a tensor-wide scale on an input)
    int16_lanes: Lanes | None = None   # 16-bit integer values per SIMD operation
    fp16_lanes: Lanes | None = None    # fp16 values per SIMD operation

    def resolved(self, fp16_macs_per_cycle: float) -> "DequantCosts":
        """These costs with every lane count not stated set to ``fp16_macs_per_cycle``
        (the profile's ``macs_per_cycle.fp16``): the one place absent lanes are read."""
        return self.model_copy(update={
            name: fp16_macs_per_cycle for name in ("int16_lanes", "fp16_lanes")
            if getattr(self, name) is None})


class KernelProfile(BaseModel):
    """How the PE programs behave, beyond the raw hardware numbers: the cost of issuing
    and chaining vector instructions, of a chain stage, of calling a fabric operation,
    of re-routing a region's reductions, of a MeshGEMM step; elementwise functions and
    the per-instruction costs of dequantization.

    ``calibrated`` names the constants fitted to measurements and the validation cases
    they were fitted on (``python -m wsesim.calibrate`` fits them jointly); every other
    number carries its source in the profile's comments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vector_op_cycles: LatencyCycles           # issue of one vector (DSD) instruction
    vector_latency_cycles: LatencyCycles      # least time before a dependent instruction
    receive_add_forward_cycles: LatencyCycles  # a chain stage, beyond its two ramps
    fabric_call_cycles: LatencyCycles         # fixed cost of one fabric operation
    library_call_cycles: LatencyCycles        # one call of the SDK collectives library
    route_switch_cycles: LatencyCycles        # re-routing reductions to the other axis
    mesh_step_cycles: LatencyCycles           # MeshGEMM: hand-off between Cannon steps
    elementwise_ops: dict[str, PositiveOpsPerElement]  # vector instructions per element
    dequant: DequantCosts                     # per-instruction costs of dequantization
    calibrated: Calibration = Calibration()

    @model_validator(mode="after")
    def _complete(self) -> "KernelProfile":
        missing = [n for n in ELEMENTWISE_OPS if n not in self.elementwise_ops]
        if missing:
            raise ValueError(f"elementwise_ops needs an entry for each of "
                             f"{', '.join(ELEMENTWISE_OPS)} (missing {', '.join(missing)})")
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
    # wall power of one system (the wafer with its power, cooling and I/O), for energy
    # and cost per token; None: not known (energy is then not reported)
    system_power_w: SystemPowerW | None = None

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
