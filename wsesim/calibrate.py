"""Refit the kernel profile's calibrated constants on their named validation cases.

``python -m wsesim.calibrate`` reads which case each constant in ``kernel.calibrated``
is fitted on (from the first validation case's profile; the fitted values apply to
every profile naming the same cases), solves for the values that make
those cases' predictions equal their measurements (a few secant steps in as many
dimensions as constants), and prints them with every case's error before and after.
It writes nothing: the numbers go into the profile by hand, with the case beside them.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from wsesim.specs import Deployment
from wsesim.validate import find_cases, load_case
from wsesim.validate import predict as predict_case


def _with_kernel(dep: Deployment, values: dict[str, float]) -> Deployment:
    hw = dep.hardware
    kernel = hw.kernel.model_copy(update=values)
    return dep.model_copy(update={"hardware": hw.model_copy(update={"kernel": kernel})})


def predict(dep: Deployment, metric: str, values: dict[str, float]) -> float:
    """The case's prediction with the kernel constants set to ``values``."""
    return predict_case(_with_kernel(dep, values), metric)


def fit(cases: dict[str, tuple[Deployment, str, float]], start: dict[str, float],
        rounds: int = 8) -> dict[str, float]:
    """Values of the named constants that zero each one's case's relative error."""
    names = list(cases)
    x = np.array([start[n] for n in names], dtype=float)

    def errors(v: np.ndarray) -> np.ndarray:
        vals = dict(zip(names, v))
        return np.array([predict(dep, metric, vals) / measured - 1
                         for dep, metric, measured in (cases[n] for n in names)])

    for _ in range(rounds):
        e = errors(x)
        if np.max(np.abs(e)) < 1e-4:
            break
        jac = np.empty((len(names), len(names)))
        for j in range(len(names)):
            step = np.zeros(len(names))
            step[j] = max(abs(x[j]) * 0.05, 0.5)
            jac[:, j] = (errors(x + step) - e) / step[j]
        x = np.maximum(x - np.linalg.solve(jac, e), 0.0)
    return dict(zip(names, x))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsesim.calibrate",
                                     description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cases_by_name = {p.stem: load_case(p) for p in find_cases()}
    first = next(iter(cases_by_name.values()))
    kernel = first.deployment.hardware.kernel
    targets = {}
    for constant, case_path in kernel.calibrated.items():
        case = cases_by_name[Path(case_path).stem]
        targets[constant] = (case.deployment, case.spec.metric, case.spec.measured)
    start = {n: getattr(kernel, n) for n in targets}
    fitted = fit(targets, start)
    print("fitted kernel constants (put them in hardware_profiles/*.yaml):")
    for n, v in fitted.items():
        print(f"  {n}: {v:.1f}    # calibrated on {kernel.calibrated[n]}")
    print("errors with the fitted constants:")
    for name, case in cases_by_name.items():
        values = {n: round(v, 1) for n, v in fitted.items()} \
            if case.deployment.hardware.kernel.calibrated == kernel.calibrated else {}
        pred = predict(case.deployment, case.spec.metric, values)
        print(f"  {name:34s} {(pred - case.spec.measured) / case.spec.measured:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
