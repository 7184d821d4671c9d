"""Small file helpers of the pipeline: atomic writes, quiet removal, JSON reading."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def chmod_default(path) -> None:
    """Give a mkstemp file (mode 0600) the mode a normally created file would have."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
