"""PE programs of the fabric collectives on a line of PEs (a row or a column of a
region, or a segment of one), as the kernels run them, for the PE-level engine.

A plan (:class:`LinePlan`) says, for every position of a line of ``n`` PEs, what it
does in each phase of the operation: nothing (None), or a few actions. A fabric
operation a kernel calls pays its fixed cost once (``fabric_call_cycles``), not once per
phase: every PE pays it as it starts its first phase of the call, so the phases inside
it pay nothing fixed. A plan names the phases that start a call (``calls``); the SDK's
collectives library (``library``) pays ``library_call_cycles`` per call instead and
reduces in fp32 (``element_bytes``: at least 4 bytes per element). Actions:

- ``(SEND, offset)``: send its own vector to the PE ``offset`` positions away;
- ``(FWD, side, offset)``: receive-add-forward: as the train from ``side`` streams in,
  add its own vector and forward the sum ``offset`` positions on (a chain stage);
- ``(ACC, side)``: receive the train from ``side`` whole and add it (a root);
- ``(ACCN, sides)``: the same for trains from several sides, in the order they come
  (a root two chains run into);
- ``(BCAST, back, fwd)``: multicast its vector ``back`` positions one way and ``fwd``
  the other (the router replicates; every PE passed gets a copy);
- ``(RECV, side)``: receive a copy.

``side`` 0 is a train from lower positions, 1 from higher ones. The algorithms are
those the closed forms of ``wsesim.perf.fabric`` price (chain, tree, two-level), written
here independently from the message pattern, not from the formulas.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from wsesim.perf.fabric import LIBRARY_ELEMENT_BYTES, group_layout

SEND, FWD, ACC, BCAST, RECV, ACCN = range(6)


@dataclass(frozen=True)
class LinePlan:
    """``phases[pos]``: the phases of position ``pos``, each None or a tuple of
    actions; ``calls``: the phases that start a fabric call (the first always does);
    ``library``: the calls are the SDK collectives library's, in fp32."""

    phases: tuple
    calls: tuple[int, ...] = (0,)
    library: bool = False

    @property
    def element_bytes(self) -> float:
        """The least bytes per element on the fabric (the library reduces fp32)."""
        return LIBRARY_ELEMENT_BYTES if self.library else 0.0


def _empty(n: int, phases: int) -> list[list]:
    return [[None] * phases for _ in range(n)]


def _add(plan: list[list], pos: int, phase: int, action: tuple) -> None:
    if plan[pos][phase] is None:
        plan[pos][phase] = []
    plan[pos][phase].append(action)


def _chains_into(plan: list[list], phase: int, members: list[int], root: int) -> None:
    """Pipelined chains from both ends of ``members`` (positions in order, consecutive
    or not) into ``members[root]``: the root adds the two trains in the order they
    arrive (it takes one wavelet per cycle: the second waits for the first)."""
    left, right = members[:root], members[root + 1:]
    for side, run in ((0, left), (1, right[::-1])):
        for j, pos in enumerate(run):
            nxt = run[j + 1] if j + 1 < len(run) else members[root]
            _add(plan, pos, phase, (SEND, nxt - pos) if j == 0 else (FWD, side, nxt - pos))
    sides = tuple(side for side, run in ((0, left), (1, right)) if run)
    if len(sides) == 1:
        _add(plan, members[root], phase, (ACC, sides[0]))
    elif sides:     # both chains: added in as they arrive
        _add(plan, members[root], phase, (ACCN, sides))


def _broadcast(plan: list[list], phase: int, n: int, root: int) -> None:
    _add(plan, root, phase, (BCAST, root, n - 1 - root))
    for pos in range(n):
        if pos != root:
            _add(plan, pos, phase, (RECV, 0 if pos > root else 1))


def _freeze(plan: list[list], calls: tuple[int, ...] = (0,), library: bool = False
            ) -> LinePlan:
    return LinePlan(tuple(tuple(None if ph is None else tuple(ph) for ph in row)
                          for row in plan), calls, library)


