"""The ``wsesim`` command: run a deployment, list what ships."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from wsesim import __version__, strict_json
from wsesim.errors import (
    MESSAGE_CHARS,
    KeyedError,
    SpecError,
    SweepInterrupted,
    escape,
    located,
    show_warning,
)
from wsesim.literal import printable

BROKEN_PIPE_EXIT = 141   # 128 + SIGPIPE: what a shell reports for a reader that went away


def _cmd_run(args: argparse.Namespace) -> int:
    from wsesim.report import RENDERERS
    from wsesim.run import simulate
    from wsesim.specs import load_deployment

    dep = load_deployment(args.file)
    with located(args.file):   # a key that validates alone but cannot be planned
        result = simulate(dep, trace=args.trace is not None)
    sys.stdout.write(RENDERERS[args.format](result))
    if args.trace is not None:
        from wsesim.trace import write_chrome_trace
        write_chrome_trace(result, args.trace)
    if args.plots is not None:
        from wsesim.plots import write_plots
        files = write_plots(result, args.plots, args.plot_format, layout="both")
        for note in files.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"wrote {len(files)} plot(s) to {printable(args.plots)}", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from wsesim.sweeps import SweepCancelled, load_sweep, run_sweep, slug

    spec = load_sweep(args.file)
    out = Path(args.out) if args.out else Path("sweep-out") / slug(spec.name)
    try:
        outcome = run_sweep(spec, out, workers=args.workers or _default_workers(),
                            executor=args.executor)
    except SweepCancelled as exc:
        print(f"wsesim sweep: {exc}", file=sys.stderr)
        return 130
    print(outcome.summary())
    if outcome.all_failed:   # some failures are results; all of them is a broken sweep
        print(f"error: {args.file}: (top level): every one of the {len(outcome.rows)} "
              f"points failed (see the error column of {out / 'results.csv'})",
              file=sys.stderr)
        return 1
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from wsesim.mapping.plan import Choice
    from wsesim.planner.table import plan_rows, wafer_range
    from wsesim.specs import load_deployment

    dep = load_deployment(args.file)
    if args.objective:
        dep = dep.model_copy(update={"mapping": dep.mapping.model_copy(
            update={"objective": args.objective})})
    with located(args.file):
        rows = plan_rows(dep, wafer_range(args.wafers, dep))
    if args.format == "json":
        print(strict_json.dumps({"wsesim_version": __version__, "plans": rows}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(f"The best plan on each wafer count: {dep.name}, by "
                             f"{dep.mapping.objective}"), title_justify="left")
        for col in ("wafers", "fits", "plan", "tokens/s per user", "tokens/s",
                    "fullest PE B", "searched"):
            t.add_column(col, justify="left" if col == "plan" else "right")
        for r in rows:
            plan = Choice.from_row(r).describe()
            t.add_row(str(r["wafers"]), "yes" if r["fits"] else "NO", plan,
                      f"{r['tokens_per_s_per_user']:,.1f}", f"{r['tokens_per_s']:,.1f}",
                      "" if r["max_pe_bytes"] is None else f"{r['max_pe_bytes']:,}",
                      str(r["searched"]))
        Console(width=110).print(t)
        fitting = [r["wafers"] for r in rows if r["fits"]]
        print("fewest wafers of the range on which a plan fits: "
              + (str(fitting[0]) if fitting else "none"))
    if args.plot:
        from wsesim.planner.chart import plan_chart
        print(f"wrote {plan_chart(rows, args.plot, dep.name)}", file=sys.stderr)
    return 0


def _default_workers() -> int:
    from wsesim.sweeps import default_workers
    return default_workers()


def _dask_address(text: str) -> str:
    """``--executor``: dask://HOST:PORT (connected to later, with a bounded timeout)."""
    from wsesim.sweeps.executors import parse_dask_address
    try:
        parse_dask_address(text, "--executor")
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def _workers(text: str) -> int:
    """``--workers``: a whole number from 1 to 4 per CPU of this machine."""
    from wsesim.sweeps.executors import check_workers
    try:
        value: object = int(text)
    except ValueError:   # not a whole number, or more digits than Python converts
        value = text
    try:
        return check_workers(value)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _positive_int(text: str) -> int:
    """``formats --inputs/--outputs``: a whole number from 1 to the bound of a model's
    width (``specs.bounds.MAX_WIDTH``), which a PE's block cannot exceed."""
    from wsesim.specs.bounds import MAX_WIDTH
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to "
                                         f"{MAX_WIDTH:,}, got {text!r}")
    return value


