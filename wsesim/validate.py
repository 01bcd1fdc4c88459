"""Predictions against published measurements on real wafers (``validation/``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from wsesim.errors import SpecError, escape, shown
from wsesim.paths import validation_dir, where_from
from wsesim.specs import Deployment, deployment_from_mapping
from wsesim.specs.bounds import number
from wsesim.specs.yamlio import did_you_mean, read_mapping, validate

Measured = number(0, 1e18, low_inclusive=False)   # finite and positive
Tolerance = number(0, 100, low_inclusive=False)   # a fraction of the measured value
METRICS = ("tokens_per_s_per_user", "tokens_per_s", "time_per_output_token_s", "ttft_s",
           "prefill_tokens_per_s", "layer_time_s")


class CaseSpec(BaseModel):
    """One published measurement and the deployment that reproduces its setting."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str
    metric: str
    measured: Measured
    tolerance: Tolerance = 0.15
    deployment: dict[str, Any]

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"{shown(value)} is not a performance metric"
                             f"{did_you_mean(value, list(METRICS))}; one of {', '.join(METRICS)}")
        return value


@dataclass
class Case:
    spec: CaseSpec
    deployment: Deployment
    path: Path


@dataclass
class CaseResult:
    name: str
    metric: str
    measured: float
    predicted: float
    error: float        # (predicted - measured) / measured
    tolerance: float
    source: str

    @property
    def passed(self) -> bool:
        return abs(self.error) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "measured": self.measured,
                "predicted": self.predicted, "error": self.error,
                "tolerance": self.tolerance, "passed": self.passed}


def load_case(path: Path) -> Case:
    data = read_mapping(path)
    spec = validate(CaseSpec, data, path)
    dep = deployment_from_mapping(spec.deployment, path, path.parent, prefix="deployment")
    return Case(spec, dep, path)


def find_cases(names: list[str] | None = None) -> list[Path]:
    """Case files by name (or path); all of ``validation/`` when none are given."""
    folder = validation_dir()
    shipped = sorted(folder.glob("*.yaml"))
    if not names:
        if not shipped:   # a broken install or a WSESIM_HOME without validation/
            raise SpecError(escape(str(folder)), "", "no validation cases (*.yaml) in this "
                                               f"folder; it was chosen by {where_from()}")
        return shipped
    out = []
    known = [p.stem for p in shipped]
    for name in names:
        path = Path(name)
        if path.is_file():
            out.append(path)
        elif (folder / f"{name}.yaml").is_file():
            out.append(folder / f"{name}.yaml")
        else:
            raise SpecError(name, "", f"no validation case named '{name}'"
                            f"{did_you_mean(name, known)}; known: {', '.join(known)}")
    return out


def predict(dep: Deployment, metric: str) -> float:
    """A deployment's predicted value of a performance metric."""
    from wsesim.run import simulate

    result = simulate(dep, find_min_wafers=False)
    assert result.performance is not None
    return float(result.performance[metric])


def run_case(case: Case) -> CaseResult:
    predicted = predict(case.deployment, case.spec.metric)
    measured = case.spec.measured
    return CaseResult(case.spec.name, case.spec.metric, measured, predicted,
                      (predicted - measured) / measured, case.spec.tolerance,
                      " ".join(case.spec.source.split()))
