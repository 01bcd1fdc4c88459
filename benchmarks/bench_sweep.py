"""How long a what-if sweep takes: LLaMA-3.1 8B / 70B / 405B x weight bits 16, 8, 4, 3.5
x 1-8 WSE-3 wafers x 6 context lengths (576 points) on 2 worker processes, performance
model included. Target (issue 5): >= 500 points in under 60 s on 2 workers.

Then the same sweep again into the same folder: every saved row's key is checked against
its point's fully resolved deployment (this process, no worker) and nothing runs; and
the points of a sweep at the bound (100,000) streamed, to show they cost no memory.

Run: python benchmarks/bench_sweep.py [--workers N] [--contexts N] [--no-performance]
[--phases]. ``--phases`` first times, on a few sample points in this process, where a
point's time goes (plan, SRAM ledger, performance model, fewest-wafers search). Prints
the figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter

CONTEXTS = [2048, 4096, 8192, 16384, 32768, 65536]


def sweep_spec(contexts: list[int], performance: bool) -> dict:
    return {
        "name": "bench",
        "base": {"name": "bench", "model": "llama-3.1-8b", "hardware": "wse3", "wafers": 1,
                 "quantization": {"weights": "w3.5-g128", "embeddings": "bf16",
                                  "kv_cache": "bf16"},
                 "workload": {"batch_size": 1, "prompt_tokens": 1024,
                              "output_tokens": 1024, "context_length": 4096}},
        "grid": {"model": ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"],
                 "quantization.weights.bits": [16, 8, 4, 3.5],
                 "wafers": list(range(1, 9)),
                 "workload.context_length": contexts},
        "performance": performance,
    }


def phases() -> None:
    """Where one point's time goes, on a few representative points."""
    from wsesim.run import fewest_wafers
    from wsesim.mapping.plan import make_plan
    from wsesim.memory import build_ledger
    from wsesim.performance import simulate_performance
    from wsesim.run import memory_summary, partition_summary
    from wsesim.specs import deployment_from_mapping
    from wsesim.sweeps import apply_point

    base = sweep_spec(CONTEXTS, True)["base"]
    totals: Counter = Counter()
    samples = [("llama-3.1-8b", 16, 1), ("llama-3.1-70b", 4, 2), ("llama-3.1-70b", 3.5, 8),
               ("llama-3.1-405b", 3.5, 6), ("llama-3.1-405b", 16, 4)]
    print("phase times per point (s): plan, ledger + summaries, performance, "
          "fewest-wafers search")
    for model, bits, wafers in samples:
        dep = deployment_from_mapping(apply_point(base, {
            "model": model, "quantization.weights.bits": bits, "wafers": wafers}), "<bench>")
        t = [time.perf_counter()]
        plan = make_plan(dep, wafers)
        t.append(time.perf_counter())
        ledger = build_ledger(plan)
        memory = memory_summary(ledger)
        partition_summary(ledger)
        t.append(time.perf_counter())
        simulate_performance(plan, memory.fits)
        t.append(time.perf_counter())
        fewest_wafers(dep, {wafers: plan})
        t.append(time.perf_counter())
        parts = [b - a for a, b in zip(t, t[1:])]
        totals.update(dict(zip(("plan", "ledger", "performance", "fewest"), parts)))
        print(f"  {model:<15} {bits:>4}-bit x {wafers}: "
              + "  ".join(f"{p:6.3f}" for p in parts))
    whole = sum(totals.values())
    print("  share: " + ", ".join(f"{k} {v / whole:.0%}" for k, v in totals.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contexts", type=int, default=len(CONTEXTS),
                        help="how many of the context lengths to sweep (6: 576 points)")
    parser.add_argument("--no-performance", action="store_true",
                        help="memory and fit only")
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args()

    if args.phases:
        phases()
    from wsesim.sweeps import run_sweep
    spec = sweep_spec(CONTEXTS[:args.contexts], not args.no_performance)
    with tempfile.TemporaryDirectory() as out:
        outcome = run_sweep(spec, out, workers=args.workers, progress=False, charts=False)
        again = run_sweep(spec, out, workers=args.workers, progress=False, charts=False)
    n = len(outcome.rows)
    print(f"{n} points ({'memory + fit only' if args.no_performance else 'with performance'})"
          f" on {args.workers} workers: {outcome.seconds:.1f} s, "
          f"{n / outcome.seconds:.1f} points/s (target: >= 500 points in < 60 s, "
          f"{500 / 60:.1f} points/s), {outcome.seconds / n * args.workers:.2f} worker-s "
          f"per point, {len(outcome.failed_rows)} failed")
    for reason, count in outcome.reasons.items():
        print(f"  {count} x {reason}")
    print(f"resume of the same sweep: {again.skipped} rows' keys checked, {again.ran} run, "
          f"{again.seconds:.2f} s ({again.seconds / max(again.skipped, 1) * 1e3:.2f} ms "
          "per saved row)")
    stream()


def stream() -> None:
    """The points of a sweep at the bound, read one by one."""
    import tracemalloc

    from wsesim.sweeps import MAX_SWEEP_POINTS, load_sweep
    big = sweep_spec(CONTEXTS, False)
    big["grid"] = {"workload.prompt_tokens": list(range(1, 101)),
                   "workload.output_tokens": list(range(1, MAX_SWEEP_POINTS // 100 + 1))}
    spec = load_sweep(big)
    tracemalloc.start()
    t0 = time.perf_counter()
    count = sum(1 for _ in spec.points())
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"streaming {count:,} points: {seconds:.2f} s, peak {peak / 1e3:.0f} kB of memory")


if __name__ == "__main__":
    main()