def _shipped_names(folder: Path, what: str) -> list[str]:
    """Names of the shipped YAML files in ``folder``; none is an error (a broken install
    or a ``WSESIM_HOME`` without that folder), not an empty listing."""
    from wsesim.paths import where_from
    from wsesim.specs import shipped

    names = shipped(folder)
    if not names:
        raise SpecError(escape(str(folder)), "", f"no {what} files (*.yaml) in this folder; "
                                           f"it was chosen by {where_from()}")
    return names


def _cmd_models(args: argparse.Namespace) -> int:
    from wsesim.paths import models_dir
    from wsesim.specs import load_model

    for name in _shipped_names(models_dir(), "model"):
        m = load_model(name)
        print(f"{name:<18} {m.name:<18} {m.parameters:>17,} parameters  "
              f"{m.num_hidden_layers:>3} layers  hidden {m.hidden_size}")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from wsesim.paths import profiles_dir
    from wsesim.specs import load_hardware

    for name in _shipped_names(profiles_dir(), "hardware profile"):
        hw = load_hardware(name)
        print(f"{name:<8} {hw.grid_rows} x {hw.grid_cols} PEs, {hw.pe_sram_bytes:,} B SRAM "
              f"per PE ({hw.wafer_sram_bytes / 1e9:.1f} GB), {hw.clock_hz / 1e9:g} GHz  "
              f"{hw.description}")
    return 0


