"""How fast the PE-level fidelity runs: simpy events per second against bare simpy in
the same run, and the wall time of a 64 x 64 GEMV and of a 64 x 64 decode layer.

Run: python benchmarks/bench_pe.py [--repeat N]. Prints the figures; asserts nothing
(the targets are in issue 4: at least half of simpy's own event rate, a 64 x 64 GEMV
in under 5 s).

Events are what simpy processes: a train's head reaching a router (one per train per
link), a PE woken by a train it waits for, the end of a PE's local work (a timeout),
a PE's start. Two bare-simpy baselines run the same number of timeouts: one process
in a loop (one event in the queue at a time: simpy's best case) and as many
processes as the grid has PEs, each a loop of timeouts of 1 to 50 cycles (the queue
as deep as the PE-level run's).
"""
from __future__ import annotations

import argparse
import random
import time

import simpy


def bare_loop(n: int) -> float:
    """Seconds simpy takes for ``n`` timeouts of one process in a loop."""
    env = simpy.Environment()

    def loop(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1)
    env.process(loop(env))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def bare_many(n: int, processes: int) -> float:
    """Seconds simpy takes for ``n`` timeouts spread over ``processes`` processes."""
    env = simpy.Environment()
    rnd = random.Random(1)

    def loop(env: simpy.Environment, k: int):
        for _ in range(k):
            yield env.timeout(rnd.randint(1, 50))
    for _ in range(processes):
        env.process(loop(env, max(1, n // processes)))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from wsesim.sim import pe

    kn, plan = pe.kernels_for("wse2", 64, 64, hidden=1024, context=4096)
    att, mlp = plan.wafers[0].stages[1], plan.wafers[0].stages[2]
    cases = {
        "GEMV 4096 x 4096 on 64 x 64": lambda: pe.gemv(kn, 64, 64, 4096, 4096),
        "decode layer, hidden 1024, context 4096, on 64 x 64":
            lambda: pe.layer(kn, att.content, mlp.content, 64, 64, 4096),
    }
    print(f"{'operation':<54} {'events':>9} {'wall s':>7} {'loop s':>7} "
          f"{'ev/s':>9} {'bare 1':>9} {'ratio':>6} {'bare P':>9} {'ratio':>6} "
          f"{'PE/model':>8}")
    for name, run in cases.items():
        best_total = best_sim = float("inf")
        result = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run()
            best_total = min(best_total, time.perf_counter() - t0)
            best_sim = min(best_sim, result.run.sim_s)
        assert result is not None
        n = result.events
        one = min(bare_loop(n) for _ in range(args.repeat))
        many = min(bare_many(n, result.run.rows * result.run.cols)
                   for _ in range(args.repeat))
        rate = n / best_sim
        print(f"{name:<54} {n:>9,} {best_total:>7.3f} {best_sim:>7.3f} {rate:>9,.0f} "
              f"{n / one:>9,.0f} {rate / (n / one):>6.2f} {n / many:>9,.0f} "
              f"{rate / (n / many):>6.2f} {result.ratio:>8.4f}")
    print("wall s: the whole call (programs built, simulated, results gathered), best of "
          f"{args.repeat}; loop s: simpy's event loop alone; ev/s = events / loop s; "
          "bare 1: simpy timeouts/s, one process; bare P: timeouts/s over as many "
          "processes as PEs; ratio: ev/s over that; PE/model: PE-level cycles over the "
          "closed form's.")


if __name__ == "__main__":
    main()
