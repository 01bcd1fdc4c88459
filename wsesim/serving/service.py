"""One serving study of a deployment: its plan and ledger (as ``wsesim run`` makes
them), the KV capacity of its SRAM, the costs of micro-batches, the request stream; then
runs at one rate (:func:`serve`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsesim.errors import KeyedError
from wsesim.mapping.plan import Plan
from wsesim.perf.model import prefill_chunk_tokens
from wsesim.serving.arrivals import Pattern, pattern
from wsesim.serving.costs import BatchCosts
from wsesim.serving.engine import Engine, ServingRun
from wsesim.serving.kv import KVCapacity, kv_capacity
from wsesim.serving.metrics import run_span, summarize
from wsesim.specs import Deployment
from wsesim.specs.serving import MAX_PASSES, ServingSpec

@dataclass
class Study:
    """Everything fixed across the runs of one deployment's serving study."""

    deployment: Deployment
    spec: ServingSpec
    result: Any                  # the run's Result (plan, ledger, memory)
    costs: BatchCosts
    kv: KVCapacity
    pattern: Pattern
    chunk_tokens: int | None     # None: a whole prompt at once
    window: int | None           # tokens of KV a request holds at most (None: all)

    @property
    def plan(self) -> Plan:
        return self.result.plan

    @property
    def clock_hz(self) -> float:
        return self.deployment.hardware.clock_hz

    @property
    def wafers(self) -> int:
        return len(self.plan.wafers)

    def kv_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens of KV held by requests of ``tokens`` tokens (prompt plus output)."""
        return held_tokens(tokens, self.window)


@dataclass
class Served:
    """One run at one rate: its summary and what it recorded."""

    summary: dict[str, Any]
    run: ServingRun


def held_tokens(tokens: Any, window: int | None) -> Any:
    """Tokens of KV a sequence of ``tokens`` tokens holds: all of them, or the
    window's."""
    return tokens if window is None else np.minimum(tokens, window)


def kv_window(dep: Deployment, spec: ServingSpec) -> int | None:
    """Tokens a request keeps KV of (and attends to) at most: the model's sliding
    window, or ``serving.kv_window_tokens`` if that is shorter (None: every token)."""
    return min((w for w in (dep.model.attention_window, spec.kv_window_tokens)
                if w is not None), default=None)


def prepare(dep: Deployment, result: Any = None, base_dir: Path = Path("."),
            source: str | Path = "<input>", spec: ServingSpec | None = None) -> Study:
    """Plan ``dep`` (or take the plan of ``result``, a run of it), size its KV cache and
    draw its requests (``spec``: the serving settings, default ``dep.serving``)."""
    spec = spec or dep.serving
    if spec is None:
        raise KeyedError("serving", "the deployment has no serving section (give at "
                         "least --rate on the command line)")
    if dep.simulation.fidelity != "tile":
        raise KeyedError("simulation.fidelity", "serving prices micro-batches with the "
                         "closed forms of the tile fidelity; set fidelity: tile")
    if result is None:
        from wsesim.run import simulate
        result = simulate(dep, with_performance=False, find_min_wafers=False)
    wl = dep.workload
    pat = pattern(spec, wl.prompt_tokens, wl.output_tokens, base_dir, source)
    chunk = spec.prefill_chunk_tokens or prefill_chunk_tokens(result.plan)
    prompt, output = pat.prompt_tokens, pat.output_tokens
    chunks = len(prompt) if chunk is None else int((-(-prompt // chunk)).sum())
    passes = chunks + int((output - 1).sum())
    if passes > MAX_PASSES:
        raise KeyedError("serving.requests", f"{len(prompt):,} requests take up to "
                         f"{passes:,} passes of the pipeline (prompt chunks and decode "
                         f"steps); at most {MAX_PASSES:,}: ask for fewer or shorter "
                         "requests, or longer prompt chunks")
    longest = int(np.max(prompt + output))
    window = kv_window(dep, spec)
    kv = kv_capacity(result.ledger, spec.max_stage_batch, int(held_tokens(longest, window)))
    costs = BatchCosts(result.plan, longest, window)
    return Study(dep, spec, result, costs, kv, pat, chunk, window)


def serve(study: Study, rate_per_s: float | None = None, trace: bool = False) -> Served:
    """Run the study's requests at ``rate_per_s`` (default: the study's own rate)."""
    requests = study.pattern.at(rate_per_s)
    hz = study.clock_hz
    spec = study.spec
    prompt, output = requests.prompt_tokens, requests.output_tokens
    engine = Engine(study.costs, study.kv, requests.arrival_s * hz, prompt, output,
                    study.kv_tokens(prompt + output), spec.max_stage_batch,
                    study.chunk_tokens, trace)
    run = engine.run()
    summary = summarize(run, hz, requests.rate_per_s, spec.slo_ttft_s, spec.slo_tpot_s,
                        study.wafers, study.deployment.hardware.system_power_w,
                        spec.price_per_system_hour)
    kv = study.kv
    binding = kv.binding
    summary.update({
        "arrivals": study.pattern.description,
        "max_stage_batch": spec.max_stage_batch,
        "prefill_chunk_tokens": study.chunk_tokens,
        "kv_window_tokens": study.window,
        "kv_capacity_tokens": kv.tokens,
        "kv_binding_region": binding.name if binding else None,
        "element_busy": element_busy(study, run),
    })
    return Served(summary, run)


def element_busy(study: Study, run: ServingRun) -> list[dict[str, Any]]:
    """Each element's busy fraction of the run's duration, in the timeline's order."""
    start, end = run_span(run)
    span = end - start
    if span <= 0 or not math.isfinite(span):
        return []
    return [{"name": slot.name, "busy": float(b / span)}
            for slot, b in zip(study.costs.slots, run.busy)]
