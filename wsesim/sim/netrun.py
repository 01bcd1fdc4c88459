"""What one PE-level run measured (:class:`NetRun`): cycles, the critical path by
cause, and every PE's, link's and ramp's busy cycles."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsesim.perf.cost import Cost
from wsesim.sim.ops import DIRECTIONS


@dataclass
class NetRun:
    """What one PE-level run measured. ``cycles``: the last PE's finish; ``cost``: its
    critical path split by cause; ``events``: simpy events processed (a train's head
    at a router, a PE woken by a train, a PE's start); utilization arrays are busy
    fractions of ``cycles`` shaped (rows, cols)."""

    cycles: float
    cost: Cost
    events: int
    wall_s: float                # the whole run: programs loaded and simulated
    sim_s: float                 # simpy's event loop alone (for events per second)
    rows: int
    cols: int
    pe_busy: np.ndarray          # busy cycles per PE (instructions, fixed costs, streaming)
    link_busy: np.ndarray        # (rows, cols, 4): cycles each outgoing link carried
    ramp_up_busy: np.ndarray     # (rows, cols)
    ramp_down_busy: np.ndarray   # (rows, cols)
    finish: np.ndarray           # each PE's clock at the end
    sram_peak: np.ndarray        # bytes each PE held at most
    notes: list[str] = field(default_factory=list)

    def utilization(self) -> dict[str, np.ndarray]:
        """Busy fractions (0..1) of the run, each (rows, cols): ``pe`` (the core),
        ``east``/``west``/``south``/``north`` (each router's outgoing link),
        ``link`` (the busiest of the four), ``ramp_up``/``ramp_down``."""
        span = self.cycles or 1.0
        out = {"pe": self.pe_busy / span}
        for d, name in enumerate(DIRECTIONS):
            out[name] = self.link_busy[:, :, d] / span
        out["link"] = self.link_busy.max(axis=2) / span
        out["ramp_up"] = self.ramp_up_busy / span
        out["ramp_down"] = self.ramp_down_busy / span
        return out
