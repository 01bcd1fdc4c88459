"""A deployment: which model, on which hardware, how many wafers, quantized how, serving
what workload, mapped how, simulated at which fidelity."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from wsesim.errors import KeyedError, shown
from wsesim.specs.bounds import (
    MAX_ELEMENT_VISITS,
    MAX_LAYERS,
    MAX_STEP_ELEMENTS,
    MAX_STORED_ELEMENTS,
    MAX_TOKEN_STEPS,
    Batch,
    ContextTokens,
    GridSide,
    Groups,
    OutputTokens,
    PromptTokens,
    Wafers,
    count,
    no_bool,
    number,
)
from wsesim.specs.hardware import HardwareProfile
from wsesim.specs.model import ModelSpec
from wsesim.specs.quantization import QuantizationSpec
from wsesim.specs.serving import ServingSpec


class WorkloadSpec(BaseModel):
    """``batch_size`` sequences, each a prompt then generated tokens, with a KV cache
    provisioned for ``context_length`` tokens per sequence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: Batch = 1
    prompt_tokens: PromptTokens = 128
    output_tokens: OutputTokens = 128
    context_length: ContextTokens | None = None  # default: prompt_tokens + output_tokens

    @model_validator(mode="after")
    def _context_holds_sequence(self) -> "WorkloadSpec":
        if self.context_length is not None and self.context_length < self.sequence_tokens:
            raise KeyedError(
                "workload.context_length",
                f"{self.context_length} is shorter than prompt_tokens + output_tokens = "
                f"{self.sequence_tokens}")
        return self

    @property
    def sequence_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def context_tokens(self) -> int:
        """Tokens of context per sequence: ``context_length``, else prompt plus output
        (what the sequence could attend to; the KV cache held is ``Deployment.kv_tokens``,
        shorter under a sliding window)."""
        return self.context_length or self.sequence_tokens


# grouped: at most a region per stage (embeddings, LM head, each layer's attention and MLP)
RegionsPerWafer = count(2 * MAX_LAYERS + 2, " regions")
# the search's floor on tokens/s per user: beyond a billion it is a typo
TokenRate = number(0, 1e9, " tokens/s", low_inclusive=False)


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
    grid: tuple[GridSide, GridSide] | None = None  # [rows, cols] sub-rectangle
    # grouped: regions on each wafer (1 = sequential; as many as stages = pipeline)
    regions_per_wafer: RegionsPerWafer | None = None
    # how layers are split across wafers and regions: equal bytes (the fullest wafer
    # as light as can be) or equal time (the slowest region as quick as can be)
    balance: Literal["bytes", "time"] = "bytes"
    # how partial sums are reduced along a row or column of a region: auto takes the
    # fastest; two-level is WaferLLM's (chains in groups, a chain over group roots)
    allreduce: Literal["auto", "chain", "tree", "two-level"] = "auto"
    allreduce_groups: Groups | None = None  # two-level group count (None: fastest)
    # auto: what the search maximizes (tokens/s per user, or for all users together at
    # the workload's batch, optionally with a floor on the per-user rate)
    objective: Literal["tokens_per_s_per_user", "tokens_per_s"] = "tokens_per_s_per_user"
    min_tokens_per_s_per_user: TokenRate | None = None

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
        if self.allreduce in ("chain", "tree") and self.allreduce_groups is not None:
            raise KeyedError("mapping.allreduce_groups", "only applies to allreduce: "
                             f"two-level or auto, not {self.allreduce}")
        return self


# Prompt tokens per prefill chunk when several regions share a wafer: a modelling
# choice (no measurement), short enough that the regions overlap on one prompt.
DEFAULT_PREFILL_CHUNK_TOKENS = 128


