"""How large a grid the PE-level fidelity takes (no simpy import: the deployment
validator uses it)."""
from __future__ import annotations

from wsesim.errors import KeyedError

# Every PE, router and link is simulated: a stage on a 128 x 128 region runs in seconds
# (benchmarks/bench_pe.py); a whole wafer (hundreds of thousands of PEs) would not.
MAX_PES = 128 * 128


def too_large(rows: int, cols: int) -> str | None:
    """Why a rows x cols grid is too large for the PE fidelity, or None."""
    if rows * cols <= MAX_PES:
        return None
    return (f"the PE fidelity simulates every PE and link: {rows} x {cols} = "
            f"{rows * cols:,} PEs is more than its limit of {MAX_PES:,}")


def check_pe_grid(shape: tuple[int, int], source: str) -> None:
    """Raise the deployment's one-line error if ``simulation.fidelity: pe`` is asked
    for a grid of more than ``MAX_PES`` PEs."""
    why = too_large(*shape)
    if why:
        raise KeyedError("simulation.fidelity", f"{why} (the grid of {source}); use "
                         "fidelity: tile, or mapping.grid to simulate a sub-rectangle")
