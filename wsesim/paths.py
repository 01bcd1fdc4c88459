"""Where the shipped hardware profiles, models and validation cases live.

They are package data (``wsesim/data/``), so an installed wheel finds them wherever it
is run from; a checkout keeps relative symlinks at the old top-level paths
(``models/``, ``hardware_profiles/``, ``validation/``) for the docs and examples.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
HOME_VARIABLE = "WSESIM_HOME"


def data_root() -> Path:
    """The folder holding ``hardware_profiles/``, ``models/`` and ``validation/``.

    ``WSESIM_HOME`` overrides it (a folder of one's own profiles and models); otherwise
    the data shipped inside the package.
    """
    override = os.environ.get(HOME_VARIABLE)
    return Path(override).expanduser().resolve() if override else PACKAGE_DIR / "data"


def where_from() -> str:
    """How :func:`data_root` was chosen, for error messages about a missing folder."""
    override = os.environ.get(HOME_VARIABLE)
    return (f"{HOME_VARIABLE}={override!r}" if override else
            f"the data shipped with wsesim (set {HOME_VARIABLE} to use another folder)")


def profiles_dir() -> Path:
    return data_root() / "hardware_profiles"


def models_dir() -> Path:
    return data_root() / "models"


def validation_dir() -> Path:
    return data_root() / "validation"
