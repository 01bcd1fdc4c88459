"""The PE fidelity's ``StageCoster`` (``simulation: {fidelity: pe}``): every stage's
decode and prefill costs simulated PE by PE on its region (a few context lengths, the
rest interpolated), and the busy fractions of such a run for the heatmaps."""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np

from wsesim.perf.cost import Cost, stack
from wsesim.perf.stages import Kernels, needs_logits, sequential_prefill
from wsesim.sim import stage_programs as programs
from wsesim.sim.limits import check_pe_region
from wsesim.sim.netrun import NetRun

# Context lengths (and prefill chunk ends) simulated per stage at most; others are
# interpolated linearly between them (attention's cost is linear in the context, up to
# the one-token steps of how the tokens split over the rows).
MAX_SAMPLES = 4

_STAGE_RUNS: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()


def _sample(values: np.ndarray, limit: int = MAX_SAMPLES) -> np.ndarray:
    uniq = np.unique(values.astype(np.int64))
    if len(uniq) <= limit:
        return uniq
    return np.unique(np.round(np.linspace(uniq[0], uniq[-1], limit)).astype(np.int64))


def _interp(values: np.ndarray, samples: np.ndarray, costs: list[Cost]) -> Cost:
    """Each cause interpolated linearly between the simulated samples."""
    out = []
    for f in fields(Cost):
        ys = np.array([float(np.asarray(getattr(c, f.name))) for c in costs])
        out.append(np.interp(values.astype(float), samples.astype(float), ys)
                   if len(samples) > 1 else np.full(len(values), ys[0]))
    return Cost(*out)


def pe_stage_costs(kn: Kernels, stage: Any, contexts: np.ndarray,
                   chunk_tokens: np.ndarray, chunk_ends: np.ndarray) -> tuple[Cost, Cost]:
    """The ``StageCoster`` of ``simulation: {fidelity: pe}``: a stage's decode cost at
    every context length and its prefill cost for every chunk, simulated PE by PE on
    the stage's region. Attention depends on the context: at most ``MAX_SAMPLES``
    context lengths (chunk ends) are simulated and the rest interpolated linearly.
    The prefill of an attention or MLP stage that shares its region with others
    (``kn.shares_region``: ``sequential``, where every stage holds the whole grid, or a
    region of ``grouped``) runs the kernel the closed form picks: MeshGEMM over the
    region (``MESH_ROUNDS`` steps simulated at most, the rest extrapolated) or the
    decode kernel token by token."""
    content = stage.content
    r = stage.region
    rows, cols = r.rows, r.cols
    check_pe_region(rows, cols, stage.name)
    contexts = np.asarray(contexts)
    runs: dict[int, NetRun] = {}

    def at(ctx: int, tokens: int = 1) -> Cost:
        key = (int(ctx) if content.part == "attention" else 0, int(tokens))
        if key not in cache:
            run = programs.simulate_stage(kn, content, rows, cols, int(ctx), tokens)
            cache[key] = run.cost
            if tokens == 1:
                runs[key[0]] = run
        return cache[key]

    cache: dict[tuple[Any, int], Cost] = {}
    attention = content.part == "attention"

    def sampled(values: np.ndarray, cost_at: Callable[[int], Cost]) -> Cost:
        """``cost_at`` at every value: simulated at MAX_SAMPLES of them at most (one
        unless the stage is attention, whose cost depends on the context), the rest
        interpolated."""
        samples = _sample(values) if attention else values[:1]
        return _interp(values, samples, [cost_at(int(v)) for v in samples])

    decode = sampled(contexts, at)
    prefill_parts: list[Cost] = [Cost()] * len(chunk_tokens)
    tokens_arr = np.asarray(chunk_tokens)
    ends = np.asarray(chunk_ends)
    for t in np.unique(tokens_arr).tolist():
        idx = np.nonzero(tokens_arr == t)[0]
        if content.part == "lm_head":
            one = at(0, 1)
            for i, last in zip(idx, needs_logits(kn, ends[idx])):
                prefill_parts[i] = one * float(last)
            continue
        groups: dict[str, list[int]] = {"chunk": list(idx)}
        if kn.shares_region and content.part in ("attention", "mlp"):
            groups = {}   # by the kernel the closed form picks for each chunk
            for i in idx:
                kernel = sequential_prefill(kn, content, rows, cols, t, int(ends[i]))[0]
                groups.setdefault(kernel, []).append(i)
        for kernel, members in groups.items():
            def cost_at(end: int, kernel: str = kernel) -> Cost:
                if kernel == "meshgemm":
                    key = ("mesh", t, end if attention else 0)
                    if key not in cache:
                        cache[key] = programs.mesh_prefill(kn, content, rows, cols, t,
                                                           end)[0]
                    return cache[key]
                return at(end) * t if kernel == "token by token" else at(end, t)
            got = sampled(ends[members], cost_at)
            for j, i in enumerate(members):
                prefill_parts[i] = Cost(*(float(v[j]) for v in got.by_cause().values()))
    prefill = stack(prefill_parts)
    # keep the decode run at the longest simulated context for the utilization maps
    if runs:
        key = max(runs)
        _STAGE_RUNS.setdefault(content, {})[(rows, cols)] = runs[key]
    return decode, prefill


def pe_utilization(result: Any) -> dict[str, Any]:
    """Busy fractions of a ``fidelity: pe`` run's decode step in the ledger's grid
    shape: ``{"pe": [wafer arrays], "link": [...], "east": ..., "west": ...,
    "south": ..., "north": ..., "ramp_up": ..., "ramp_down": ...}``, each array
    (rows, cols) per wafer. A PE's fraction is its busy cycles in every stage it holds
    (each stage simulated on its own region, at the longest context simulated) over
    the sum of those stages' cycles on its wafer; the paths between stages are not
    counted. Pass ``link`` to ``wsesim.plots.utilization_figure(..., link_busy=...)``."""
    plan = result.plan
    rows, cols = plan.deployment.grid_shape
    names = ("pe", "link", "east", "west", "south", "north", "ramp_up", "ramp_down")
    out: dict[str, Any] = {n: [] for n in names}
    for wp in plan.wafers:
        busy = {n: np.zeros((rows, cols)) for n in names}
        span = 0.0
        for s in wp.stages:
            run = _STAGE_RUNS.get(s.content, {}).get((s.region.rows, s.region.cols))
            if run is None:
                continue
            r = s.region
            span += run.cycles
            u = run.utilization()
            for n in names:
                busy[n][r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] += u[n] * run.cycles
        for n in names:
            out[n].append(busy[n] / span if span else busy[n])
    return out
