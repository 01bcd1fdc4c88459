"""The largest inputs the bounds accept (``wsesim/specs/bounds.py``), and how long and
how much memory each takes; and how fast the named runaways are refused.

Run: python benchmarks/bench_bounds.py [--quick]. Each case runs ``wsesim`` in a child
process and prints its wall time and peak resident memory (``/usr/bin/time``-style,
from ``resource``). Prints the figures; asserts nothing. ``--quick`` skips the cases
that take tens of seconds.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WSE3 = (ROOT / "hardware_profiles" / "wse3.yaml").read_text()


def deployment(model: str, workload: str, wafers: str = "auto", strategy: str = "pipeline",
               hardware: str = "wse3") -> str:
    return (f"name: bench\nmodel: {model}\nhardware: {hardware}\nwafers: {wafers}\n"
            f"quantization: {{weights: w3.5-g128}}\nworkload: {workload}\n"
            f"mapping: {{strategy: {strategy}}}\n")


def bomb() -> str:
    text = 'x: &x ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "x"
    for i in range(9):
        text += f"l{i}: &l{i} [{', '.join([f'*{prev}'] * 9)}]\n"
        prev = f"l{i}"
    return text + f"name: *{prev}\nmodel: llama-3.1-8b\nhardware: wse3\n"


ACCEPTED = {
    "8B, 2^21 token steps (batch 64 x 32,768 outputs)": deployment(
        "llama-3.1-8b", "{batch_size: 64, prompt_tokens: 16, output_tokens: 32768}", "1"),
    "405B on 6 WSE-3, 2^30 element visits (batch 127 x 16,000 outputs)": deployment(
        "llama-3.1-405b", "{batch_size: 127, prompt_tokens: 16, output_tokens: 16000}", "6"),
    "4,096 layers, one wafer (batch 100 x 400 outputs)": deployment(
        "{hidden_size: 256, intermediate_size: 512, num_hidden_layers: 4096, "
        "num_attention_heads: 4, vocab_size: 1000}",
        "{batch_size: 100, prompt_tokens: 16, output_tokens: 400}", "1"),
    "8B, a 2^20-token prompt, batch 2": deployment(
        "llama-3.1-8b", "{batch_size: 2, prompt_tokens: 1048576, output_tokens: 2}"),
    "8B, a 2^24-token context": deployment(
        "llama-3.1-8b", "{batch_size: 1, prompt_tokens: 1024, output_tokens: 1024, "
        "context_length: 16777216}"),
}
QUICK = {"8B, a 2^20-token prompt, batch 2", "8B, a 2^24-token context"}

REFUSED = {
    "output_tokens: 3000000": deployment(
        "llama-3.1-8b", "{batch_size: 1, prompt_tokens: 16, output_tokens: 3000000}"),
    "batch_size: 10**9": deployment(
        "llama-3.1-8b", "{batch_size: 1000000000, prompt_tokens: 16, output_tokens: 16}"),
    "prompt_tokens: 10**8": deployment(
        "llama-3.1-8b", "{batch_size: 1, prompt_tokens: 100000000, output_tokens: 16}"),
    "context_length: 2**63 - 1": deployment(
        "llama-3.1-8b", "{batch_size: 1, prompt_tokens: 16, output_tokens: 16, "
        "context_length: 9223372036854775807}"),
    "a 20000 x 20000 profile grid": deployment(
        "llama-3.1-8b", "{batch_size: 1, prompt_tokens: 16, output_tokens: 16}",
        hardware="big.yaml"),
    "a YAML alias bomb": bomb(),
}


# a fresh parent per case, so the peak resident memory it reports is that case's own
_WRAPPER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"
            "; sys.exit(p.returncode)")


def timed(args: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak resident MB, exit code and first stderr line of ``args``."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    peak_kb = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return wall, peak_kb / 1024, proc.returncode, lines[0] if len(lines) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    wsesim = [sys.executable, "-m", "wsesim"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "big.yaml").write_text(WSE3.replace("grid_rows: 1170", "grid_rows: 20000")
                                         .replace("grid_cols: 755", "grid_cols: 20000"))
        print("refused (one line, exit 2):")
        for name, text in REFUSED.items():
            path = folder / "refused.yaml"
            path.write_text(text)
            wall, _, code, err = timed([*wsesim, "run", str(path)])
            print(f"  {name:<32} {wall:6.2f} s  exit {code}  {err.split(': ', 2)[-1][:80]}")
        wall, _, code, err = timed([*wsesim, "fabric-check", "model", "--grid", "8", "8",
                                    "--elements", "256", "--layers", "100000"])
        print(f"  {'fabric-check --layers 100000':<32} {wall:6.2f} s  exit {code}  "
              f"{err.split(': ', 2)[-1][:80]}")
        print("largest accepted (wall time, peak memory of the process):")
        cases = [(n, t) for n, t in ACCEPTED.items() if not args.quick or n in QUICK]
        for name, text in cases:
            path = folder / "accepted.yaml"
            path.write_text(text)
            wall, peak, code, _ = timed([*wsesim, "run", str(path), "--format", "json"])
            print(f"  {name:<66} {wall:6.1f} s  {peak:6.0f} MB  exit {code}")


if __name__ == "__main__":
    main()