def _cmd_formats(args: argparse.Namespace) -> int:
    from wsesim.quant import PRESET_DESCRIPTIONS, PRESETS

    if not (args.cost or args.hardware or args.inputs or args.outputs):
        if args.format == "json":
            print(strict_json.dumps({"wsesim_version": __version__, "formats": [
                {"name": name, "format": fmt.describe(),
                 "description": PRESET_DESCRIPTIONS[name]}
                for name, fmt in PRESETS.items()]}, indent=2))
            return 0
        for name, fmt in PRESETS.items():
            print(f"{name:<15} {fmt.describe()}")
            print(f"{'':<15} {PRESET_DESCRIPTIONS[name]}")
        return 0
    rows, hw_name, k, n = _format_costs(args)
    if args.format == "json":
        print(strict_json.dumps({"wsesim_version": __version__, "hardware": hw_name,
                                 "block": {"inputs": k, "outputs": n}, "derived": True,
                                 "formats": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    from wsesim.quant.dequant import KINDS

    table = Table(title=f"Dequantization per weight of a {k} x {n} block (inputs x "
                  f"outputs per PE), priced with {hw_name}'s kernel.dequant costs: "
                  "DERIVED from each format's instruction sequence, NOT measured",
                  title_justify="left")
    for col in ("preset", "bits/weight", *KINDS, "ops/weight", "cycles/weight"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        ops = r["ops_per_weight"]
        table.add_row(r["name"], f"{r['bits_per_weight']:g}",
                      *(f"{ops[kind]:.4g}" for kind in KINDS),
                      f"{r['ops_total']:.4g}", f"{r['cycles_per_weight']:.4g}")
    Console(width=120).print(table)
    print("16- and 32-bit formats are used as stored. The sequences: wsesim/quant/"
          "dequant.py; the costs: hardware_profiles/<profile>.yaml, kernel.dequant.")
    return 0


def _format_costs(args: argparse.Namespace) -> tuple[list[dict], str, int, int]:
    """Every preset's dequantization operations and cycles per weight on a block."""
    from wsesim.perf.compute import PECompute
    from wsesim.quant import PRESET_DESCRIPTIONS, PRESETS, QuantFormat
    from wsesim.quant.dequant import ops_per_weight
    from wsesim.specs import load_hardware

    hw = load_hardware(args.hardware or "wse3", source="formats", key="--hardware")
    k, n = args.inputs or 256, args.outputs or 256
    pe = PECompute.of(hw, QuantFormat(bits=16))
    rows = []
    for name, fmt in PRESETS.items():
        ops = ops_per_weight(fmt, k, n)
        cycles = float(pe.dequant(fmt, k, n).dequant)
        rows.append({"name": name, "format": fmt.describe(),
                     "description": PRESET_DESCRIPTIONS[name],
                     "bits_per_weight": fmt.bits_per_weight, "ops_per_weight": ops,
                     "ops_total": sum(ops.values()), "cycles_per_weight": cycles / (k * n)})
    return rows, hw.name, k, n


def _cmd_validate(args: argparse.Namespace) -> int:
    from wsesim.validate import find_cases, load_case, run_cases

    results = run_cases([load_case(p) for p in find_cases(args.cases)])
    if args.format == "json":
        # a list of rows, one per case (the contract), each naming the version
        print(strict_json.dumps([{"wsesim_version": __version__, **r.to_dict()}
                                 for r in results], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title="Predictions against measurements on real wafers "
                      "(error: with the profile's fitted constants; leave-one-out: with "
                      "constants fitted without that case)", title_justify="left")
        for col in ("case", "metric", "measured", "predicted", "error", "leave-one-out",
                    ""):
            table.add_column(col, justify="left" if col in ("case", "metric") else "right")
        for r in results:
            loo = "" if r.loo_error is None else f"{r.loo_error:+.1%}"
            table.add_row(Text(printable(r.name)), Text(printable(r.metric)),
                          f"{r.measured:.4g}", f"{r.predicted:.4g}", f"{r.error:+.1%}",
                          loo, "ok" if r.passed else f"OFF (> {r.tolerance:.0%})")
        Console(width=120, markup=False, emoji=False, highlight=False).print(table)
        for r in results:
            print(printable(f"{r.name}: {r.source}"))
    failed = [printable(r.name) for r in results if not r.passed]
    if failed:
        print(f"error: validation: {len(failed)} case(s) off by more than their "
              f"tolerance: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


class ArgumentsError(Exception):
    """A command line argparse refuses: printed as ``error: <command>: arguments: ...``."""

    def __init__(self, command: str, message: str) -> None:
        self.command, self.message = command, message
        super().__init__(self.line())

    def line(self) -> str:
        return f"error: {self.command}: arguments: {escape(self.message, MESSAGE_CHARS)}"


class _Parser(argparse.ArgumentParser):
    """Every parser of the tree (sub-commands inherit the class): an argument error is
    one line naming the command, exit code 2, never argparse's usage block."""

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.split()[-1] if " " in self.prog else self.prog
        raise ArgumentsError(command, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wsesim",
        description="Wafer-scale dataflow simulator: does a quantized LLaMA model fit in "
                    "on-chip SRAM, on how many wafers, where, and how fast.")
    parser.add_argument("--version", action="version", version=f"wsesim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a deployment YAML")
    run.add_argument("file", help="deployment YAML")
    run.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    run.add_argument("--trace", metavar="FILE", help="write a Chrome trace (Perfetto) of "
                                                    "the simulated timeline")
    run.add_argument("--plots", metavar="DIR", help="write placement, SRAM and "
                     "utilization heatmaps (one per wafer, and all wafers side by side)")
    run.add_argument("--plot-format", choices=("png", "svg"), default="png")
    run.set_defaults(func=_cmd_run)
    swp = sub.add_parser("sweep", help="run a what-if sweep (a grid of deployments)")
    swp.add_argument("file", help="sweep YAML (base: deployment, grid: dotted keys)")
    swp.add_argument("--out", metavar="DIR", help="results folder (default: "
                     "sweep-out/<sweep name>); points already there with the same key "
                     "are skipped, those whose deployment changed are recomputed")
    swp.add_argument("--workers", type=_workers, metavar="N",
                     help="processes to run points in (default: the CPUs; 1 = serial; at "
                     "most 4 per CPU)")
    swp.add_argument("--executor", metavar="dask://HOST:PORT", type=_dask_address,
                     help="run points on a Dask cluster (needs wsesim[distributed])")
    swp.set_defaults(func=_cmd_sweep)
    pln = sub.add_parser("plan", help="the best plan on each wafer count of a range")
    pln.add_argument("file", help="deployment YAML (its mapping strategy is ignored: "
                                  "every count is searched)")
    pln.add_argument("--wafers", required=True, metavar="A-B",
                     help="wafer counts to search, e.g. 4-8")
    pln.add_argument("--objective", choices=("tokens_per_s_per_user", "tokens_per_s"),
                     help="what to maximize (default: the deployment's mapping.objective)")
    pln.add_argument("--format", choices=("text", "json"), default="text")
    pln.add_argument("--plot", metavar="FILE", help="chart of tokens/s against wafers")
    pln.set_defaults(func=_cmd_plan)
    val = sub.add_parser("validate", help="predictions against published measurements")
    val.add_argument("cases", nargs="*", help="case names in validation/ or paths (all "
                                              "by default)")
    val.add_argument("--format", choices=("text", "json"), default="text")
    val.set_defaults(func=_cmd_validate)
    from wsesim.fabric_check import add_parser as add_fabric_check
    add_fabric_check(sub)
    from wsesim.serving.command import add_parser as add_serve
    add_serve(sub)
    sub.add_parser("models", help="list the shipped models").set_defaults(func=_cmd_models)
    sub.add_parser("profiles", help="list the shipped hardware profiles").set_defaults(
        func=_cmd_profiles)
    fmts = sub.add_parser("formats", help="list the quantization presets (--cost: their "
                          "dequantization work per weight)")
    fmts.add_argument("--cost", action="store_true", help="operations and cycles per "
                      "weight to dequantize each preset (derived, not measured)")
    fmts.add_argument("--hardware", metavar="PROFILE", help="profile whose per-"
                      "instruction costs price it (name or path; default wse3)")
    fmts.add_argument("--inputs", type=_positive_int, metavar="K",
                      help="inputs of the weight block a PE holds (default 256)")
    fmts.add_argument("--outputs", type=_positive_int, metavar="N",
                      help="outputs of the weight block (default 256)")
    fmts.add_argument("--format", choices=("text", "json"), default="text")
    fmts.set_defaults(func=_cmd_formats)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise ArgumentsError(getattr(args, "command", None) or parser.prog,
                             f"unrecognized arguments: {' '.join(extra)}")
    return args


def _reader_gone() -> int:
    """The reader of stdout closed it (``wsesim models | head -1``): stop quietly, as
    Python's documentation recommends: point stdout at devnull so the flush at exit does
    not fail again, and exit as a process ended by SIGPIPE would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):   # no file descriptor (stdout replaced in-process)
        pass
    return BROKEN_PIPE_EXIT


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except ArgumentsError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():   # a SpecWarning is one line on stderr
            warnings.showwarning = show_warning
            code = args.func(args)
        sys.stdout.flush()   # a reader that went away (``| head``) shows here, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except SpecError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    except KeyedError as exc:  # a key no file names (fabric-check's own options)
        print(f"error: {args.command}: {exc.keyed()}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written (--out, --plots...)
        where = exc.filename if exc.filename is not None else args.command
        print(printable(f"error: {where}: (top level): {exc.strerror or exc}"),
              file=sys.stderr)
        return 2
    except SweepInterrupted as exc:
        print(f"error: {args.command}: (top level): {' '.join(str(exc).split())}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:   # Ctrl-C outside a sweep's own handling
        print(f"wsesim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
