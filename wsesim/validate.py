"""Predictions against measurements on real wafers (``validation/``): deployment cases
(a published tokens/s or time) and kernel cases (hardware cycle counts of one kernel).

A profile's calibrated constants are fitted on its cases (:mod:`wsesim.calibrate`); the
constants fitted without each case (leave-one-out) are kept in
``validation/calibration/<profile>.yaml`` so that every case is also predicted by a fit
that never saw it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from wsesim.errors import SpecError, escape, shown
from wsesim.paths import validation_dir, where_from
from wsesim.specs import Deployment, HardwareProfile, deployment_from_mapping, load_hardware
from wsesim.specs.bounds import number
from wsesim.specs.kernel import KernelSpec
from wsesim.specs.yamlio import did_you_mean, read_mapping, validate

Measured = number(0, 1e18, low_inclusive=False)   # finite and positive
Tolerance = number(0, 100, low_inclusive=False)   # a fraction of the measured value
Fitted = number(0, 1e18)   # a fitted constant: finite, >= 0 (the profile bounds it too)
METRICS = ("tokens_per_s_per_user", "tokens_per_s", "time_per_output_token_s", "ttft_s",
           "prefill_tokens_per_s", "layer_time_s", "cycles")
CALIBRATION_DIR = "calibration"


class CaseSpec(BaseModel):
    """One measurement and the deployment (or the kernel) that reproduces its setting."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str
    metric: str
    measured: Measured
    tolerance: Tolerance = 0.15
    deployment: dict[str, Any] | None = None
    kernel: dict[str, Any] | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"{shown(value)} is not a performance metric"
                             f"{did_you_mean(value, list(METRICS))}; one of {', '.join(METRICS)}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> "CaseSpec":
        if (self.deployment is None) == (self.kernel is None):
            raise ValueError("give exactly one of deployment (a published end-to-end "
                             "figure) or kernel (cycles of one kernel)")
        if (self.metric == "cycles") != (self.kernel is not None):
            raise ValueError("metric cycles goes with a kernel case, the other metrics "
                             "with a deployment case")
        return self


class CalibrationFile(BaseModel):
    """``validation/calibration/<profile>.yaml``, as ``python -m wsesim.calibrate
    --write`` writes it: per case, the constants fitted without it."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = None
    fitted: dict[str, float] = {}
    errors: dict[str, float] = {}
    leave_one_out: dict[str, dict[str, Fitted]] = {}
    leave_one_out_errors: dict[str, float] = {}


@dataclass
class Case:
    spec: CaseSpec
    target: Deployment | KernelSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hardware(self) -> HardwareProfile:
        return self.target.hardware


@dataclass
class CaseResult:
    name: str
    metric: str
    measured: float
    predicted: float
    error: float                 # (predicted - measured) / measured
    tolerance: float
    source: str
    hardware: str
    loo_predicted: float | None = None   # by constants fitted without this case

    @property
    def loo_error(self) -> float | None:
        if self.loo_predicted is None:
            return None
        return (self.loo_predicted - self.measured) / self.measured

    @property
    def passed(self) -> bool:
        return abs(self.error) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "hardware": self.hardware,
                "measured": self.measured, "predicted": self.predicted,
                "error": self.error, "loo_predicted": self.loo_predicted,
                "loo_error": self.loo_error, "tolerance": self.tolerance,
                "passed": self.passed}


def load_case(path: Path) -> Case:
    data = read_mapping(path)
    spec = validate(CaseSpec, data, path)
    if spec.kernel is not None:
        kernel = dict(spec.kernel)
        if "hardware" not in kernel:
            raise SpecError(path, "kernel.hardware", "required key is missing")
        kernel["hardware"] = load_hardware(kernel["hardware"], path.parent, path,
                                           "kernel.hardware")
        return Case(spec, validate(KernelSpec, kernel, path, prefix="kernel"), path)
    assert spec.deployment is not None
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


def constant_slot(data: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The mapping of a profile's ``model_dump()`` that holds the number at dotted
    ``path`` (``kernel.vector_op_cycles``, ``macs_per_cycle.fp16``), and its key; a
    KeyError if there is no such number (an optional key left unset is none)."""
    node: Any = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node or \
            isinstance(node[last], (bool, str, dict, list, type(None))):
        raise KeyError(path)
    return node, last


