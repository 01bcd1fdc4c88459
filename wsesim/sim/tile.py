"""Tile-fidelity simulation: sequences' tokens flow through stages, paths and wafer
links with simpy.

Inside one wafer a token visits a chain of single-server FIFO queues (the path into a
stage, the stage's region) with deterministic service times from the closed forms. Such
a tandem is advanced exactly by the max-plus recursion D_k = max(D_{k-1} + d_k, B_k) +
s_k (B_k: when element k is next free), one numpy call per token and wafer, so simpy
carries one event per (token, sequence, wafer) and per inter-wafer transfer; the count
grows with layers, tokens and sequences, never with PEs. Wafer links are simpy
resources: tokens of different sequences queue on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from wsesim.perf.model import PerformanceModel, _delay, _occupancy

TRACE_SEQUENCES = 4   # sequences whose every visit a trace records
TRACE_STEPS = 32      # decode steps recorded per traced sequence


@dataclass
class Visit:
    """One token's (or chunk's) pass through a wafer: start and end at each element."""

    who: str
    phase: str
    starts: np.ndarray
    ends: np.ndarray


@dataclass
class LinkUse:
    link: int           # wafer boundary (w -> w+1); -1 the feedback path
    who: str
    start: float
    end: float


class SegmentServer:
    """The stages and paths of one wafer as a tandem of FIFO servers."""

    def __init__(self, model: PerformanceModel, index: int) -> None:
        elements = model.segments[index].elements
        self.elements = elements
        self.service = {p: np.stack([_occupancy(e, p) * np.ones(n) for e in elements], 1)
                        for p, n in (("decode", len(model.decode_contexts)),
                                     ("prefill", len(model.chunk_tokens)))}
        self.delay = {p: np.stack([_delay(e, p) * np.ones(n) for e in elements], 1)
                      for p, n in (("decode", len(model.decode_contexts)),
                                   ("prefill", len(model.chunk_tokens)))}
        self.free_at = np.zeros(len(elements))
        self.busy = np.zeros(len(elements))
        self.visits: list[Visit] = []

    def advance(self, now: float, phase: str, index: int, who: str | None = None) -> float:
        """Send one token (or prefill chunk) in at ``now``; returns when it leaves.
        ``who`` (a label) records the visit's start and end at every element."""
        s = self.service[phase][index]
        d = self.delay[phase][index]
        c = np.cumsum(s + d)
        run = np.maximum(np.maximum.accumulate(self.free_at - (c - s)), now)
        done = c + run
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
    element_busy: list[np.ndarray]     # per wafer: busy cycles per element
    link_busy: list[float]
    events: int
    servers: list[SegmentServer]
    link_uses: list[LinkUse] = field(default_factory=list)


def run_tile(model: PerformanceModel, batch: int, trace: bool = False) -> TileRun:
    """Simulate ``batch`` sequences: each a prefill in chunks, then its decode steps."""
    env = simpy.Environment()
    servers = [SegmentServer(model, w) for w in range(len(model.segments))]
    link_uses: list[LinkUse] = []

    def label(seq: int, phase: str, index: int) -> str | None:
        """What the trace records: every prompt chunk and the first decode steps of the
        first few sequences (a full 405B run would be millions of events)."""
        if not trace or seq >= TRACE_SEQUENCES or (phase == "decode" and index >= TRACE_STEPS):
            return None
        return f"seq {seq} " + (f"prompt chunk {index}" if phase == "prefill"
                                else f"token {index + 2}")
    links = [simpy.Resource(env, capacity=1) for _ in servers[1:]]
    link_busy = [0.0] * len(links)
    back_link = simpy.Resource(env, capacity=1)
    events = 0
    link_timing = {p: model.link_timing(p) for p in ("decode", "prefill")}

    def traverse(phase: str, index: int, seq: int):
        nonlocal events
        who = label(seq, phase, index)
        for w, server in enumerate(servers):
            out = server.advance(env.now, phase, index, who)
            events += 1
            yield env.timeout(out - env.now)
            if w < len(links):
                occupancy = float(link_timing[phase][0][index])
                delay = float(link_timing[phase][1][index])
                with links[w].request() as req:
                    yield req
                    start = env.now
                    yield env.timeout(occupancy)
                link_busy[w] += occupancy
                if who is not None:
                    link_uses.append(LinkUse(w, who, start, env.now))
                events += 1
                yield env.timeout(delay)

    fb_occ, fb_delay = model.feedback_timing()

    def sequence(i: int, times: SequenceTimes):
        nonlocal events
        chunks = [env.process(traverse("prefill", c, i))
                  for c in range(len(model.chunk_tokens))]
        yield simpy.AllOf(env, chunks)
        times.ttft = env.now
        times.tokens.append(env.now)
        for step in range(len(model.decode_contexts) if _decodes(model) else 0):
            if fb_occ:
                with back_link.request() as req:
                    yield req
                    yield env.timeout(fb_occ)
            yield env.timeout(fb_delay)
            events += 1
            yield from traverse("decode", step, i)
            times.tokens.append(env.now)

    seqs = [SequenceTimes() for _ in range(batch)]
    for i, t in enumerate(seqs):
        env.process(sequence(i, t))
    env.run()
    return TileRun(seqs, env.now, [s.busy for s in servers], link_busy, events, servers,
                   link_uses)


def _decodes(model: PerformanceModel) -> bool:
    """Whether the workload has decode passes (more than the one token prefill yields)."""
    return model.plan.deployment.workload.output_tokens > 1
