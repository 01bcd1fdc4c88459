"""How long the search for the best plan takes (issue targets on a 2-core machine:
405B on six WSE-3 with `strategy: auto` under 10 s; `wsesim plan` over 4-8 wafers of
405B under 60 s), with the candidates it rated.

Run: python benchmarks/bench_plan.py. Prints the figures; asserts nothing.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from wsesim.mapping.plan import Choice

ROOT = Path(__file__).resolve().parent.parent
AUTO = ROOT / "examples" / "llama-3.1-405b-w3.5-6x-wse3-auto.yaml"


def wall(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "wsesim", *args], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    return time.perf_counter() - t0, out


def main() -> None:
    seconds, out = wall(["run", str(AUTO), "--format", "json"])
    mapping = json.loads(out)["mapping"]
    print(f"wsesim run {AUTO.name}: {seconds:.1f} s wall (target < 10 s); "
          f"{mapping['searched']} candidates rated, {len(mapping['candidates'])} decided "
          f"exactly; chose {Choice.from_row(mapping).describe()}")
    seconds, out = wall(["plan", str(AUTO), "--wafers", "4-8", "--format", "json"])
    rows = json.loads(out)["plans"]
    print(f"wsesim plan --wafers 4-8: {seconds:.1f} s wall (target < 60 s); "
          f"{sum(r['searched'] for r in rows)} candidates rated over {len(rows)} counts")
    for r in rows:
        print(f"  {r['wafers']} wafers: fits {r['fits']}, {Choice.from_row(r).describe()}"
              f", {r['tokens_per_s_per_user']:.1f} tokens/s per user")


if __name__ == "__main__":
    main()
