"""A deployment: which model, on which hardware, how many wafers, quantized how, serving
what workload, mapped how, simulated at which fidelity."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, model_validator

from wsesim.errors import KeyedError
from wsesim.specs.hardware import HardwareProfile
from wsesim.specs.model import ModelSpec
from wsesim.specs.quantization import QuantizationSpec
from wsesim.specs.serving import ServingSpec


class WorkloadSpec(BaseModel):
    """``batch_size`` sequences, each a prompt then generated tokens, with a KV cache
    provisioned for ``context_length`` tokens per sequence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: PositiveInt = 1
    prompt_tokens: PositiveInt = 128
    output_tokens: PositiveInt = 128
    context_length: PositiveInt | None = None  # default: prompt_tokens + output_tokens

    @model_validator(mode="after")
    def _context_holds_sequence(self) -> "WorkloadSpec":
        if self.context_length is not None and self.context_length < self.sequence_tokens:
            raise ValueError(
                f"context_length {self.context_length} is shorter than prompt_tokens + "
                f"output_tokens = {self.sequence_tokens}"
            )
        return self

    @property
    def sequence_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def kv_tokens(self) -> int:
        """Tokens of KV cache provisioned per sequence."""
        return self.context_length or self.sequence_tokens


class MappingSpec(BaseModel):
    """How layers are laid out. ``pipeline`` gives each layer's attention and MLP its own
    region (tokens of different sequences flow through them like an assembly line);
    ``sequential`` spreads every layer over the whole grid (or ``grid``) and runs layers
    one after another; ``grouped`` cuts each wafer into ``regions_per_wafer`` regions,
    each holding a contiguous block of stages spread over the whole region (sequential
    inside a region, a pipeline of regions); ``auto`` searches these for the best plan
    that fits, by ``objective``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["pipeline", "sequential", "grouped", "auto"] = "pipeline"
    grid: tuple[PositiveInt, PositiveInt] | None = None  # [rows, cols] sub-rectangle
    # grouped: regions on each wafer (1 = sequential; as many as stages = pipeline)
    regions_per_wafer: PositiveInt | None = None
    # how layers are split across wafers and regions: equal bytes (the fullest wafer
    # as light as can be) or equal time (the slowest region as quick as can be)
    balance: Literal["bytes", "time"] = "bytes"
    # how partial sums are reduced along a row or column of a region: auto takes the
    # fastest; two-level is WaferLLM's (chains in groups, a chain over group roots)
    allreduce: Literal["auto", "chain", "tree", "two-level"] = "auto"
    allreduce_groups: PositiveInt | None = None  # two-level group count (None: fastest)
    # auto: what the search maximizes (tokens/s per user, or for all users together at
    # the workload's batch, optionally with a floor on the per-user rate)
    objective: Literal["tokens_per_s_per_user", "tokens_per_s"] = "tokens_per_s_per_user"
    min_tokens_per_s_per_user: PositiveFloat | None = None

    @model_validator(mode="after")
    def _strategy_keys(self) -> "MappingSpec":
        if self.strategy == "grouped" and self.regions_per_wafer is None:
            raise KeyedError("mapping.regions_per_wafer", "required with strategy: "
                             "grouped (how many regions each wafer is cut into)")
        if self.strategy != "grouped" and self.regions_per_wafer is not None:
            raise KeyedError("mapping.regions_per_wafer", "only applies to strategy: "
                             f"grouped, not {self.strategy}")
        if self.strategy != "auto" and self.min_tokens_per_s_per_user is not None:
            raise KeyedError("mapping.min_tokens_per_s_per_user", "only applies to "
                             "strategy: auto (the search's floor)")
        return self


class SimulationSpec(BaseModel):
    """How the performance is simulated. ``tile``: stages and links as queues with
    closed-form service times; ``pe``: every PE and link (small grids only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fidelity: Literal["tile", "pe"] = "tile"
    # prompt tokens a stage takes at once in prefill (None: the whole prompt for
    # sequential, up to 128 for pipeline so that stages overlap on one prompt)
    prefill_chunk_tokens: PositiveInt | None = None


class Deployment(BaseModel):
    """Everything wsesim needs to answer: does it fit, where, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "deployment"
    model: ModelSpec
    hardware: HardwareProfile
    wafers: PositiveInt | Literal["auto"] = "auto"
    quantization: QuantizationSpec = QuantizationSpec()
    workload: WorkloadSpec = WorkloadSpec()
    mapping: MappingSpec = MappingSpec()
    simulation: SimulationSpec = SimulationSpec()
    serving: ServingSpec | None = None   # a stream of requests (wsesim serve)

    @model_validator(mode="after")
    def _fits_the_hardware_and_model(self) -> "Deployment":
        grid = self.mapping.grid
        hw = self.hardware
        if grid is not None and (grid[0] > hw.grid_rows or grid[1] > hw.grid_cols):
            raise KeyedError(
                "mapping.grid",
                f"{list(grid)} is larger than the {hw.name} grid "
                f"[{hw.grid_rows}, {hw.grid_cols}]",
            )
        m = self.model
        units = m.num_hidden_layers + 2
        if self.wafers != "auto" and self.wafers > units:
            raise KeyedError("wafers", f"{self.wafers} is more than the {units} units "
                             "(embeddings, each layer, LM head) that wafers can split")
        for key, fmt, dims in (
            ("quantization.weights", self.quantization.weights,
             {"hidden_size": m.hidden_size, "intermediate_size": m.intermediate_size,
              "num_attention_heads x head_dim": m.q_dim}),
            ("quantization.embeddings", self.quantization.embeddings,
             {"hidden_size": m.hidden_size}),
            ("quantization.kv_cache", self.quantization.kv_cache,
             {"head_dim": m.head_size}),
        ):
            g = fmt.group_size
            if g is None:
                continue
            for dim_name, dim in dims.items():
                if dim % g:
                    raise KeyedError(
                        f"{key}.group_size",
                        f"{g} does not divide {dim_name} = {dim} (every row would end in a "
                        f"partial group)",
                    )
        if self.simulation.fidelity == "pe":
            from wsesim.sim.limits import check_pe_grid
            check_pe_grid(self.grid_shape, "mapping.grid" if grid else hw.name)
        return self

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Rows and columns of PEs used on each wafer."""
        if self.mapping.grid is not None:
            return self.mapping.grid
        return (self.hardware.grid_rows, self.hardware.grid_cols)

