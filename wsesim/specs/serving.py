"""The ``serving:`` section of a deployment: a stream of requests served by the plan.

Every number is bounded, by the bounds of ``specs/bounds.py`` (a request's prompt and
output tokens are the workload's) or by a named constant below: a value beyond is not a
what-if but a typo (or a run that would not end), and is refused with one located line.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, model_validator

from wsesim.errors import KeyedError
from wsesim.specs.bounds import (
    MAX_OUTPUT_TOKENS,
    MAX_PROMPT_TOKENS,
    ContextTokens,
    OutputTokens,
    PromptTokens,
    count,
    number,
)

# Requests in one run (and rows of an arrivals file).
MAX_REQUESTS = 100_000
DEFAULT_REQUESTS = 200
# The work a run may ask for: prompt chunks plus decode steps over all requests (each at
# most one pass of the pipeline, the cost of a pass when nothing can be batched).
MAX_PASSES = 20_000_000
# One request every 1,000 s at the least: slower, requests almost never overlap, so the
# results no longer depend on the rate (only the run's length grows).
MIN_RATE_PER_S, MAX_RATE_PER_S = 1e-3, 1e6
# gamma arrivals: coefficient of variation of the gaps; below the least, the gaps are
# equal to within 0.1%, as arrivals: constant makes them
MIN_CV, MAX_CV = 1e-3, 100.0
MAX_SLO_S = 1e6
MAX_STAGE_BATCH = 512          # decode tokens of distinct sequences a stage takes at once
DEFAULT_STAGE_BATCH = 8
MAX_SIGMA = 4.0                # lognormal lengths: spread of log(tokens)
MAX_PRICE_PER_SYSTEM_HOUR = 1e9
MAX_SEED = 2**63 - 1

Requests = count(MAX_REQUESTS, " requests")
RatePerS = number(MIN_RATE_PER_S, MAX_RATE_PER_S, " requests/s",
                  why="slower, requests almost never overlap and the results no longer "
                  "depend on the rate")
CV = number(MIN_CV, MAX_CV, why="below it the gaps are equal to within 0.1%: use "
            "arrivals: constant")
Seed = count(MAX_SEED, minimum=0)
Seconds = number(0, MAX_SLO_S, " s", low_inclusive=False)
StageBatch = count(MAX_STAGE_BATCH, " sequences")
Price = number(0, MAX_PRICE_PER_SYSTEM_HOUR)
Sigma = number(0, MAX_SIGMA)
PromptMean = number(1, MAX_PROMPT_TOKENS, " tokens")
OutputMean = number(1, MAX_OUTPUT_TOKENS, " tokens")


class Lognormal(BaseModel):
    """Prompt lengths drawn from a lognormal: ``mean`` tokens on average, ``sigma`` the
    standard deviation of log(tokens), rounded to whole tokens and kept within
    [``min``, ``max``]. :class:`OutputLognormal` draws output lengths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: Literal["lognormal"] = "lognormal"
    mean: PromptMean
    sigma: Sigma
    min: PromptTokens = 1
    max: PromptTokens = MAX_PROMPT_TOKENS

    @model_validator(mode="after")
    def _ordered(self) -> "Lognormal":
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max}")
        if not self.min <= self.mean <= self.max:
            raise ValueError(f"mean {self.mean:g} is outside [min, max] = "
                             f"[{self.min}, {self.max}]")
        return self


class OutputLognormal(Lognormal):
    """Output lengths drawn from a lognormal, within the bound of output tokens."""

    mean: OutputMean
    min: OutputTokens = 1
    max: OutputTokens = MAX_OUTPUT_TOKENS


def _length_kind(value: Any) -> str:
    """A mapping (or a Lognormal) is a distribution; anything else a fixed length."""
    return "Lognormal" if isinstance(value, (dict, Lognormal)) else "Fixed"


def _lengths(tokens: Any, distribution: type[Lognormal]) -> Any:
    """A fixed number of ``tokens`` or a ``distribution`` of them."""
    return Annotated[Union[Annotated[tokens, Tag("Fixed")],
                           Annotated[distribution, Tag("Lognormal")]],
                     Discriminator(_length_kind)]


PromptLengths = _lengths(PromptTokens, Lognormal)
OutputLengths = _lengths(OutputTokens, OutputLognormal)


class ServingSpec(BaseModel):
    """Requests arriving at ``rate_per_s`` (or as an arrivals file lists them), admitted
    first come first served when their KV cache fits in SRAM, prefilled in chunks
    interleaved with decode, decode tokens of up to ``max_stage_batch`` sequences taken
    at once by a stage. Each key can be overridden on the ``wsesim serve`` command line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_s: RatePerS | None = None
    requests: Requests | None = None
    arrivals: Literal["poisson", "gamma", "constant"] = "poisson"
    cv: CV | None = None
    arrivals_file: str | None = None  # CSV/JSONL: arrival_s, prompt_tokens, output_tokens
    seed: Seed = 0
    prompt_tokens: PromptLengths | None = None  # None: the workload's prompt_tokens
    output_tokens: OutputLengths | None = None  # None: the workload's output_tokens
    slo_ttft_s: Seconds | None = None
    slo_tpot_s: Seconds | None = None
    max_stage_batch: StageBatch = DEFAULT_STAGE_BATCH
    # None: simulation.prefill_chunk_tokens' rule
    prefill_chunk_tokens: PromptTokens | None = None
    kv_window_tokens: ContextTokens | None = None  # a sliding window: KV kept per request
    price_per_system_hour: Price | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ServingSpec":
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
           "MAX_PASSES", "MAX_RATE_PER_S", "MAX_REQUESTS", "MAX_STAGE_BATCH", "MIN_CV",
           "MIN_RATE_PER_S", "OutputLognormal", "ServingSpec"]
