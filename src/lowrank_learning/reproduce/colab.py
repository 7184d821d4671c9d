"""The Colab install cell: the first code cell of every notebook, generated from ``pyproject.toml``.

Every ``notebooks/*.ipynb`` starts (after its title) with the same code cell, tagged
``remove-cell`` so the book does not show it. In Colab (``google.colab`` imported) it
pip-installs ``<name>[notebooks] @ git+<Repository>@v<version>``: the package at the release the
book was built from, with what a chapter needs besides the package (myst-nb for ``glue``).
Anywhere else it does nothing. Name, Repository and version come from ``pyproject.toml``
(:func:`~.launch.repository_url`, :func:`~.launch.release_ref`).

``python -m lowrank_learning.reproduce.colab`` lists the notebooks whose cell differs from
:func:`colab_cell` (exit status 1 if any); with ``--write`` it rewrites those cells in place,
keeping the files' format, the cells' ids and metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .launch import project_name, release_ref, repository_url
from .layout import ReproduceError, find_root

EXTRA = "notebooks"  # the pyproject extra a chapter needs outside the repository
TAG = "remove-cell"

_TEMPLATE = '''\
# Colab only: install the companion package at the release this book was built from (does
# nothing anywhere else). A plain `pip install` (no --upgrade) keeps Colab's preinstalled jax,
# numpy, ... wherever they satisfy the package's bounds.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "{requirement}"],
                   check=True)'''


def install_requirement(root) -> str:
    """What the cell pip-installs: ``<name>[notebooks] @ git+<Repository>@v<version>``."""
    return f"{project_name(root)}[{EXTRA}] @ git+{repository_url(root)}@{release_ref(root)}"


def colab_cell(root) -> str:
    """The source of the Colab install cell (no trailing newline)."""
    return _TEMPLATE.format(requirement=install_requirement(root))


def notebook_paths(root) -> list[Path]:
    """Every ``notebooks/*.ipynb`` under ``root``, sorted."""
    return sorted((Path(root) / "notebooks").glob("*.ipynb"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def install_cell(nb: dict, path) -> dict:
    """The notebook's first code cell, which must be tagged ``remove-cell``."""
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if not code:
        raise ReproduceError(f"{path}: no code cell (the first one must be the Colab install cell)")
    cell = code[0]
    if TAG not in cell.get("metadata", {}).get("tags", []):
        raise ReproduceError(
            f"{path}: the first code cell is not tagged {TAG}; insert the Colab install cell (an "
            f"empty code cell tagged {TAG}) before it and run `python -m lowrank_learning.reproduce.colab --write`"
        )
    return cell


def stale_notebooks(root) -> list[Path]:
    """The notebooks whose first code cell is not exactly :func:`colab_cell`."""
    expected = colab_cell(root)
    out = []
    for path in notebook_paths(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if _source(install_cell(nb, path)) != expected:
            out.append(path)
    return out


def write_cells(root) -> list[Path]:
    """Rewrite the install cell of every stale notebook in place; returns the rewritten files.

    The JSON keeps the format of Jupyter's own writer (indent 1, UTF-8 unescaped, a trailing
    newline) and everything but that cell's source.
    """
    expected = colab_cell(root)
    written = []
    for path in notebook_paths(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = install_cell(nb, path)
        if _source(cell) == expected:
            continue
        cell["source"] = expected.splitlines(keepends=True)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lowrank_learning.reproduce.colab",
        description="Check (or with --write, regenerate) the Colab install cell of notebooks/*.ipynb "
                    "from pyproject.toml.",
    )
    parser.add_argument("--root", help="repository root (default: found from the working directory)")
    parser.add_argument("--write", action="store_true", help="rewrite the cells that differ")
    args = parser.parse_args(argv)
    try:
        root = Path(args.root).resolve() if args.root else find_root()
        if args.write:
            for path in write_cells(root):
                print(f"rewrote {path.relative_to(root)}")
            return 0
        stale = stale_notebooks(root)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in stale:
        print(f"stale Colab cell: {path.relative_to(root)}")
    if stale:
        print("regenerate with: python -m lowrank_learning.reproduce.colab --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
