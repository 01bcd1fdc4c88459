"""Service times for the simulation and closed-form bounds, for one plan.

The timeline of one token through a pipeline is a chain of elements: for every stage,
the path that brings it its input (a delay for the head of the message, a link
occupancy for its wavelets) and the stage's own work on its region; between wafers, the
inter-wafer link. Decode costs depend on the context length, so each stage's cost is an
array over the decode steps; prefill is taken in chunks of prompt tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Protocol

import numpy as np

from wsesim.mapping.layout import Region
from wsesim.mapping.plan import Plan, Stage
from wsesim.perf.cost import Cost, stack, total_of
from wsesim.perf.paths import lane_plan
from wsesim.perf.stages import Kernels, prefill_cost, stage_cost

# The sampled token's id on its way back to the embeddings: one 32-bit wavelet.
TOKEN_ID_BYTES = 4


@dataclass
class Element:
    """One server of the chain: ``service`` cycles of occupancy after a ``delay`` (the
    time the input needs to arrive, which occupies nothing). Arrays: one entry per
    decode step or prefill chunk."""

    name: str
    stages: tuple[Stage, ...]   # the stages its region runs (none: a path)
    decode: Cost            # per decode step (arrays)
    prefill: Cost           # per prefill chunk (arrays)
    delay_is_latency: bool = False  # a path: its latency is a delay, bandwidth occupies

    def occupancy(self, phase: str) -> np.ndarray:
        """Cycles the element is busy per decode step or prefill chunk (``phase``)."""
        c: Cost = getattr(self, phase)
        return np.asarray(c.bandwidth if self.delay_is_latency else c.total, dtype=float)

    def delay(self, phase: str) -> np.ndarray:
        """Cycles before the element starts on a token that occupy nothing (a path's
        latency; none for a stage)."""
        c: Cost = getattr(self, phase)
        if self.delay_is_latency:
            return np.asarray(c.total - c.bandwidth, dtype=float)
        return np.zeros_like(np.asarray(c.total, dtype=float))


@dataclass
class Segment:
    """The elements of one wafer, in the order a token visits them."""

    wafer: int
    elements: list[Element]


@dataclass
class PerformanceModel:
    plan: Plan
    kernels: Kernels
    segments: list[Segment]
    links: list[tuple[Cost, Cost]]  # wafer w -> w+1: one token, one prefill chunk
    feedback: Cost           # the sampled token back to the embedding stage
    decode_contexts: np.ndarray
    chunk_tokens: np.ndarray
    stage_decode: list[tuple[Stage, Cost]]  # every stage and path into one, decode
    notes: list[str] = field(default_factory=list)
    _mean_path: Cost | None = field(default=None, repr=False)

    def link_timing(self, phase: str, boundary: int) -> tuple[np.ndarray, np.ndarray]:
        """(occupancy, delay) of the link from wafer ``boundary`` to the next, per decode
        step or prefill chunk: the wavelets hold the link; the paths to and from the
        wafers' edges and the link latency do not."""
        cost = self.links[boundary][0 if phase == "decode" else 1]
        n = len(self.decode_contexts if phase == "decode" else self.chunk_tokens)
        nbytes = self.plan.deployment.model.hidden_size * self.kernels.act_bytes * (
            1 if phase == "decode" else self.chunk_tokens)
        occupancy = np.ones(n) * self.kernels.fabric.interwafer_occupancy(nbytes)
        return occupancy, np.ones(n) * cost.total - occupancy

    def feedback_timing(self) -> tuple[float, float]:
        """(occupancy, delay) of sending the sampled token back to the embeddings."""
        occupancy = (self.kernels.fabric.interwafer_occupancy(TOKEN_ID_BYTES)
                     if len(self.segments) > 1 else 0.0)
        return occupancy, float(np.asarray(self.feedback.total)) - occupancy

    @property
    def clock_hz(self) -> float:
        return self.plan.deployment.hardware.clock_hz

    # ---- closed forms -----------------------------------------------------------
    def token_path(self, step: int | None = None) -> Cost:
        """Cycles of one decode pass through every element with no queueing (at decode
        step ``step``, or averaged over the decode steps), feedback included."""
        if step is None:
            if self._mean_path is None:
                self._mean_path = self._token_path(None)
            return self._mean_path
        return self._token_path(step)

    def _token_path(self, step: int | None) -> Cost:
        steps = len(self.decode_contexts)

        def at(c: Cost) -> Cost:
            return Cost(*(float(np.mean(v)) if step is None
                          else float(np.broadcast_to(v, (steps,))[step])
                          for v in c.by_cause().values()))
        parts = [at(e.decode) for s in self.segments for e in s.elements]
        parts += [at(decode) for decode, _ in self.links]
        parts.append(at(self.feedback))
        return total_of(parts)

    def layer_cycles(self) -> float:
        """Mean decode cycles of one transformer layer (its stages and the paths into
        them), averaged over layers and decode steps."""
        layers = self.plan.deployment.model.num_hidden_layers
        total = sum(float(np.mean(c.total)) for stage, c in self.stage_decode
                    if stage.layer is not None)
        return total / layers

    def slowest_element(self) -> tuple[str, Cost, float]:
        """The element with the largest mean decode occupancy (it sets the most tokens
        per second a full pipeline can deliver)."""
        best = None
        for seg in self.segments:
            for e in seg.elements:
                occ = float(np.mean(e.occupancy("decode")))
                if best is None or occ > best[2]:
                    best = (e.name, e.decode, occ)
        for w, (decode, _) in enumerate(self.links):
            occ = float(np.mean(self.link_timing("decode", w)[0]))
            if best is None or occ > best[2]:
                best = ("inter-wafer link", decode, occ)
        assert best is not None
        return best


