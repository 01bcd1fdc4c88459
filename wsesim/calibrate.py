"""Fit a hardware profile's calibrated constants to its validation cases.

``python -m wsesim.calibrate [PROFILE ...] [--write]`` takes, for each profile, the
constants its ``kernel.calibrated`` names (dotted paths: ``kernel.vector_op_cycles``,
``macs_per_cycle.fp16``) and every validation case run on that profile, and fits the
constants jointly: least squares on the cases' relative errors (scipy's bounded
trust-region solver, constants kept >= 0). It then refits once per case without that
case (leave-one-out) and prints, per case, the error with the joint fit and with the fit
that never saw it. ``--write`` puts the fitted values and the cases they came from into
the profile (in place, comments kept) and the leave-one-out constants into
``validation/calibration/<profile>.yaml``, where ``wsesim validate`` reads them.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from wsesim.errors import SpecError
from wsesim.paths import profiles_dir
from wsesim.specs import HardwareProfile
from wsesim.validate import (
    Case,
    calibration_file,
    constant_slot,
    find_cases,
    load_case,
    predict,
    with_constants,
)

RELATIVE_STEP = 1e-3     # of a constant's value, for the numerical Jacobian
TOLERANCE = 1e-7         # relative change of the objective at which a fit stops


@dataclass
class Fit:
    """Constants fitted on a set of cases, and the cases' relative errors with them."""

    values: dict[str, float]
    errors: dict[str, float]
    loo_values: dict[str, dict[str, float]] = field(default_factory=dict)
    loo_errors: dict[str, float] = field(default_factory=dict)


def constant_value(hw: HardwareProfile, path: str) -> float:
    """The value of a dotted-path constant of a profile."""
    node, key = constant_slot(hw.model_dump(), path)
    return float(node[key])


def relative_errors(cases: Sequence[Case], values: dict[str, float]) -> np.ndarray:
    return np.array([predict(c, with_constants(c.hardware, values)) / c.spec.measured - 1
                     for c in cases])


def least_squares_fit(cases: Sequence[Case], start: dict[str, float]) -> dict[str, float]:
    """Constants minimizing the sum of squared relative errors over ``cases``."""
    from scipy.optimize import least_squares

    names = list(start)
    x0 = np.array([start[n] for n in names], dtype=float)
    scale = np.maximum(np.abs(x0), 1.0)

    def residuals(x: np.ndarray) -> np.ndarray:
        return relative_errors(cases, dict(zip(names, x * scale)))

    fit = least_squares(residuals, x0 / scale, bounds=(0.0, np.inf), diff_step=RELATIVE_STEP,
                        ftol=TOLERANCE, xtol=TOLERANCE, gtol=TOLERANCE)
    return dict(zip(names, (fit.x * scale).tolist()))


def calibrate(cases: Sequence[Case], start: dict[str, float], leave_one_out: bool = True
              ) -> Fit:
    """The joint fit over ``cases`` and, with ``leave_one_out``, one refit per case
    without it (started from the joint fit) and that case's error with it."""
    values = least_squares_fit(cases, start)
    fit = Fit(values, dict(zip((c.name for c in cases),
                               map(float, relative_errors(cases, values)))))
    if leave_one_out and len(cases) > len(start):
        for i, case in enumerate(cases):
            rest = [c for j, c in enumerate(cases) if j != i]
            fit.loo_values[case.name] = least_squares_fit(rest, values)
            loo = fit.loo_values[case.name]
            fit.loo_errors[case.name] = float(relative_errors([case], loo)[0])
    return fit


# ------------------------------------------------------------------ writing back
def _set_in_yaml(text: str, path: str, value: str) -> str:
    """``text`` with the scalar at dotted ``path`` replaced by ``value``, keeping the
    line's comment and every other line (a block-style YAML mapping)."""
    lines = text.splitlines(keepends=True)
    start, indent = 0, -1
    parts = path.split(".")
    for depth, part in enumerate(parts):
        pattern = re.compile(rf"^(\s*){re.escape(part)}:(\s*)([^#\n]*?)(\s*(#.*)?)$")
        for i in range(start, len(lines)):
            stripped = lines[i].strip()
            here = len(lines[i]) - len(lines[i].lstrip())
            if stripped and not stripped.startswith("#") and here <= indent:
                break                    # left the enclosing block
            m = pattern.match(lines[i].rstrip("\n"))
            if m and len(m.group(1)) > indent:
                if depth == len(parts) - 1:
                    end = "\n" if lines[i].endswith("\n") else ""
                    lines[i] = f"{m.group(1)}{part}: {value}{m.group(4)}{end}"
                    return "".join(lines)
                start, indent = i + 1, len(m.group(1))
                break
        else:
            raise KeyError(path)
    raise KeyError(path)