@lru_cache(maxsize=1024)
def broadcast_plan(n: int, root: int) -> LinePlan:
    """One multicast from ``root`` to every other PE of the line."""
    plan = _empty(n, 1)
    if n > 1:
        _broadcast(plan, 0, n, root)
    return _freeze(plan)


@lru_cache(maxsize=1024)
def allreduce_plan(n: int, algorithm: str, groups: int | None = None) -> LinePlan:
    """Every PE of the line ends with the sum: ``chain`` (the SDK collectives library:
    a reduce call, then a broadcast call), ``tree`` or ``two-level`` (``groups``
    contiguous groups; required), each of these one fabric call."""
    if n <= 1:
        return _freeze(_empty(n, 0))
    if algorithm == "chain":
        return _library_chain(n)
    if algorithm == "tree":
        return _tree(n)
    if algorithm != "two-level" or groups is None:
        raise ValueError(f"allreduce_plan: algorithm {algorithm!r}, groups {groups!r}")
    size, count, roots = group_layout(n, groups)  # the closed form's groups
    members = [list(range(g * size, min(n, (g + 1) * size))) for g in range(count)]
    mid = (len(roots) - 1) // 2
    plan = _empty(n, 3)
    for m in members:
        _chains_into(plan, 0, m, (len(m) - 1) // 2)
    if len(roots) > 1:
        _chains_into(plan, 1, roots, mid)
    _broadcast(plan, 2, n, roots[mid])
    return _freeze(plan)


def _library_chain(n: int) -> LinePlan:
    """The SDK collectives library's allreduce as its GEMV examples call it: a reduce
    (one pipelined chain from the first PE to the last: n - 1 receive-add-forward
    stages one hop apart), then a broadcast (the last PE multicasts the sum back over
    the whole line); two library calls."""
    plan = _empty(n, 2)
    _chains_into(plan, 0, list(range(n)), n - 1)
    _broadcast(plan, 1, n, n - 1)
    return _freeze(plan, calls=(0, 1), library=True)


def _tree(n: int) -> LinePlan:
    """Each half reduces by a binomial tree into its PE next to the middle (level l:
    partners 2^l apart), the right half's root sends to the left half's, which then
    multicasts the sum to the whole line."""
    m = (n - 1) // 2
    halves = ([m - p for p in range(m + 1)],            # left half, by distance to m
              [m + 1 + p for p in range(n - 1 - m)])    # right half, by distance to m+1
    levels = m.bit_length()                              # 2**levels >= m + 1
    plan = _empty(n, levels + 2)
    for level in range(levels):
        step = 2 ** level
        for half in halves:
            for p in range(step, len(half), 2 * step):
                src, dst = half[p], half[p - step]
                _add(plan, src, level, (SEND, dst - src))
                _add(plan, dst, level, (ACC, 0 if src < dst else 1))
    if n - 1 - m > 0:
        _add(plan, m + 1, levels, (SEND, -1))
        _add(plan, m, levels, (ACC, 1))
    _broadcast(plan, levels + 1, n, m)
    return _freeze(plan)


@lru_cache(maxsize=4096)
def reduce_plan(n: int, root: int) -> LinePlan:
    """Chains from both ends of the line into ``root`` (one phase, one fabric call; the
    sum ends there)."""
    plan = _empty(n, 1)
    if n > 1:
        _chains_into(plan, 0, list(range(n)), root)
    return _freeze(plan)


@lru_cache(maxsize=1024)
def ring_next(n: int) -> tuple[int, ...]:
    """The interleaved ring WaferLLM's MeshGEMM shifts tiles around so no hop is longer
    than two: 0 -> 2 -> 4 -> ... -> the last even -> the last odd -> ... -> 3 -> 1 -> 0.
    ``ring_next(n)[p]`` is the position after ``p``."""
    order = list(range(0, n, 2)) + list(range(n - 1 if n % 2 == 0 else n - 2, 0, -2))
    nxt = [0] * n
    for i, p in enumerate(order):
        nxt[p] = order[(i + 1) % n]
    return tuple(nxt)
