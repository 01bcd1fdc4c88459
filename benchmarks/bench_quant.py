"""How fast block sizes are computed: packed_bytes over 2,000,000 blocks at once (the
ledger's vectorized path; a per-block Python loop would take minutes).

Run: python benchmarks/bench_quant.py [--repeat N]. Prints the figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from wsesim.quant import packed_bytes, preset

    rng = np.random.default_rng(1)
    blocks = 2_000_000
    n = rng.integers(0, 300, size=blocks)
    k = rng.integers(0, 300, size=blocks)
    for name in ("fp16", "int4-g128", "w3.5-g128"):
        fmt = preset(name)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            packed_bytes(fmt, n, k)
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(f"packed_bytes, {name:<10} {blocks:,} blocks: best {best:.3f} s "
              f"({blocks / best / 1e6:.1f} M blocks/s)")


if __name__ == "__main__":
    main()
