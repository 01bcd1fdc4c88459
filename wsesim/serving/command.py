"""``wsesim serve FILE``: a stream of requests through a deployment. Every flag
overrides the deployment's ``serving:`` section (the command line wins)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from wsesim.errors import SpecError, located
from wsesim.literal import printable

# flag -> serving key
FLAGS = {"rate": "rate_per_s", "requests": "requests", "seed": "seed",
         "slo_ttft": "slo_ttft_s", "slo_tpot": "slo_tpot_s"}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the ``wsesim`` parser."""
    p = sub.add_parser("serve", help="serve a stream of requests (latency percentiles, "
                       "goodput, KV cache, energy; --capacity: the largest rate within "
                       "the SLOs)")
    p.add_argument("file", help="deployment YAML (its serving: section, if any, is the "
                                "default for every flag)")
    p.add_argument("--rate", metavar="R", help="requests per second (serving.rate_per_s)")
    p.add_argument("--requests", metavar="N", help="requests to simulate")
    p.add_argument("--arrivals", choices=("poisson", "gamma", "constant"),
                   help="arrival process (gamma needs serving.cv)")
    p.add_argument("--arrivals-file", metavar="FILE", help="CSV or JSONL of arrival_s, "
                   "prompt_tokens, output_tokens (with --rate: its times rescaled)")
    p.add_argument("--seed", metavar="S", help="random seed of arrivals and lengths")
    p.add_argument("--slo-ttft", metavar="S", help="SLO on time to first token, seconds")
    p.add_argument("--slo-tpot", metavar="S", help="SLO on time per output token, "
                                                   "seconds")
    p.add_argument("--capacity", action="store_true", help="find the largest rate whose "
                   "p99 TTFT and TPOT meet the SLOs")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plots", metavar="DIR", help="write latency-against-rate (with "
                   "--capacity), KV-occupancy and concurrency charts")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace (Perfetto) of "
                   "the run")
    p.set_defaults(func=main)
    return p


def _value(text: str) -> Any:
    """A flag's text as YAML would read it: an int, a float, else the text (which the
    validation then refuses with the key it sets)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def serving_mapping(current: Any, args: argparse.Namespace, source: Path
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    """The deployment's serving mapping with the flags applied, and which key each flag
    set (to name it in an error)."""
    if current is None:
        current = {}
    if not isinstance(current, dict):
        raise SpecError(source, "serving", "expected a mapping of serving settings")
    s = dict(current)
    set_by: dict[str, str] = {}
    if args.arrivals_file is not None:
        for key in ("arrivals", "cv", "prompt_tokens", "output_tokens"):
            s.pop(key, None)
        if args.rate is None:
            s.pop("rate_per_s", None)
        s["arrivals_file"] = os.path.abspath(args.arrivals_file)
        set_by["arrivals_file"] = "--arrivals-file"
    if args.arrivals is not None:
        s.pop("arrivals_file", None)
        if args.arrivals != "gamma":
            s.pop("cv", None)
        s["arrivals"] = args.arrivals
        set_by["arrivals"] = "--arrivals"
    for flag, key in FLAGS.items():
        text = getattr(args, flag)
        if text is not None:
            s[key] = _value(text)
            set_by[key] = "--" + flag.replace("_", "-")
    return s, set_by


def load(args: argparse.Namespace):
    """The deployment of ``args.file`` with its serving section and the flags."""
    from wsesim.specs import deployment_from_mapping
    from wsesim.specs.yamlio import read_mapping

    path = Path(args.file)
    data = read_mapping(path)
    data.setdefault("name", path.stem)
    data["serving"], set_by = serving_mapping(data.get("serving"), args, path)
    try:
        return deployment_from_mapping(data, path, path.parent)
    except SpecError as exc:
        key = exc.key.removeprefix("serving.")
        flag = set_by.get(key.split(".")[0]) if exc.key.startswith("serving.") else None
        if flag:
            raise SpecError(exc.source, exc.key, f"{exc.message} (from {flag})") from None
        raise


def main(args: argparse.Namespace) -> int:
    from wsesim.serving.report import answer, render_json, render_text, write_trace
    from wsesim.serving.service import prepare, serve

    dep = load(args)
    path = Path(args.file)
    capacity = None
    with located(path):
        study = prepare(dep, base_dir=path.parent, source=path)
        if args.capacity:
            from wsesim.serving.capacity import find_capacity
            capacity = find_capacity(study)
            served = capacity.at_capacity
            if served is None or args.trace is not None:
                rate = capacity.requests_per_s
                served = serve(study, rate, trace=args.trace is not None)
        else:
            served = serve(study, trace=args.trace is not None)
    doc = answer(study, served, capacity)
    sys.stdout.write(render_json(doc) if args.format == "json" else render_text(doc))
    if args.trace is not None:
        write_trace(study, served, args.trace)
    if args.plots is not None:
        from wsesim.serving.plots import write_serving_plots
        files = write_serving_plots(study, served, args.plots, capacity)
        print(f"wrote {len(files)} plot(s) to {printable(args.plots)}", file=sys.stderr)
    return 0