def with_constants(hw: HardwareProfile, values: Mapping[str, float],
                   source: str | Path = "<constants>", prefix: str = "") -> HardwareProfile:
    """The profile with constants set by dotted path (``kernel.vector_op_cycles``,
    ``macs_per_cycle.fp16``); a constant it does not have, or a value it refuses, is a
    SpecError of ``source`` at ``prefix.<path>``."""
    if not values:
        return hw
    data = hw.model_dump()
    for path, value in values.items():
        try:
            node, last = constant_slot(data, path)
        except KeyError:
            raise SpecError(source, f"{prefix}.{path}" if prefix else path,
                            f"not a constant of hardware profile {hw.name}") from None
        node[last] = value
    return validate(HardwareProfile, data, source, prefix)


def predict(case: Case, hardware: HardwareProfile | None = None) -> float:
    """The case's predicted metric, on ``hardware`` (default: the case's own profile;
    :func:`with_constants` makes one with other constants)."""
    target = case.target
    if hardware is not None:
        target = target.model_copy(update={"hardware": hardware})
    if isinstance(target, KernelSpec):
        from wsesim.perf.kernels import kernel_cost
        return float(kernel_cost(target).total)
    from wsesim.run import simulate
    result = simulate(target, find_min_wafers=False)
    assert result.performance is not None
    return float(result.performance[case.spec.metric])


def calibration_file(profile: str) -> Path:
    return validation_dir() / CALIBRATION_DIR / f"{profile}.yaml"


def leave_one_out_constants(profile: str) -> dict[str, dict[str, float]]:
    """Per case, the constants fitted without it (empty if the profile has none)."""
    path = calibration_file(profile)
    if not path.is_file():
        return {}
    return validate(CalibrationFile, read_mapping(path), path).leave_one_out


def held_out_hardware(case: Case, constants: Mapping[str, float], name: str
                      ) -> HardwareProfile:
    """The case's profile with the constants fitted without case ``name`` (its own
    or its tile twin's), located in the calibration file if it refuses them."""
    profile = case.hardware.name
    return with_constants(case.hardware, constants, calibration_file(profile),
                          f"leave_one_out.{name}")


def run_case(case: Case, loo: HardwareProfile | None = None) -> CaseResult:
    """The case's prediction, and with ``loo`` (its profile with the constants fitted
    without it) its leave-one-out prediction."""
    predicted = predict(case)
    measured = case.spec.measured
    return CaseResult(case.name, case.spec.metric, measured, predicted,
                      (predicted - measured) / measured, case.spec.tolerance,
                      " ".join(case.spec.source.split()), case.hardware.name,
                      predict(case, loo) if loo else None)


def _tile_twin(case: Case, held_out: Mapping[str, Any], cases: list[Case]) -> str | None:
    """The tile-fidelity case of the same kernel measurement as a PE-fidelity case (PE
    cases are left out of the fit: such a case is held out by holding out its twin),
    among ``cases``."""
    spec = case.target
    if not isinstance(spec, KernelSpec) or spec.fidelity != "pe":
        return None
    tile = spec.model_copy(update={"fidelity": "tile"})
    return next((other.name for other in cases
                 if other.name in held_out and other.name != case.name
                 and other.target == tile and other.spec.measured == case.spec.measured),
                None)


def _shipped_cases(loaded: list[Case]) -> list[Case]:
    """Every case of ``validation/``, those in ``loaded`` not read again."""
    by_path = {c.path.resolve(): c for c in loaded}
    return [by_path.get(p.resolve()) or load_case(p) for p in find_cases()]


def run_cases(cases: list[Case]) -> list[CaseResult]:
    """Every case, with its leave-one-out prediction where its profile keeps one (for
    a PE-fidelity kernel case: the constants fitted without its tile twin)."""
    loo: dict[str, dict[str, dict[str, float]]] = {}
    shipped: list[Case] = []
    out = []
    for case in cases:
        profile = case.hardware.name
        if profile not in loo:
            loo[profile] = leave_one_out_constants(profile)
        held = loo[profile]
        name = case.name if case.name in held else None
        if name is None and held:
            shipped = shipped or _shipped_cases(cases)
            name = _tile_twin(case, held, shipped)
        out.append(run_case(case, held_out_hardware(case, held[name], name)
                            if name else None))
    return out
