"""``wsesim fabric-check``: one operation at both fidelities, the PE-level simulation
(every PE, router and link) beside the closed form the tile fidelity uses, and their
ratio.

    wsesim fabric-check allreduce --grid 32 32 --elements 4096 --algorithm two-level
    wsesim fabric-check layer --grid 32 32 --elements 256 --context 512 --format json

Operations: ``broadcast`` (every row multicasts N values from its middle PE),
``allreduce`` (every row allreduces N values), ``gemv`` (an N x N matrix times a
vector: input multicast along rows, local products, partial sums allreduced along
columns), ``transfer`` (N activations from the west half of the grid to the east
half, row by row, then multicast), ``attention`` and ``layer`` (a LLaMA-shaped decode
layer of hidden size N at ``--context`` tokens: its attention, or attention and MLP),
``model`` (a ``--layers``-layer LLaMA-shaped model of hidden size N, one decode step
through every stage, as ``--strategy`` maps it).
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from wsesim import strict_json
from wsesim.errors import SpecError, shown
from wsesim.specs.bounds import (
    MAX_FABRIC_CHECK_PE_LAYERS,
    MAX_GRID_SIDE,
    MAX_GROUPS,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_PROMPT_TOKENS,
    MAX_WIDTH,
)

OPS = ("broadcast", "allreduce", "gemv", "attention", "transfer", "layer", "model")
STAGE_OPS = ("attention", "layer", "model")   # operations on a model's stages
SOURCE = "fabric-check"
DEFAULT_HARDWARE = "wse3"   # the profile the examples and the rest of wsesim use


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``fabric-check`` subcommand to the ``wsesim`` parser."""
    p = sub.add_parser("fabric-check", help="one operation at PE level against its "
                       "closed form (cycles and ratio)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("op", help=f"one of {', '.join(OPS)}")
    p.add_argument("--grid", nargs=2, metavar=("ROWS", "COLS"), required=True,
                   help="the PE grid (rows and columns)")
    p.add_argument("--elements", metavar="N", required=True,
                   help="vector length (broadcast, allreduce, transfer), matrix size "
                        "(gemv) or hidden size (attention, layer, model)")
    p.add_argument("--algorithm", default="auto",
                   help="allreduce: auto, chain, tree or two-level (default auto: the "
                        "fastest by the closed form)")
    p.add_argument("--groups", metavar="G", help="two-level allreduce: group count")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"wse2, wse3 or a profile path (default {DEFAULT_HARDWARE}, as "
                        "everywhere else)")
    p.add_argument("--context", metavar="T", default="256",
                   help="attention, layer, model: context length in tokens")
    p.add_argument("--layers", metavar="L", default="4", help="model: layers")
    p.add_argument("--strategy", default="sequential",
                   help="model: sequential or pipeline")
    p.add_argument("--format", default="text", help="text or json")
    p.set_defaults(func=main)
    return p


MIN_SHOWN_SHARE = 0.005   # causes under 0.5% of the cycles are left out of the text
# the stage operations build a LLaMA-shaped model with heads of 64: its head count (and
# its MLP, 8/3 as wide) stay within the specs' bounds up to this hidden size
MAX_STAGE_HIDDEN = 64 * MAX_HEADS


def _int(value: Any, key: str, low: int = 1, high: int = MAX_WIDTH) -> int:
    """An integer option in ``[low, high]`` (the bounds of ``wsesim.specs.bounds``)."""
    try:
        n = int(str(value))
    except ValueError:
        raise SpecError(SOURCE, key, f"expected an integer, got {shown(value)}") from None
    if not low <= n <= high:
        raise SpecError(SOURCE, key, f"must be between {low} and {high:,} (a bound of "
                        f"wsesim), got {shown(n)}")
    return n


