"""Print the README's answer to the proposal's question: for LLaMA-3.1-405B and 70B at 3.5
bits on WSE-3, the best plan that fits on each wafer count from the fewest up, beside the
pipeline and sequential mappings on the same count.

    python docs/proposal_table.py        # a markdown table (a few minutes on 2 cores)
"""
from __future__ import annotations

from pathlib import Path

from wsesim.planner import fewest_wafers_any, search
from wsesim.run import simulate
from wsesim.specs import load_deployment

ROOT = Path(__file__).resolve().parent.parent
CASES = (("examples/llama-3.1-405b-w3.5-6x-wse3-auto.yaml", 3),
         ("examples/llama-3.1-70b-w3.5-2x-wse3-auto.yaml", 3))


def _fixed(dep, wafers: int, strategy: str) -> str:
    d = dep.model_copy(update={"wafers": wafers, "mapping": dep.mapping.model_copy(
        update={"strategy": strategy, "min_tokens_per_s_per_user": None})})
    r = simulate(d, find_min_wafers=False)
    rate = f"{r.performance['tokens_per_s_per_user']:,.1f}"
    return rate if r.memory.fits else f"({rate}: does not fit, {r.memory.max_pe_bytes:,} B)"


def rows(path: str, counts: int) -> list[str]:
    dep = load_deployment(ROOT / path)
    fewest = fewest_wafers_any(dep).wafers
    out = []
    for wafers in range(fewest, fewest + counts):
        best = search(dep, wafers).best
        out.append(f"| {dep.model.name} | {wafers} | {best.choice.describe()} | "
                   f"{best.rates()[0]:,.1f} | {best.max_pe_bytes:,} | "
                   f"{_fixed(dep, wafers, 'pipeline')} | {_fixed(dep, wafers, 'sequential')} |")
    return out


def main() -> int:
    print("| model (3.5 bits, group-128 fp16 scales and zeros) | WSE-3 | best plan that fits "
          "| tokens/s per user | fullest PE B | pipeline | sequential |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for path, counts in CASES:
        print("\n".join(rows(path, counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
