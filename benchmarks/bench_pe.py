"""How fast the PE-level fidelity runs: simpy events per second against bare simpy in
the same run, and the wall time of a 64 x 64 GEMV and of a 64 x 64 decode layer.

Run: python benchmarks/bench_pe.py [--repeat N]. Prints the figures; asserts nothing
(the targets are in issue 4: at least half of simpy's own event rate, a 64 x 64 GEMV
in under 5 s).

Events are what simpy processes: a train's head reaching a router (one per train per
link), a PE woken by a train it waits for, a PE's start (local work and sends need no
event: a PE's clock runs ahead). Three baselines run the same number of events:
- ``bare 1``: one process in a loop of timeouts (one event in the queue at a time:
  simpy's best case; the issue's baseline);
- ``bare P``: as many processes as the grid has PEs, each a loop of timeouts of 1 to
  50 cycles (drawn before the clock starts), so simpy's queue is about as deep as in
  the PE-level run;
- ``skeleton``: the PE level's design stripped to its bones, on the same grid: trains
  reserve each link as their head reaches it, a PE woken by a train adds and forwards
  it (a chain along every row); no tags, phases, attribution or accounting. It is the
  most events per second an engine that models links and PEs this way can reach in
  Python on simpy.
"""
from __future__ import annotations

import argparse
import random
import time
from heapq import heappush

import simpy
from simpy.events import NORMAL, Event


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

    def loop(env: simpy.Environment, delays: list[int]):
        for d in delays:
            yield env.timeout(d)
    for _ in range(processes):
        env.process(loop(env, [rnd.randint(1, 50) for _ in range(max(1, n // processes))]))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


class _SkeletonTrain(Event):
    """A train of the skeleton engine: its head reserves the link east of ``node``."""

    def __init__(self, env: simpy.Environment, sk: dict, node: int) -> None:
        self.env, self._ok, self._value, self.sk, self.node = env, True, None, sk, node
        self._cbs = self.callbacks = [self.arrive]

    def arrive(self, _ev: Event) -> None:
        sk, now, node = self.sk, self.env._now, self.node
        start = max(sk["free"][node], now)
        sk["free"][node] = start + sk["w"]
        pe = sk["pes"][node + 1]
        pe._value = start + 1
        pe.callbacks = pe._cbs
        heappush(sk["queue"], (start + 1, NORMAL, next(sk["eid"]), pe))


class _SkeletonPE(Event):
    """A PE of the skeleton engine: woken by a train, adds it in, sends the sum east."""

    def __init__(self, env: simpy.Environment, sk: dict, node: int) -> None:
        self.env, self._ok, self._value, self.sk, self.node = env, True, None, sk, node
        self.t = 0.0
        self._cbs = [self.woken]

    def woken(self, _ev: Event) -> None:
        sk = self.sk
        self.t = max(self.t, self._value) + sk["w"]
        if (self.node + 1) % sk["cols"]:
            heappush(sk["queue"], (self.t + 2, NORMAL, next(sk["eid"]),
                                   _SkeletonTrain(self.env, sk, self.node)))


def skeleton(n: int, rows: int, cols: int) -> tuple[int, float]:
    """(events, seconds) of the skeleton engine running chains along every row of a
    ``rows x cols`` grid, as many as make about ``n`` events."""
    env = simpy.Environment()
    sk = {"queue": env._queue, "eid": env._eid, "w": 16, "cols": cols,
          "free": [0.0] * (rows * cols)}
    sk["pes"] = [_SkeletonPE(env, sk, i) for i in range(rows * cols)]
    chains = max(1, round(n / (rows * (2 * cols - 1))))
    for r in range(rows):
        for k in range(chains):
            heappush(env._queue, (k * 40.0 * cols, NORMAL, next(env._eid),
                                  _SkeletonTrain(env, sk, r * cols)))
    t0 = time.perf_counter()
    env.run()
    return next(env._eid), time.perf_counter() - t0


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
          f"{'ev/s':>9} {'bare 1':>9} {'vs b1':>6} {'bare P':>9} {'vs bP':>6} "
          f"{'skeleton':>9} {'sk/b1':>6} {'PE/model':>8}")
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
        rows, cols = result.run.rows, result.run.cols
        one = n / min(bare_loop(n) for _ in range(args.repeat))
        many = n / min(bare_many(n, rows * cols) for _ in range(args.repeat))
        bones = max(e / s for e, s in (skeleton(n, rows, cols) for _ in range(args.repeat)))
        rate = n / best_sim
        print(f"{name:<54} {n:>9,} {best_total:>7.3f} {best_sim:>7.3f} {rate:>9,.0f} "
              f"{one:>9,.0f} {rate / one:>6.2f} {many:>9,.0f} {rate / many:>6.2f} "
              f"{bones:>9,.0f} {bones / one:>6.2f} {result.ratio:>8.4f}")
    print("wall s: the whole call (programs built, simulated, results gathered), best of "
          f"{args.repeat}; loop s: simpy's event loop alone; ev/s = events / loop s; "
          "bare 1: simpy timeouts/s, one process (the issue's baseline); bare P: "
          "timeouts/s over as many processes as PEs; skeleton: events/s of the stripped "
          "engine; vs b1, vs bP: ev/s over bare 1, over bare P; sk/b1: the skeleton's "
          "rate over bare 1 (the ceiling of this design); PE/model: PE-level cycles over "
          "the closed form's.")


if __name__ == "__main__":
    main()