def _choice(value: str, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        from wsesim.specs.yamlio import did_you_mean
        raise SpecError(SOURCE, key, f"{value!r} is not one of {', '.join(choices)}"
                        f"{did_you_mean(value, list(choices))}")
    return value


def check(op: str, rows: int, cols: int, elements: int, hardware: str = DEFAULT_HARDWARE,
          algorithm: str = "auto", groups: int | None = None, context: int = 256,
          layers: int = 4, strategy: str = "sequential") -> Any:
    """Run ``op`` at PE level and in closed form; returns a ``wsesim.sim.pe.OpResult``."""
    from wsesim.sim import pe
    from wsesim.sim.limits import too_large
    why = too_large(rows, cols)
    if why:
        raise SpecError(SOURCE, "--grid", why)
    if op == "model" and layers * rows * cols > MAX_FABRIC_CHECK_PE_LAYERS:
        raise SpecError(SOURCE, "--layers", f"the PE level simulates every PE of every "
                        f"layer: {layers:,} layers x {rows} x {cols} PEs = "
                        f"{layers * rows * cols:,} is more than the budget of "
                        f"{MAX_FABRIC_CHECK_PE_LAYERS:,} (a bound of wsesim); use fewer "
                        "layers or a smaller grid")
    # the model (hidden size ``elements``) matters to the stage operations only
    model = {"hidden": elements, "context": context} if op in STAGE_OPS else {}
    kn, plan = pe.kernels_for(hardware, rows, cols, algorithm=algorithm, groups=groups,
                              layers=layers if op == "model" else 1,
                              strategy=strategy if op == "model" else "sequential",
                              **model)
    if op == "broadcast":
        return pe.broadcast(kn, rows, cols, elements)
    if op == "allreduce":
        return pe.allreduce(kn, rows, cols, elements)
    if op == "gemv":
        return pe.gemv(kn, rows, cols, elements, elements)
    if op == "transfer":
        if cols < 2:
            raise SpecError(SOURCE, "--grid", "transfer needs at least 2 columns (from the "
                            "west half to the east half)")
        return pe.transfer(kn, rows, cols, elements)
    if op == "model":
        return pe.decode_token(plan, context)
    content = {s.part: s.content for s in plan.wafers[0].stages}
    sram = plan.deployment.hardware.pe_sram_bytes
    if op == "attention":
        return pe.stage(kn, content["attention"], rows, cols, context, sram=sram)
    return pe.layer(kn, content["attention"], content["mlp"], rows, cols, context, sram=sram)


def _causes(c: Any) -> str:
    parts = {k: float(np.asarray(v)) for k, v in c.by_cause().items()}
    total = sum(parts.values()) or 1.0
    return ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items() if v > MIN_SHOWN_SHARE * total)


def main(args: argparse.Namespace) -> int:
    op = _choice(args.op, "op", OPS)
    fmt = _choice(args.format, "--format", ("text", "json"))
    rows, cols = (_int(v, "--grid", high=MAX_GRID_SIDE) for v in args.grid)
    elements = _int(args.elements, "--elements",
                    high=MAX_STAGE_HIDDEN if op in STAGE_OPS else MAX_WIDTH)
    algorithm = _choice(args.algorithm, "--algorithm", ("auto", "chain", "tree",
                                                        "two-level"))
    groups = _int(args.groups, "--groups", high=MAX_GROUPS) \
        if args.groups is not None else None
    # decoding at context T reads a prompt of T - 1 tokens
    context = _int(args.context, "--context", 2, MAX_PROMPT_TOKENS + 1)
    layers = _int(args.layers, "--layers", high=MAX_LAYERS)
    strategy = _choice(args.strategy, "--strategy", ("sequential", "pipeline"))
    result = check(op, rows, cols, elements, args.hardware, algorithm, groups, context,
                   layers, strategy)
    from wsesim import __version__
    out = {"wsesim_version": __version__, **result.to_dict()}
    out.update({"hardware": args.hardware, "elements": elements})
    if fmt == "json":
        print(strict_json.dumps(out))
        return 0
    what = "hidden" if op in STAGE_OPS else "matrix" if op == "gemv" else "elements"
    size = f"{elements:,} x {elements:,}" if op == "gemv" else f"{elements:,}"
    print(f"fabric-check {op} on {rows} x {cols} "
          f"PEs of {args.hardware}, {what} {size}"
          + (f", context {context}" if op in STAGE_OPS else ""))
    print(f"  PE level     {result.pe_cycles:>12,.1f} cycles  ({_causes(result.pe)})")
    print(f"  closed form  {result.model_cycles:>12,.1f} cycles  ({_causes(result.model)})")
    print(f"  ratio        {result.ratio:>12.4f}  (PE level / closed form)")
    print(f"  {result.events:,} simpy events in {result.wall_s:.3f} s")
    for note in result.notes:
        print(f"  note: {note}")
    return 0
