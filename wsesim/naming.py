"""Names as file names: shared by the plots and the sweeps (neither imports the other)."""
from __future__ import annotations

import re

MAX_SLUG_CHARS = 100   # well under the 255 bytes a file name may have


def slug(name: str, default: str = "sweep") -> str:
    """A name as a file or folder name: runs of anything but letters, digits, ``.``,
    ``_`` and ``-`` become one ``-``, and leading or trailing dots and dashes go (so no
    name becomes ``.`` or ``..``), at most MAX_SLUG_CHARS; ``default`` when nothing is
    left."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return text[:MAX_SLUG_CHARS].strip("-.") or default
