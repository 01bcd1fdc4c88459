"""Compute time of the tile simulation: LLaMA-3.1-405B at 3.5 bits on five WSE-3
wafers, 256 decoded tokens, batch 1 and batch 64 (issue targets: under 1 s and 5 s).

Run: python benchmarks/bench_decode.py. Prints the figures; asserts nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

from wsesim.mapping.plan import make_plan
from wsesim.perf.model import build_model
from wsesim.sim.tile import run_tile
from wsesim.specs import load_deployment

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    base = load_deployment(ROOT / "examples" / "llama-3.1-405b-w3.5-5x-wse3.yaml")
    for batch in (1, 64):
        wl = base.workload.model_copy(update={"batch_size": batch, "prompt_tokens": 128,
                                              "output_tokens": 256,
                                              "context_length": 4096})
        dep = base.model_copy(update={"workload": wl})
        tp = time.perf_counter()
        plan = make_plan(dep, 5)
        t0 = time.perf_counter()
        model = build_model(plan)
        t1 = time.perf_counter()
        run = run_tile(model, batch)
        t2 = time.perf_counter()
        tokens = sum(len(s.tokens) for s in run.sequences)
        print(f"405B w3.5 x 5 WSE-3, batch {batch:>2}, 256 tokens each: plan {t0 - tp:.2f} s"
              f" (not part of the target) + service times {t1 - t0:.2f} s + simulation "
              f"{t2 - t1:.2f} s = {t2 - t0:.2f} s of compute; "
              f"{run.events:,} events, {tokens:,} tokens, "
              f"{run.events / max(t2 - t1, 1e-9):,.0f} events/s")


if __name__ == "__main__":
    main()