class SimulationSpec(BaseModel):
    """How the performance is simulated. ``tile``: stages and links as queues with
    closed-form service times; ``pe``: every PE and link (small grids only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fidelity: Literal["tile", "pe"] = "tile"
    # prompt tokens a region takes at once in prefill (None: ``chunk_tokens``' rule)
    prefill_chunk_tokens: PromptTokens | None = None

    def chunk_tokens(self, one_region_per_wafer: bool) -> int | None:
        """Prompt tokens per prefill chunk: the key, else the whole prompt (None) when
        every wafer is one region (nothing to overlap), else
        ``DEFAULT_PREFILL_CHUNK_TOKENS``."""
        if self.prefill_chunk_tokens is not None:
            return self.prefill_chunk_tokens
        return None if one_region_per_wafer else DEFAULT_PREFILL_CHUNK_TOKENS


def _wafers(value: Any) -> Any:
    """A count or ``auto``: other text is neither, and a boolean is no count."""
    if isinstance(value, str) and value != "auto":
        raise ValueError(f"expected a number of wafers or auto, not the text "
                         f"{shown(value)}")
    return no_bool(value)


class Deployment(BaseModel):
    """Everything wsesim needs to answer: does it fit, where, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "deployment"
    model: ModelSpec
    hardware: HardwareProfile
    wafers: Annotated[Union[Wafers, Literal["auto"]], BeforeValidator(_wafers)] = "auto"
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
        units = m.wafer_units
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
        self._within_budgets()
        if self.simulation.fidelity == "pe":
            from wsesim.sim.limits import check_pe_grid
            check_pe_grid(self.grid_shape, "mapping.grid" if grid else hw.name)
        return self

    def _within_budgets(self) -> None:
        """Refuse a deployment whose byte counts could wrap int64 per PE, or whose
        simulation would run for minutes or take gigabytes (see ``specs/bounds.py``)."""
        m, wl = self.model, self.workload
        params = m.parameters
        if params > MAX_STORED_ELEMENTS:
            raise KeyedError("model", f"{params:,} parameters must be at most "
                             f"{MAX_STORED_ELEMENTS:,} (a bound of wsesim)")
        kv = 2 * m.num_hidden_layers * wl.batch_size * self.kv_tokens * m.kv_dim
        if params + kv > MAX_STORED_ELEMENTS:
            raise KeyedError(
                "workload", f"the KV cache's {kv:,} elements (2 x layers x batch_size x "
                f"context_length x KV width) and the model's {params:,} weights must be "
                f"at most {MAX_STORED_ELEMENTS:,} elements in all (a bound of wsesim); "
                "lower workload.batch_size or workload.context_length")
        steps, chunks, elements = simulation_size(self)
        token_steps = wl.batch_size * (steps + chunks)
        sends = (f"the simulation sends batch_size x (decode steps + prompt chunks) = "
                 f"{wl.batch_size:,} x ({steps:,} + {chunks:,}) = {token_steps:,} token "
                 "steps")
        for value, budget, what in (
                (token_steps, MAX_TOKEN_STEPS, sends),
                (token_steps * elements, MAX_ELEMENT_VISITS,
                 f"{sends} through up to {elements:,} pipeline elements = "
                 f"{token_steps * elements:,} element visits"),
                ((steps + chunks) * elements, MAX_STEP_ELEMENTS,
                 f"the simulation's tables hold (decode steps + prompt chunks) x pipeline "
                 f"elements = ({steps:,} + {chunks:,}) x {elements:,} = "
                 f"{(steps + chunks) * elements:,} figures")):
            if value > budget:
                raise KeyedError("workload", f"{what}, more than the budget of {budget:,} "
                                 "(a bound of wsesim); lower workload.batch_size, "
                                 "workload.output_tokens or workload.prompt_tokens (or "
                                 "raise simulation.prefill_chunk_tokens)")

    @property
    def kv_tokens(self) -> int:
        """Tokens of KV cache held per sequence: the context, or the model's sliding
        window if that is shorter."""
        window = self.model.attention_window
        tokens = self.workload.context_tokens
        return tokens if window is None else min(tokens, window)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Rows and columns of PEs used on each wafer."""
        if self.mapping.grid is not None:
            return self.mapping.grid
        return (self.hardware.grid_rows, self.hardware.grid_cols)


def simulation_size(dep: Deployment) -> tuple[int, int, int]:
    """(decode steps, prompt chunks, pipeline elements at most) of the tile simulation
    of ``dep``: every sequence sends its prompt chunks, then its decode steps, one by one
    through every element (a stage, the path into it, a wafer link, the way back)."""
    wl, L = dep.workload, dep.model.num_hidden_layers
    steps = wl.output_tokens - 1
    sequential = dep.mapping.strategy == "sequential"
    one_region = sequential or (dep.mapping.strategy == "grouped"
                                and dep.mapping.regions_per_wafer == 1)
    chunks = math.ceil(wl.prompt_tokens / (dep.simulation.chunk_tokens(one_region)
                                           or wl.prompt_tokens))
    wafers = L + 2 if dep.wafers == "auto" else dep.wafers   # auto: at most one unit each
    stages = 2 * L + 2
    elements = 3 * wafers - 1 if sequential else 2 * stages + wafers - 1
    return max(steps, 1), chunks, elements
