"""Atomic file writes: a temporary file in the destination's folder, renamed into place.

An interrupted or failed write never leaves a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def chmod_default(path) -> None:
    """Give a mkstemp file (mode 0600) the mode a normally created file would have."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """``open(path, mode)`` whose content appears at ``path`` only when the block ends without error.

    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to :func:`os.fdopen` (e.g. ``encoding``, ``newline``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
