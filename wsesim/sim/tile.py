"""Tile-fidelity simulation: sequences' tokens flow through stages, paths and wafer
links with simpy.

A token visits, in order, every element of the pipeline: the way back of the previous
token from the LM head (decode), then on each wafer the path into a stage and the
stage's region, and between wafers the inter-wafer link. Each element is a
single-server FIFO queue with deterministic service times from the closed forms (a
path's or a link's latency delays the token without occupying it). All tokens enter at
the same end and keep their order, so the whole tandem is advanced exactly, when a
token enters, by the max-plus recursion D_k = max(D_{k-1} + d_k, B_k) + s_k (B_k: when
element k is next free): one numpy call and one simpy event per token (a prompt counts
as one) and sequence, whatever the number of stages, wafers or PEs. Tokens of different
sequences queue on stages and links alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from wsesim.perf.model import PerformanceModel

TRACE_SEQUENCES = 4   # sequences whose every visit a trace records
TRACE_STEPS = 32      # decode steps recorded per traced sequence
PHASES = ("decode", "prefill")


@dataclass
class Visit:
    """One token's (or chunk's, or serving micro-batch's) pass through the pipeline: its
    label, its phase and its start and end at each element."""

    who: str
    phase: str          # decode | prefill (serving: the micro-batch's kind, decode | chunk)
    starts: np.ndarray
    ends: np.ndarray


@dataclass(frozen=True)
class Slot:
    """Where an element of the chain sits: its wafer (None: between wafers) and name."""

    name: str
    wafer: int | None
    stages: tuple[int, ...]  # indices of the stages its region runs (none: a path, a link)
    link: int | None = None  # inter-wafer link index (-1: the token's way back)


def tandem_exits(gap: np.ndarray, reach: np.ndarray, now: float,
                 out: np.ndarray | None = None) -> np.ndarray:
    """When a job entering a tandem of FIFO servers at ``now`` leaves each of them: the
    max-plus recursion D_k = max(D_{k-1} + d_k, B_k) + s_k in closed form. ``reach``:
    cumsum(d + s), its exits from an idle tandem entered at 0; ``gap``: B - (reach - s),
    how late each server would keep it (overwritten)."""
    np.maximum.accumulate(gap, out=gap)
    np.maximum(gap, now, out=gap)
    return np.add(gap, reach, out=out)


class Pipeline:
    """Every element of a plan's timeline as one tandem of FIFO servers."""

    def __init__(self, model: PerformanceModel) -> None:
        n = {"decode": len(model.decode_contexts), "prefill": len(model.chunk_tokens)}
        slots: list[Slot] = []
        service: dict[str, list] = {p: [] for p in PHASES}
        delay: dict[str, list] = {p: [] for p in PHASES}

        def add(slot: Slot, occupancy: dict, wait: dict) -> None:
            slots.append(slot)
            for p in PHASES:
                service[p].append(occupancy[p])
                delay[p].append(wait[p])

        def table(columns: list, rows: int) -> np.ndarray:
            out = np.empty((rows, len(columns)))
            for k, column in enumerate(columns):
                out[:, k] = column  # a scalar or one value per step / chunk
            return out

        back_occupancy, back_delay = model.feedback_timing()
        add(Slot("way back to the embeddings", None, (), -1),
            {"decode": back_occupancy, "prefill": 0.0},
            {"decode": back_delay, "prefill": 0.0})
        for w, seg in enumerate(model.segments):
            if w > 0:
                timing = {p: model.link_timing(p, w - 1) for p in PHASES}
                add(Slot(f"link wafer {w - 1} -> {w}", None, (), w - 1),
                    {p: timing[p][0] for p in PHASES}, {p: timing[p][1] for p in PHASES})
            for e in seg.elements:
                add(Slot(e.name, seg.wafer, tuple(s.index for s in e.stages)),
                    {p: e.occupancy(p) for p in PHASES}, {p: e.delay(p) for p in PHASES})
        self.slots = slots
        self.service = {p: table(service[p], n[p]) for p in PHASES}
        self.delay = {p: table(delay[p], n[p]) for p in PHASES}
        self.free_at = np.zeros(len(slots))
        self.busy = np.zeros(len(slots))
        self.visits: list[Visit] = []

    def advance(self, now: float, phase: str, index: int, who: str | None = None) -> float:
        """Send one token (or prompt chunk) in at ``now``; returns when it leaves the
        last element. ``who`` (a label) records its start and end at every element."""
        s = self.service[phase][index]
        d = self.delay[phase][index]
        c = np.cumsum(s + d)
        done = tandem_exits(self.free_at - (c - s), c, now)
        self.free_at = done
        self.busy += s
        if who is not None:
            self.visits.append(Visit(who, phase, done - s, done))
        return float(done[-1])


@dataclass
class SequenceTimes:
    ttft: float = 0.0
    tokens: list[float] = field(default_factory=list)  # time each output token is out


@dataclass
class TileRun:
    """What the simulation measured, in cycles."""

    sequences: list[SequenceTimes]
    makespan: float
    pipeline: Pipeline
    events: int

    def busy_fraction(self) -> list[tuple[Slot, float]]:
        return [(slot, float(b / self.makespan)) for slot, b in
                zip(self.pipeline.slots, self.pipeline.busy)]


def run_tile(model: PerformanceModel, batch: int, trace: bool = False) -> TileRun:
    """Simulate ``batch`` sequences arriving together: each sends its prompt in chunks,
    then decodes token by token, each token waiting for the previous one to come back."""
    env = simpy.Environment()
    pipe = Pipeline(model)
    events = 0
    decode_steps = len(model.decode_contexts) if \
        model.plan.deployment.workload.output_tokens > 1 else 0

    def label(seq: int, phase: str, index: int) -> str | None:
        """What a trace records: every prompt chunk and the first decode steps of the
        first few sequences (a full 405B run would be millions of spans)."""
        if not trace or seq >= TRACE_SEQUENCES or (phase == "decode" and index >= TRACE_STEPS):
            return None
        return f"seq {seq} " + (f"prompt chunk {index}" if phase == "prefill"
                                else f"token {index + 2}")

    def sequence(i: int, times: SequenceTimes):
        nonlocal events
        # the chunks of a prompt enter one after another at once; the last one out
        # brings the first output token
        out = env.now
        for c in range(len(model.chunk_tokens)):
            out = pipe.advance(env.now, "prefill", c, label(i, "prefill", c))
        events += 1
        yield env.timeout(out - env.now)
        times.ttft = env.now
        times.tokens.append(env.now)
        for step in range(decode_steps):
            out = pipe.advance(env.now, "decode", step, label(i, "decode", step))
            events += 1
            yield env.timeout(out - env.now)
            times.tokens.append(env.now)

    seqs = [SequenceTimes() for _ in range(batch)]
    for i, t in enumerate(seqs):
        env.process(sequence(i, t))
    env.run()
    return TileRun(seqs, env.now, pipe, events)
