"""The operations a PE program is made of, for the PE-level engine
(:mod:`wsesim.sim.fabric_net`): each PE runs a flat list of these tuples in order.

Every fixed cost a kernel pays is an op the engine charges from the hardware profile's
own constant, never a number the program computed: a vector instruction
(``vector_op_cycles`` to issue, then max(``vector_latency_cycles``, n / MACs per cycle)),
a fabric call (``fabric_call_cycles``), a call of the SDK's collectives library
(``library_call_cycles``), a switch of a region's reduction routes to the other axis
(``route_switch_cycles``), a MeshGEMM step hand-off (``mesh_step_cycles``). Hops, ramps,
turns, receive-add-forward stages and wavelets are charged by the engine as trains move.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

EAST, WEST, SOUTH, NORTH = 0, 1, 2, 3
DIRECTIONS = ("east", "west", "south", "north")

# op codes
WORK, FIXED, SEND, RECV, ACC, FWD, ACCN, SENDA, RECVA, INSTR = range(10)

# what a FIXED op charges (index into the engine's table of fixed costs)
POST, CALL, LIBRARY_CALL, ROUTE_SWITCH, MESH_STEP = range(5)


def op_work(compute: float = 0.0, dequant: float = 0.0, overhead: float = 0.0,
            sram: int = 0) -> tuple:
    """Local work priced elsewhere (cycles by cause: an elementwise function, the
    dequantization of a weight block); ``sram``: bytes the PE now holds more."""
    return (WORK, float(compute), float(dequant), float(overhead), int(sram))


def op_instr(count: int, length: float, sram: int = 0) -> tuple:
    """``count`` dependent vector instructions over ``length`` elements each (a GEMV
    block: one multiply-accumulate per input over the outputs; a MeshGEMM tile: one per
    (input, output) pair over the tile's rows)."""
    return (INSTR, int(count), float(length), int(sram))


def op_fixed(kind: int, receives: Sequence[Any] = ()) -> tuple:
    """A fixed cost of kind ``kind`` (``POST``: none, ``CALL``, ``LIBRARY_CALL``,
    ``ROUTE_SWITCH``, ``MESH_STEP``); the PE posts the trains tagged ``receives`` as it
    starts it, so trains sent to it for them may enter the fabric (backpressure: a train
    whose receiver has not posted it waits at its sender, taking no link)."""
    return (FIXED, tuple(receives), int(kind))


def op_post(receives: Sequence[Any] = ()) -> tuple:
    """Start a phase of a fabric operation already called (no fixed cost), in which the
    PE will receive the trains tagged ``receives``."""
    return op_fixed(POST, receives)


def op_call(receives: Sequence[Any] = (), library: bool = False) -> tuple:
    """Call a fabric operation (its fixed cost: ``fabric_call_cycles``, or
    ``library_call_cycles`` for the SDK's collectives library), posting ``receives``."""
    return op_fixed(LIBRARY_CALL if library else CALL, receives)


def op_send(branches: tuple, w: int) -> tuple:
    """Send a train of ``w`` wavelets: ``branches`` are (legs, along, tag) triples."""
    return (SEND, tuple(branches), int(w))


def op_recv(tag: Any) -> tuple:
    """Receive the train tagged ``tag`` whole (a copy)."""
    return (RECV, tag)


def op_acc(tag: Any) -> tuple:
    """Receive the train tagged ``tag`` whole and add it in (``add`` after its head)."""
    return (ACC, tag)


def op_acc_any(tags: Sequence[Any]) -> tuple:
    """Add in the trains tagged ``tags`` in the order they arrive (a root that two
    chains run into: whichever is there first is added first)."""
    return (ACCN, tuple(tags))


def op_send_async(branches: tuple, w: int) -> tuple:
    """Start a train of ``w`` wavelets and go on (an asynchronous DSD move: the
    up-ramp streams it while the PE computes; two sends share the up-ramp)."""
    return (SENDA, tuple(branches), int(w))


def op_recv_async(tag: Any) -> tuple:
    """Wait until the train tagged ``tag`` has landed in memory (an asynchronous DSD
    move: it took the down-ramp, one wavelet per cycle, while the PE computed)."""
    return (RECVA, tag)


def op_fwd(tag: Any, branches: tuple, w: int) -> tuple:
    """Receive-add-forward: as the train tagged ``tag`` streams in, add and send the sum
    on (``add`` cycles after its head)."""
    return (FWD, tag, tuple(branches), int(w))


class _Grid(Protocol):
    cols: int


def route_xy(grid: _Grid, src: int, dst: int) -> tuple:
    """Dimension-ordered legs from PE ``src`` to PE ``dst`` of a grid (row-major
    indices): along the row (X) first, then along the column (Y)."""
    sr, sc = divmod(src, grid.cols)
    dr, dc = divmod(dst, grid.cols)
    legs = []
    if dc != sc:
        legs.append((EAST if dc > sc else WEST, abs(dc - sc)))
    if dr != sr:
        legs.append((SOUTH if dr > sr else NORTH, abs(dr - sr)))
    return tuple(legs)
