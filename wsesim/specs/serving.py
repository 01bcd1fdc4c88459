"""The ``serving:`` section of a deployment: a stream of requests served by the plan.

Every number is bounded by a named constant below: a value beyond is not a what-if but
a typo (or a run that would not end), and is refused with one located line.
"""
from __future__ import annotations

import math
import numbers
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

# A request's prompt or output: LLaMA 3.1's longest context (128 Ki tokens).
MAX_REQUEST_TOKENS = 131_072
# Requests in one run (and rows of an arrivals file).
MAX_REQUESTS = 100_000
DEFAULT_REQUESTS = 200
# The work a run may ask for: prompt chunks plus decode steps over all requests (each at
# most one pass of the pipeline, the cost of a pass when nothing can be batched).
MAX_PASSES = 20_000_000
MAX_RATE_PER_S = 1e6
MAX_CV = 100.0                 # gamma arrivals: coefficient of variation of the gaps
MAX_SLO_S = 1e6
MAX_STAGE_BATCH = 512          # decode tokens of distinct sequences a stage takes at once
DEFAULT_STAGE_BATCH = 8
MAX_SIGMA = 4.0                # lognormal lengths: spread of log(tokens)
MAX_PRICE_PER_SYSTEM_HOUR = 1e9
MAX_SEED = 2**63 - 1


def _number(value: Any) -> float:
    """A real number (not a boolean, not a string of digits), finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"expected a number, got {value!r}"[:120])
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _whole(value: Any) -> int:
    """A whole number (an int, or a float with no fraction), not a boolean or string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"expected a whole number, got {value!r}"[:120])
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


Seconds = Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_SLO_S)]
Tokens = Annotated[int, BeforeValidator(_whole), Field(ge=1, le=MAX_REQUEST_TOKENS)]


class Lognormal(BaseModel):
    """Request lengths drawn from a lognormal: ``mean`` tokens on average, ``sigma`` the
    standard deviation of log(tokens), rounded to whole tokens and kept within
    [``min``, ``max``]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: Literal["lognormal"] = "lognormal"
    mean: Annotated[float, BeforeValidator(_number), Field(ge=1, le=MAX_REQUEST_TOKENS)]
    sigma: Annotated[float, BeforeValidator(_number), Field(ge=0, le=MAX_SIGMA)]
    min: Tokens = 1
    max: Tokens = MAX_REQUEST_TOKENS

    @model_validator(mode="after")
    def _ordered(self) -> "Lognormal":
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max}")
        if not self.min <= self.mean <= self.max:
            raise ValueError(f"mean {self.mean:g} is outside [min, max] = "
                             f"[{self.min}, {self.max}]")
        return self


def _length_kind(value: Any) -> str:
    """A mapping (or a Lognormal) is a distribution; anything else a fixed length."""
    return "Lognormal" if isinstance(value, (dict, Lognormal)) else "Fixed"


Lengths = Annotated[Union[Annotated[Tokens, Tag("Fixed")],
                          Annotated[Lognormal, Tag("Lognormal")]],
                    Discriminator(_length_kind)]


class ServingSpec(BaseModel):
    """Requests arriving at ``rate_per_s`` (or as an arrivals file lists them), admitted
    first come first served when their KV cache fits in SRAM, prefilled in chunks
    interleaved with decode, decode tokens of up to ``max_stage_batch`` sequences taken
    at once by a stage. Each key can be overridden on the ``wsesim serve`` command line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_s: Annotated[float, BeforeValidator(_number),
                          Field(gt=0, le=MAX_RATE_PER_S)] | None = None
    requests: Annotated[int, BeforeValidator(_whole),
                        Field(ge=1, le=MAX_REQUESTS)] | None = None
    arrivals: Literal["poisson", "gamma", "constant"] = "poisson"
    cv: Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_CV)] | None = None
    arrivals_file: str | None = None     # CSV or JSONL: arrival_s, prompt_tokens, output_tokens
    seed: Annotated[int, BeforeValidator(_whole), Field(ge=0, le=MAX_SEED)] = 0
    prompt_tokens: Lengths | None = None  # None: the workload's prompt_tokens
    output_tokens: Lengths | None = None  # None: the workload's output_tokens
    slo_ttft_s: Seconds | None = None
    slo_tpot_s: Seconds | None = None
    max_stage_batch: Annotated[int, BeforeValidator(_whole),
                               Field(ge=1, le=MAX_STAGE_BATCH)] = DEFAULT_STAGE_BATCH
    prefill_chunk_tokens: Tokens | None = None  # None: simulation.prefill_chunk_tokens' rule
    kv_window_tokens: Tokens | None = None      # a sliding window: KV kept per request
    price_per_system_hour: Annotated[
        float, BeforeValidator(_number),
        Field(ge=0, le=MAX_PRICE_PER_SYSTEM_HOUR)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ServingSpec":
        from wsesim.errors import KeyedError
        if self.arrivals == "gamma" and self.cv is None:
            raise KeyedError("serving.cv", "required with arrivals: gamma (the "
                             "coefficient of variation of the gaps between arrivals)")
        if self.arrivals != "gamma" and self.cv is not None:
            raise KeyedError("serving.cv", f"only applies to arrivals: gamma, not "
                             f"{self.arrivals}")
        if self.arrivals_file is not None:
            for key in ("prompt_tokens", "output_tokens"):
                if getattr(self, key) is not None:
                    raise KeyedError(f"serving.{key}", "an arrivals file gives each "
                                     "request's lengths; set one or the other")
            if "arrivals" in self.model_fields_set or self.cv is not None:
                raise KeyedError("serving.arrivals", "an arrivals file gives the "
                                 "arrival times; set one or the other")
        elif self.rate_per_s is None:
            raise KeyedError("serving.rate_per_s", "required (requests per second), "
                             "unless an arrivals_file lists the arrivals")
        return self


__all__ = ["DEFAULT_REQUESTS", "DEFAULT_STAGE_BATCH", "Lognormal", "MAX_CV",
           "MAX_PASSES", "MAX_RATE_PER_S", "MAX_REQUESTS", "MAX_REQUEST_TOKENS",
           "MAX_STAGE_BATCH", "ServingSpec"]