def max_tokens_per_cycle(model: "PerformanceModel") -> float:
    """The most output tokens per cycle a full pipeline can deliver: every token visits
    every element, which serves one token at a time, no quicker than its quickest decode
    step; the element whose quickest step is slowest caps the rate."""
    steps = len(model.decode_contexts)
    rows = [np.broadcast_to(e.occupancy("decode"), (steps,))
            for seg in model.segments for e in seg.elements]
    rows += [model.link_timing("decode", w)[0] for w in range(len(model.links))]
    return 1.0 / float(np.max(np.min(np.stack(rows), axis=1)))


def hops_between(a: Region, b: Region) -> tuple[float, int]:
    (ar, ac), (br, bc) = a.center, b.center
    dr, dc = abs(ar - br), abs(ac - bc)
    return math.ceil(dr + dc), int(dr > 0 and dc > 0)


@lru_cache(maxsize=4096)
def _lanes(src: Region | None, dst: Region) -> tuple[int, int, int, int]:
    plan = lane_plan(src, dst)
    return plan.lanes, plan.rounds, plan.hops, plan.turns


def region_path(kn: Kernels, src: Region | None, dst: Region, hidden: int, tokens) -> Cost:
    """Activations of ``tokens`` tokens from one region into the next, by the lane plan
    of :mod:`wsesim.perf.paths`: the lanes run in parallel on their tracks (those that
    share a track follow each other), then each destination row multicasts its slice."""
    lanes, rounds, hops, turns = _lanes(src, dst)
    per_lane = math.ceil(hidden / lanes) * np.asarray(tokens)
    return (kn.fabric.transfer(hops, turns, per_lane * rounds, kn.act_bytes)
            + kn.fabric.broadcast(math.ceil((dst.cols - 1) / 2), per_lane, kn.act_bytes))


def edge_out(kn: Kernels, src: Region, grid_cols: int, hidden: int, tokens) -> Cost:
    """From a region to the east edge of its wafer, where the inter-wafer link starts."""
    per_lane = math.ceil(hidden / src.rows) * np.asarray(tokens)
    return kn.fabric.transfer(grid_cols - src.center[1], 0, per_lane, kn.act_bytes)


class StageCoster(Protocol):
    """Cycles of one stage: decode (one per context length) and prefill (one per chunk
    of ``chunk_tokens`` tokens ending at ``chunk_ends``), each a Cost of arrays."""

    def __call__(self, kn: Kernels, stage: Stage, contexts: np.ndarray,
                 chunk_tokens: np.ndarray, chunk_ends: np.ndarray) -> tuple[Cost, Cost]: ...


def closed_form_costs(kn: Kernels, stage: Stage, contexts: np.ndarray,
                      chunk_tokens: np.ndarray, chunk_ends: np.ndarray
                      ) -> tuple[Cost, Cost]:
    """The closed forms of ``wsesim.perf.stages`` (the tile fidelity)."""
    r = stage.region
    dec = stage_cost(kn, stage.content, r.rows, r.cols, contexts)
    per_chunk: dict[tuple[int, int], Cost] = {}
    keys = []
    for t, end in zip(chunk_tokens.tolist(), chunk_ends.tolist()):
        # only attention (how far back it looks) and the LM head (only the prompt's
        # last chunk needs logits) depend on where the chunk is in the prompt
        k = (t, end if stage.content.part in ("attention", "lm_head") else 0)
        if k not in per_chunk:
            per_chunk[k] = prefill_cost(kn, stage.content, r.rows, r.cols, t, end)
        keys.append(k)
    return dec, stack([per_chunk[k] for k in keys])


def region_groups(stages: tuple[Stage, ...]) -> list[list[Stage]]:
    """Consecutive stages that share a region (one element of the timeline each)."""
    groups: list[list[Stage]] = []
    for s in stages:
        if groups and groups[-1][0].region == s.region:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def prefill_chunk_tokens(plan: Plan) -> int | None:
    """Prompt tokens per prefill chunk of ``plan`` (None: the whole prompt), by
    ``SimulationSpec.chunk_tokens``: whether every wafer is one region."""
    one_region = all(len(region_groups(wp.stages)) == 1 for wp in plan.wafers)
    return plan.deployment.simulation.chunk_tokens(one_region)


