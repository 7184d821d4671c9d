"""Where things live in the repository, and the error for bad input to the pipeline."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import LowRankError

PROFILES_FILE = Path("notebooks") / "profiles.yml"
RESULTS_DIR = Path("book") / "results"
STATIC_DIR = Path("book") / "_static"


class ReproduceError(LowRankError):
    """Invalid input (profile, notebook, parameter) or a missing prerequisite; nothing has run."""


BOOK_EXTRA = "pip install 'lowrank-learning[book]'"


def optional(module: str):
    """Import ``module``, a dependency of the ``book`` extra (papermill, jupyter-book, nbformat,
    pyyaml, jupyter_client): the package itself imports without them, and the pipeline says what
    to install when one is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ReproduceError(f"{module} is needed to run notebooks and build the book: {BOOK_EXTRA}") from exc


@dataclass(frozen=True)
class Layout:
    """Where things live, relative to the repository root."""

    root: Path

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def profiles(self) -> Path:
        return self.root / PROFILES_FILE

    @property
    def results(self) -> Path:
        return self.root / RESULTS_DIR

    @property
    def static(self) -> Path:
        return self.root / STATIC_DIR

    @property
    def cache(self) -> Path:
        return self.root / ".lowrank_cache"

    @property
    def toc(self) -> Path:
        return self.root / "_toc.yml"


def find_root(start=None) -> Path:
    """The repository root: the first of ``start`` (default: cwd) and its parents holding
    ``notebooks/profiles.yml`` or ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROFILES_FILE).is_file() or (d / "_toc.yml").is_file():
            return d
    raise ReproduceError(
        f"cannot find the repository root (a folder with {PROFILES_FILE} or _toc.yml) "
        f"from {here}; run from inside the lowrank-learning checkout or pass --root"
    )
