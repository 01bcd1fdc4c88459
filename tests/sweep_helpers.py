"""Helpers for the sweep tests that run real sweeps in subprocesses: a sweep whose
points are slow (the real CLI and worker processes, each point sleeping first), and the
processes it starts, read from /proc."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import tiny_hardware, tiny_model

ROOT = Path(__file__).resolve().parent.parent


def toy_base(**over):
    """The base deployment of the sweep tests: the tiny model on an 8 x 8 grid."""
    b = {"name": "toy", "model": tiny_model(), "hardware": tiny_hardware(8, 8),
         "wafers": 1, "quantization": {"weights": "int4-g128", "embeddings": "bf16"},
         "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8},
         "mapping": {"strategy": "pipeline"}}
    b.update(over)
    return b

# a sweep whose points sleep first (SLOW_S seconds): the real CLI, real worker processes
SLOW_SWEEP = """\
import os, sys, time
from wsesim.sweeps import executors as home   # where the executors look it up
real = home.run_point

def slow_point(*args, **kwargs):
    time.sleep(float(os.environ["SLOW_S"]))
    return real(*args, **kwargs)

home.run_point = slow_point

if __name__ == "__main__":   # a fork server or spawn imports this file again
    if os.environ.get("THREAD"):   # another thread: workers come from a fork server
        import threading
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    from wsesim.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid``: its children, theirs, and so on."""
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def start_slow(tmp_path: Path, slow_s: float, *args: str,
               thread: bool = False) -> subprocess.Popen:
    """The slow sweep, started (``thread``: with a second thread, so that its workers
    are forked by a fork server, not by the sweep itself)."""
    script = tmp_path / "slow_sweep.py"
    script.write_text(SLOW_SWEEP)
    env = {**os.environ, "SLOW_S": str(slow_s), "THREAD": "1" if thread else ""}
    return subprocess.Popen([sys.executable, str(script), "sweep", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows_in(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
