"""Where the shipped hardware profiles, models and examples live."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_root() -> Path:
    """The folder holding ``hardware_profiles/`` and ``models/``.

    ``WSESIM_HOME`` overrides it; otherwise the project checkout that holds the
    package (the README's editable install).
    """
    override = os.environ.get("WSESIM_HOME")
    return Path(override).resolve() if override else PACKAGE_DIR.parent


def profiles_dir() -> Path:
    return data_root() / "hardware_profiles"


def models_dir() -> Path:
    return data_root() / "models"


def validation_dir() -> Path:
    return data_root() / "validation"