def _flow_list(key: str, items: list[str], indent: str, width: int = 90) -> str:
    """``key: [a, b, ...]`` wrapped to ``width`` columns."""
    lines, line = [], f"{indent}{key}: ["
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "]")
        if len(line) + len(piece) > width and not line.endswith("["):
            lines.append(line.rstrip() + "\n")
            line = indent + " " * (len(key) + 3)
        line += piece
    return "".join(lines) + (line if items else line + "]") + "\n"


def _calibrated_block(values: dict[str, float], cases: list[str], indent: str) -> str:
    return (f"{indent}calibrated:   # written by python -m wsesim.calibrate --write: every "
            "constant fitted on every case, jointly\n"
            + _flow_list("constants", list(values), indent + "  ")
            + _flow_list("cases", cases, indent + "  "))


def yaml_number(value: float) -> str:
    """``value`` to four significant digits as YAML reads a float back (``2e+04`` and
    ``1e-05``, as ``{:.4g}`` writes them, are strings to a YAML 1.1 reader)."""
    return yaml.safe_dump(float(f"{value:.4g}")).splitlines()[0]


def write_profile(path: Path, fit: Fit, cases: list[str]) -> None:
    """Put the fitted values and the cases they came from into the profile file."""
    text = path.read_text(encoding="utf-8")
    for name, value in fit.values.items():
        text = _set_in_yaml(text, name, yaml_number(value))
    block = re.compile(r"^(\s*)calibrated:.*\n(\1 .*\n)*", re.M)
    m = block.search(text)
    if m is None:
        raise KeyError("kernel.calibrated")
    text = text[:m.start()] + _calibrated_block(fit.values, cases, m.group(1)) + \
        text[m.end():]
    path.write_text(text, encoding="utf-8")


def write_leave_one_out(profile: str, fit: Fit) -> Path:
    path = calibration_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "profile": profile,
        "fitted": {k: round(v, 6) for k, v in fit.values.items()},
        "errors": {k: round(v, 6) for k, v in fit.errors.items()},
        "leave_one_out": {case: {k: round(v, 6) for k, v in vals.items()}
                          for case, vals in fit.loo_values.items()},
        "leave_one_out_errors": {k: round(v, 6) for k, v in fit.loo_errors.items()},
    }
    header = (f"# Written by `python -m wsesim.calibrate {profile} --write`: the constants of "
              f"hardware profile {profile}\n# fitted on all its validation cases, and for each "
              "case the constants fitted without it\n# (leave-one-out), which `wsesim "
              "validate` uses to predict that case.\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100),
                    encoding="utf-8")
    return path


# ------------------------------------------------------------------------ command
def cases_by_profile() -> dict[str, list[Case]]:
    """The validation cases priced by the closed forms, by profile. Cases at the PE
    fidelity are left out of the fit: they check the PE level against hardware with the
    constants the closed forms were fitted with."""
    out: dict[str, list[Case]] = {}
    for p in find_cases():
        case = load_case(p)
        fidelity = getattr(case.target, "fidelity", None) or getattr(
            getattr(case.target, "simulation", None), "fidelity", "tile")
        if fidelity == "tile":
            out.setdefault(case.hardware.name, []).append(case)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsesim.calibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", help="profiles to fit (default: every "
                        "profile with validation cases and calibrated constants)")
    parser.add_argument("--write", action="store_true", help="write the fitted values "
                        "into the profile and the leave-one-out constants into "
                        "validation/calibration/")
    parser.add_argument("--no-loo", action="store_true", help="skip the leave-one-out "
                        "refits (faster; nothing is written)")
    args = parser.parse_args(argv)
    groups = cases_by_profile()
    for profile in args.profiles or sorted(groups):
        cases = groups.get(profile, [])
        hw = cases[0].hardware if cases else None
        if hw is None or not hw.kernel.calibrated.constants:
            print(f"{profile}: no validation cases or no calibrated constants: skipped")
            continue
        try:
            start = {name: constant_value(hw, name)
                     for name in hw.kernel.calibrated.constants}
        except KeyError as exc:
            print(SpecError(profiles_dir() / f"{profile}.yaml",
                            "kernel.calibrated.constants", f"{exc.args[0]!r} is not a "
                            "number this profile states").line(), file=sys.stderr)
            return 2
        print(f"{profile}: fitting {', '.join(start)} on {len(cases)} cases ...",
              flush=True)
        fit = calibrate(cases, start, leave_one_out=not args.no_loo)
        for name, value in fit.values.items():
            print(f"  {name:40s} {start[name]:>10.4g} -> {value:>10.4g}")
        print(f"  {'case':40s} {'fitted':>8s} {'leave-one-out':>14s}")
        for case in cases:
            loo = fit.loo_errors.get(case.name)
            print(f"  {case.name:40s} {fit.errors[case.name]:>+8.1%} "
                  f"{'' if loo is None else f'{loo:+.1%}':>14s}")
        if args.write and not args.no_loo:
            write_profile(profiles_dir() / f"{profile}.yaml", fit, [c.name for c in cases])
            print(f"  wrote {profiles_dir() / f'{profile}.yaml'} and "
                  f"{write_leave_one_out(profile, fit)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
