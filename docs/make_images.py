"""Regenerate the README's images with wsesim's own code:

- docs/images/heatmap-405b-placement.png: where every layer of LLaMA-3.1-405B lives on
  five WSE-3 wafers (examples/llama-3.1-405b-w3.5-5x-wse3.yaml), side by side;
- docs/images/heatmap-70b-sram-wafer0.png: SRAM used per PE of LLaMA-3.1-70B at 3.5
  bits on one WSE-3 (examples/llama-3.1-70b-w3.5-1x-wse3.yaml), overflowing PEs in red;
- docs/images/sweep-tokens-per-s-vs-wafers.png and sweep-bytes-per-wafer-vs-wafers.png:
  the charts of examples/sweep-wafers-bits.yaml (96 points; about a minute on 2 cores).

Run: python docs/make_images.py [--workers N] [--sweep-out DIR] (a --sweep-out that
already holds the sweep's results is reused, not recomputed).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"


def main() -> None:
    from wsesim import plots
    from wsesim.run import simulate
    from wsesim.specs import load_deployment
    from wsesim.sweeps import default_workers, run_sweep

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--sweep-out", type=Path, default=None)
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)

    r405 = simulate(load_deployment(ROOT / "examples" / "llama-3.1-405b-w3.5-5x-wse3.yaml"))
    written = [plots.save(plots.placement_figure(r405), IMAGES / "heatmap-405b-placement.png")]
    r70 = simulate(load_deployment(ROOT / "examples" / "llama-3.1-70b-w3.5-1x-wse3.yaml"))
    written.append(plots.save(plots.sram_figure(r70, 0),
                              IMAGES / "heatmap-70b-sram-wafer0.png"))

    with tempfile.TemporaryDirectory() as tmp:
        out = args.sweep_out or Path(tmp)
        outcome = run_sweep(ROOT / "examples" / "sweep-wafers-bits.yaml", out,
                            workers=args.workers, progress=None)
        print(outcome.summary())
        for chart in outcome.charts:
            target = IMAGES / f"sweep-{chart.name}"
            shutil.copyfile(chart, target)
            written.append(target)
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
