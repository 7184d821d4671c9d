"""Small file helpers of the pipeline: atomic writes, quiet removal, JSON reading."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..core._atomic import atomic_open


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def unlink(*paths) -> None:
    """Remove files that may not exist."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def read_json(path: Path):
    """The JSON document in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
