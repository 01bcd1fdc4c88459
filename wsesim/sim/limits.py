"""How large a grid the PE-level fidelity takes (no simpy import: the deployment
validator uses it)."""
from __future__ import annotations

from wsesim.errors import KeyedError

# Every PE, router and link is simulated: one operation on 120 x 120 PEs (the MeshGEMV
# cases of benchmarks/bench_pe.py, 14,400 PEs) runs in under a second on the 2-core
# machine; a whole wafer (hundreds of thousands of PEs) would not.
MAX_PES = 128 * 128
# A deployment simulated at the PE level runs every stage's region several times (decode
# at a few contexts, MeshGEMM prefill over every PE of a shared region): measured on the
# 2-core machine, a 2-layer sequential model with a 128-token prompt takes 4 s and 95 MB on
# 64 x 64 PEs, 56 s and 1.2 GB on 96 x 96, 2 min and 2.1 GB on 128 x 128. Its regions are
# held to 64 x 64; single operations (fabric-check, kernel cases) to MAX_PES.
MAX_REGION_PES = 64 * 64


def too_large(rows: int, cols: int) -> str | None:
    """Why a rows x cols grid is too large for the PE fidelity, or None."""
    if rows * cols <= MAX_PES:
        return None
    return (f"the PE fidelity simulates every PE and link: {rows} x {cols} = "
            f"{rows * cols:,} PEs is more than its limit of {MAX_PES:,}")


def check_pe_region(rows: int, cols: int, name: str) -> None:
    """Raise a one-line error if a deployment at ``fidelity: pe`` has a region of more
    than ``MAX_REGION_PES`` PEs (found once the plan is laid out)."""
    if rows * cols > MAX_REGION_PES:
        raise KeyedError("simulation.fidelity", f"the PE fidelity simulates every region "
                         f"of a deployment several times: {name} has {rows} x {cols} = "
                         f"{rows * cols:,} PEs, more than its limit of {MAX_REGION_PES:,} "
                         "per region; use fidelity: tile, a smaller mapping.grid, or more "
                         "regions (strategy: pipeline or grouped)")


def check_pe_grid(shape: tuple[int, int], source: str) -> None:
    """Raise the deployment's one-line error if ``simulation.fidelity: pe`` is asked
    for a grid of more than ``MAX_PES`` PEs."""
    why = too_large(*shape)
    if why:
        raise KeyedError("simulation.fidelity", f"{why} (the grid of {source}); use "
                         "fidelity: tile, or mapping.grid to simulate a sub-rectangle")