def group_name(group: list[Stage], wafer: int, whole_grid: bool) -> str:
    if len(group) == 1:
        return group[0].name
    layers = [s.layer for s in group if s.layer is not None]
    what = (f"layers {min(layers)}-{max(layers)}" if len(set(layers)) > 1
            else f"layer {layers[0]}") if layers else f"{len(group)} stages"
    where = f"wafer {wafer}" if whole_grid else f"a region of wafer {wafer}"
    return f"{where} ({what}, one after another)"


def build_model(plan: Plan, coster: StageCoster = closed_form_costs,
                prefill: bool = True, decode_samples: int | None = None
                ) -> PerformanceModel:
    """Service times of every region of ``plan`` (its stages one after another) and of
    the paths between regions, for every decode step and prefill chunk of its workload
    (``prefill=False``: decode only, as a search rating decode rates needs;
    ``decode_samples``: that many decode steps spread evenly over the output instead of
    every one, for a quick rating).
    ``coster`` prices a stage's own work (the closed forms by default; the PE-level
    fidelity supplies its own)."""
    dep = plan.deployment
    kn = Kernels.of(dep)
    wl = dep.workload
    hidden = dep.model.hidden_size
    rows, grid_cols = dep.grid_shape
    steps = max(wl.output_tokens - 1, 1)
    decode_contexts = wl.prompt_tokens + 1 + np.arange(steps)
    if decode_samples is not None and decode_samples < steps:
        decode_contexts = np.unique(np.linspace(decode_contexts[0], decode_contexts[-1],
                                                decode_samples).round().astype(int))
    chunk = prefill_chunk_tokens(plan) or wl.prompt_tokens
    starts = np.arange(0, wl.prompt_tokens, chunk)
    chunk_tokens = np.minimum(chunk, wl.prompt_tokens - starts)
    chunk_ends = starts + chunk_tokens
    if not prefill:
        chunk_tokens, chunk_ends = chunk_tokens[:0], chunk_ends[:0]
    notes = []
    if any(len(g) > 1 for wp in plan.wafers for g in region_groups(wp.stages)) \
            and wl.batch_size > 1:
        notes.append("a region that holds several stages serves one sequence's token at a "
                     "time, stage after stage (no batched products)")

    cache: dict[tuple, tuple[Cost, Cost]] = {}

    def costs(stage: Stage, alone: bool) -> tuple[Cost, Cost]:
        # a stage alone on its region streams prompt chunks through stationary weights;
        # stages sharing a region run each chunk by MeshGEMM or token by token
        r = stage.region
        key = (id(stage.content), r.rows, r.cols, alone)
        if key not in cache:
            cache[key] = coster(replace(kn, shares_region=not alone), stage,
                                decode_contexts, chunk_tokens, chunk_ends)
        return cache[key]

    segments = []
    stage_decode: list[tuple[Stage, Cost]] = []
    for wp in plan.wafers:
        elements: list[Element] = []
        prev: Region | None = None
        for group in region_groups(wp.stages):
            region = group[0].region
            alone = len(group) == 1
            priced = [costs(s, alone) for s in group]
            name = group_name(group, wp.wafer, region.pes == rows * grid_cols)
            if prev is not None or wp.wafer > 0:   # the first wafer's first region: none
                path = Element(
                    f"path into {name}", (), region_path(kn, prev, region, hidden, 1),
                    region_path(kn, prev, region, hidden, chunk_tokens), delay_is_latency=True)
                elements.append(path)
                stage_decode.append((group[0], path.decode))
            stage_decode += [(s, c[0]) for s, c in zip(group, priced)]
            elements.append(Element(
                name, tuple(group),
                total_of([c[0] for c in priced]), total_of([c[1] for c in priced])))
            prev = region
        segments.append(Segment(wp.wafer, elements))

    bytes_per_token = hidden * kn.act_bytes
    links = []
    for wp in plan.wafers[:-1]:  # the way in on the next wafer is its first element
        last = wp.stages[-1].region
        links.append(tuple(edge_out(kn, last, grid_cols, hidden, tokens)
                           + kn.fabric.interwafer(bytes_per_token * tokens)
                           for tokens in (1, chunk_tokens)))
    head, embed = plan.wafers[-1].stages[-1].region, plan.wafers[0].stages[0].region
    feedback = kn.fabric.transfer(*hops_between(head, embed), 1, TOKEN_ID_BYTES)
    if len(plan.wafers) > 1:
        feedback = feedback + kn.fabric.interwafer(TOKEN_ID_BYTES)
    return PerformanceModel(plan, kn, segments, links, feedback, decode_contexts,
                            chunk_tokens, stage_decode, notes)


def dominant_cause(cost: Cost) -> tuple[str, float]:
    """The cause with the largest share of a cost, and that share."""
    parts = {k: float(np.mean(v)) for k, v in cost.by_cause().items()}
    total = sum(parts.values()) or 1.0
    name = max(parts, key=parts.get)
    return name, parts[name] / total


__all__ = ["PerformanceModel", "build_model", "dominant_cause", "edge_out", "group_name",
           "hops_between", "prefill_chunk_tokens", "region_groups", "region_path"]
