"""PE programs of the fabric collectives on a line of PEs (a row or a column of a
region, or a segment of one), as the kernels run them, for the PE-level engine.

A plan says, for every position of a line of ``n`` PEs, what it does in each
synchronized phase: nothing (None), or a few actions. Every participant starts a phase
with the kernel's fixed phase cost (``comm_step_cycles``), as the closed forms charge it
once per phase. Actions:

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

from functools import lru_cache

from wsesim.perf.fabric import group_layout

SEND, FWD, ACC, BCAST, RECV, ACCN = range(6)

Plan = tuple  # plan[pos] = tuple of phases; a phase is None or a tuple of actions


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


def _freeze(plan: list[list]) -> Plan:
    return tuple(tuple(None if ph is None else tuple(ph) for ph in row) for row in plan)


@lru_cache(maxsize=1024)
def broadcast_plan(n: int, root: int) -> Plan:
    """One multicast from ``root`` to every other PE of the line."""
    plan = _empty(n, 1)
    if n > 1:
        _broadcast(plan, 0, n, root)
    return _freeze(plan)


@lru_cache(maxsize=1024)
def allreduce_plan(n: int, algorithm: str, groups: int | None = None) -> Plan:
    """Every PE of the line ends with the sum: ``chain``, ``tree`` or ``two-level``
    (``groups`` contiguous groups; the closed form's choice when given None)."""
    if n <= 1:
        return _freeze(_empty(n, 0))
    if algorithm == "chain":
        algorithm, groups = "two-level", 1
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


def _tree(n: int) -> Plan:
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
def reduce_plan(n: int, root: int) -> Plan:
    """Chains from both ends of the line into ``root`` (one phase; the sum ends there)."""
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
