"""How long a heatmap of one full WSE-3 wafer (1170 x 755 = 883,350 PEs) takes: the
placement and the SRAM heatmap of the 405B example's first wafer, drawn and written as
PNG, and all five wafers side by side. Target (issue 5): under 3 s per wafer image.

Run: python benchmarks/bench_plots.py [--repeat N] [--format png|svg]. Prints the
figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "llama-3.1-405b-w3.5-5x-wse3.yaml"


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", choices=("png", "svg"), default="png")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from wsesim import plots
    from wsesim.run import simulate
    from wsesim.specs import load_deployment
    result = simulate(load_deployment(EXAMPLE), with_performance=False)
    rows, cols = result.hardware.grid
    print(f"405B x 5 WSE-3 simulated (not timed below) in {time.perf_counter() - t0:.2f} s; "
          f"grid {rows} x {cols} = {rows * cols:,} PEs per wafer")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("placement", plots.placement_figure),
                           ("sram", plots.sram_figure)):
            path = Path(tmp) / f"{kind}.{args.format}"
            times = timed(lambda: plots.save(make(result, 0), path), args.repeat)
            print(f"{kind:<9} heatmap, one full wafer, drawn + written ({args.format}): "
                  f"median {statistics.median(times):.3f} s, max {max(times):.3f} s "
                  f"(target < 3 s)")
        for kind, make in (("placement", plots.placement_figure),
                           ("sram", plots.sram_figure)):
            path = Path(tmp) / f"all-{kind}.{args.format}"
            times = timed(lambda: plots.save(make(result), path), max(1, args.repeat // 2))
            print(f"{kind:<9} heatmap, 5 wafers side by side: median "
                  f"{statistics.median(times):.3f} s")
        t0 = time.perf_counter()
        files = plots.write_plots(result, tmp, args.format, layout="both")
        print(f"write_plots(layout='both'): {len(files)} files in "
              f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
