"""The ``wsesim`` command: run a deployment, list what ships."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from wsesim.errors import KeyedError, SpecError, SweepInterrupted, located


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
        print(f"wrote {len(files)} plot(s) to {args.plots}", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wsesim.sweeps import default_workers, load_sweep, run_sweep, slug

    spec = load_sweep(args.file)
    out = Path(args.out) if args.out else Path("sweep-out") / slug(spec.name)
    outcome = run_sweep(spec, out, workers=args.workers or default_workers(),
                        executor=args.executor)
    print(outcome.summary())
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from wsesim.planner.table import plan_rows, wafer_range
    from wsesim.specs import load_deployment

    dep = load_deployment(args.file)
    if args.objective:
        dep = dep.model_copy(update={"mapping": dep.mapping.model_copy(
            update={"objective": args.objective})})
    with located(args.file):
        rows = plan_rows(dep, wafer_range(args.wafers, dep))
    if args.format == "json":
        import wsesim
        print(json.dumps({"wsesim_version": wsesim.__version__, "plans": rows}, indent=2))
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
            plan = r["strategy"] + (f", {r['regions_per_wafer']} regions per wafer"
                                    if r["strategy"] == "grouped" else "")
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_models(args: argparse.Namespace) -> int:
    from wsesim.paths import models_dir
    from wsesim.specs import load_model, shipped

    for name in shipped(models_dir()):
        m = load_model(name)
        print(f"{name:<18} {m.name:<18} {m.parameters:>17,} parameters  "
              f"{m.num_hidden_layers:>3} layers  hidden {m.hidden_size}")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from wsesim.paths import profiles_dir
    from wsesim.specs import load_hardware, shipped

    for name in shipped(profiles_dir()):
        hw = load_hardware(name)
        print(f"{name:<8} {hw.grid_rows} x {hw.grid_cols} PEs, {hw.pe_sram_bytes:,} B SRAM "
              f"per PE ({hw.wafer_sram_bytes / 1e9:.1f} GB), {hw.clock_hz / 1e9:g} GHz  "
              f"{hw.description}")
    return 0


def _cmd_formats(args: argparse.Namespace) -> int:
    from wsesim.quant import PRESET_DESCRIPTIONS, PRESETS

    for name, fmt in PRESETS.items():
        print(f"{name:<15} {fmt.describe()}")
        print(f"{'':<15} {PRESET_DESCRIPTIONS[name]}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import json

    from wsesim.validate import find_cases, load_case, run_cases

    results = run_cases([load_case(p) for p in find_cases(args.cases)])
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Predictions against measurements on real wafers "
                      "(error: with the profile's fitted constants; leave-one-out: with "
                      "constants fitted without that case)", title_justify="left")
        for col in ("case", "metric", "measured", "predicted", "error", "leave-one-out",
                    ""):
            table.add_column(col, justify="left" if col in ("case", "metric") else "right")
        for r in results:
            loo = "" if r.loo_error is None else f"{r.loo_error:+.1%}"
            table.add_row(r.name, r.metric, f"{r.measured:.4g}", f"{r.predicted:.4g}",
                          f"{r.error:+.1%}", loo, "ok" if r.passed else
                          f"OFF (> {r.tolerance:.0%})")
        Console(width=120).print(table)
        for r in results:
            print(f"{r.name}: {r.source}")
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"error: validation: {len(failed)} case(s) off by more than their "
              f"tolerance: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsesim",
        description="Wafer-scale dataflow simulator: does a quantized LLaMA model fit in "
                    "on-chip SRAM, on how many wafers, where, and how fast.")
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
                     "sweep-out/<sweep name>); points already there are skipped")
    swp.add_argument("--workers", type=_positive_int, metavar="N",
                     help="processes to run points in (default: the CPUs; 1 = serial)")
    swp.add_argument("--executor", metavar="dask://HOST:PORT",
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
    sub.add_parser("models", help="list the shipped models").set_defaults(func=_cmd_models)
    sub.add_parser("profiles", help="list the shipped hardware profiles").set_defaults(
        func=_cmd_profiles)
    sub.add_parser("formats", help="list the quantization presets").set_defaults(
        func=_cmd_formats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    except KeyedError as exc:  # a key no file names (fabric-check's own options)
        print(f"error: {args.command}: {exc.keyed()}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written (--out, --plots...)
        where = exc.filename if exc.filename is not None else args.command
        print(f"error: {where}: (top level): {exc.strerror or exc}", file=sys.stderr)
        return 2
    except SweepInterrupted as exc:
        print(f"error: {args.command}: (top level): {' '.join(str(exc).split())}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
