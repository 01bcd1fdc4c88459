"""How long a run takes: the 405B example, planned, accounted PE by PE, reported.

Run: python benchmarks/bench_run.py [--repeat N]. Prints the figures; asserts nothing
(targets are in the issues, not in unit tests).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "llama-3.1-405b-w3.5-5x-wse3.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from wsesim.report import render_json
    from wsesim.run import simulate
    from wsesim.specs import load_deployment

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        dep = load_deployment(EXAMPLE)
        render_json(simulate(dep))
        times.append(time.perf_counter() - t0)
    print(f"405B x 5 WSE-3, load + simulate + JSON, in process: median "
          f"{statistics.median(times):.3f} s, min {min(times):.3f} s "
          f"over {args.repeat} runs")

    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wsesim", "run", str(EXAMPLE), "--format",
                        "json"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    print(f"405B x 5 WSE-3, `wsesim run --format json` as a command (Python start-up and "
          f"imports included): median {statistics.median(walls):.3f} s")


if __name__ == "__main__":
    main()
