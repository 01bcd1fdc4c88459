"""An install that works anywhere: a wheel (``pip install .``, not editable) ships every
model, hardware profile and validation case, and the installed package finds them from
any directory; an installation that finds none says so instead of printing nothing."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.paths import models_dir, profiles_dir, validation_dir

ROOT = Path(__file__).resolve().parent.parent
# What a checkout holds besides the sources; none of it goes into a wheel.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
    "sweep-out", "plots", "out", ".ipynb_checkpoints", "*.pyc")
_SHIPPED = {"models": models_dir, "hardware_profiles": profiles_dir,
            "validation": validation_dir}


def _pip(*args: str, cwd: Path) -> None:
    """Run pip offline (no index, no build isolation, no dependencies)."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (so no build/ lands in it), installed
    into a folder of its own; returns that folder. The wheel sits beside it."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCES)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "wheel"), str(src),
         cwd=base)
    (wheel,) = (base / "wheel").glob("wsesim-*.whl")
    _pip("install", "--no-deps", "--target", str(base / "site"), str(wheel), cwd=base)
    return base / "site"


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m wsesim ARGS`` against the installed copy, from a folder outside the
    checkout, without ``WSESIM_HOME``."""
    env = {k: v for k, v in os.environ.items() if k != "WSESIM_HOME"}
    env["PYTHONPATH"] = str(site)
    cwd = site.parent / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "wsesim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _names(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.yaml")}


def test_wheel_holds_every_shipped_file(installed: Path) -> None:
    (wheel,) = (installed.parent / "wheel").glob("wsesim-*.whl")
    members = zipfile.ZipFile(wheel).namelist()
    for kind, folder in _SHIPPED.items():
        assert _names(folder()), f"the checkout has no {kind}"
    data = ROOT / "wsesim" / "data"
    expected = {str(p.relative_to(ROOT)) for p in data.rglob("*.yaml")}
    assert {m for m in members if m.startswith("wsesim/data/")} == expected


def test_package_data_globs_match_every_data_file() -> None:
    """Every file under wsesim/data is shipped: pyproject's package-data globs match it
    (the calibration folder was missed: an installed copy had no leave-one-out)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package = ROOT / "wsesim"
    matched = {p for pattern in config["tool"]["setuptools"]["package-data"]["wsesim"]
               for p in package.glob(pattern)}
    files = {p for p in (package / "data").rglob("*") if p.is_file()
             and "__pycache__" not in p.parts}
    assert files and files <= matched, sorted(str(p.relative_to(package))
                                              for p in files - matched)


def test_installed_copy_is_the_one_run(installed: Path) -> None:
    done = _run(installed, "--help")
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import wsesim; print(wsesim.__file__)"],
                           cwd=installed.parent, env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(installed)


@pytest.mark.parametrize("command,kind", [("models", "models"),
                                          ("profiles", "hardware_profiles")])
def test_installed_lists_shipped_files(installed: Path, command: str, kind: str) -> None:
    done = _run(installed, command)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert listed == _names(_SHIPPED[kind]())


def test_installed_validates_every_case(installed: Path) -> None:
    done = _run(installed, "validate", "--format", "json")
    # 1 = a case off by more than its tolerance: a result, not an install problem
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    data = json.loads(done.stdout)
    rows = data if isinstance(data, list) else next(
        v for v in data.values() if isinstance(v, list))
    assert {r["name"] for r in rows} == _names(validation_dir())
    # the calibrated profiles' leave-one-out constants are shipped too
    assert all(r["loo_error"] is not None for r in rows if r["metric"] == "cycles")


@pytest.mark.parametrize("command", ["models", "profiles", "validate"])
def test_nothing_found_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], command: str) -> None:
    """An empty data folder (a broken install, a wrong ``WSESIM_HOME``) is one error
    line and exit 2, not an empty listing with exit 0."""
    monkeypatch.setenv("WSESIM_HOME", str(tmp_path))
    assert main([command]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "WSESIM_HOME" in lines[0]


def test_checkout_paths_still_work() -> None:
    """The old top-level folders stay usable in a checkout (docs and examples name
    them): each leads to the packaged folder."""
    for kind, folder in _SHIPPED.items():
        old = ROOT / kind
        assert old.resolve() == folder().resolve(), kind
        assert _names(old) == _names(folder())


_OUTSIDE = re.compile(r"\.\./|\bbrief\b|hardware-facts|/work/|shared/", re.IGNORECASE)


def _shipped_files() -> list[Path]:
    return sorted(p for folder in _SHIPPED.values() for p in folder().glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_file_cites_nothing_outside_the_package(path: Path) -> None:
    """A source a user cannot open (a path outside the repository, the project's own
    brief) is no source: every shipped file cites primary documents only."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        assert not _OUTSIDE.search(line), f"{path.name}:{number}: {line}"


@pytest.mark.parametrize("path", sorted(profiles_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_number_has_a_comment(path: Path) -> None:
    """Each paragraph of a hardware profile that sets a value says where it comes from
    (a comment on its lines or just above them)."""
    for paragraph in re.split(r"\n\s*\n", path.read_text()):
        lines = paragraph.splitlines()
        sets_value = any(re.match(r"\s*[a-z_]\w*:\s*\S", ln) and not ln.lstrip().startswith(
            ("name:", "description:")) for ln in lines)
        if sets_value:
            assert any("#" in ln for ln in lines), paragraph


@pytest.mark.parametrize("loader,name", [("load_model", "llama-3.1-8b"),
                                         ("load_hardware", "wse3")])
def test_unknown_name_with_nothing_shipped_says_where(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str, name: str) -> None:
    """A shipped name that cannot be found because the data folder is empty names that
    folder and how it was chosen, instead of an empty list of known names."""
    import wsesim.specs as specs

    monkeypatch.setenv("WSESIM_HOME", str(tmp_path))
    with pytest.raises(SpecError) as caught:
        getattr(specs, loader)(name)
    assert str(tmp_path) in caught.value.message and "WSESIM_HOME" in caught.value.message
