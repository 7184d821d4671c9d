"""Atomic file writes: a temporary file in the destination's folder, renamed into place.

An interrupted or failed write never leaves a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def move_into_place(src, dest) -> None:
    """Rename ``src`` onto ``dest`` (atomic within one filesystem), first giving it the mode a
    normally created file has (a mkstemp file has mode 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(src, 0o666 & ~mask)
    os.replace(src, dest)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", *, fsync: bool = False, **kwargs):
    """``open(path, mode)`` whose content appears at ``path`` only when the block ends without error.

    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to :func:`os.fdopen` (e.g. ``encoding``, ``newline``).
    ``fsync=True`` flushes the content to disk before the rename, so that the file survives a
    system crash as soon as it is visible.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        move_into_place(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
