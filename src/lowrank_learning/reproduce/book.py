"""Build the jupyter-book site from the executed notebooks, with the results table.

Before Sphinx runs, :func:`write_results_table` turns every ``book/results/<notebook>.json``
(written by :func:`~lowrank_learning.save_results`) into a markdown table,
``book/results/results-table.md``, which the introduction includes. Notebooks listed in
``notebooks/profiles.yml`` without a JSON file show as "not run"; JSON files of notebooks not
(yet) in the registry are listed too, so a new chapter appears without editing anything.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import yaml
from jupyter_book.sphinx import build_sphinx

from ..results import MAX_HEADLINE
from .files import atomic_write_text, read_json
from .layout import RESULTS_DIR, Layout, ReproduceError, find_root
from .mathjax import ensure_mathjax
from .profiles import load_profiles

RESULTS_TABLE = "results-table.md"  # not an identifier, so never a notebook's name


# --------------------------------------------------------------------------- table of contents
def _toc_files(toc) -> list[str]:
    files = []
    if isinstance(toc, dict):
        for key, value in toc.items():
            if key in ("root", "file") and isinstance(value, str):
                files.append(value)
            else:
                files.extend(_toc_files(value))
    elif isinstance(toc, list):
        for item in toc:
            files.extend(_toc_files(item))
    return files


def toc_files(root: Path) -> list[str]:
    """Every page of ``_toc.yml`` (paths from the root, as written there)."""

    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise ReproduceError(f"{toc_path} not found")
    return _toc_files(yaml.safe_load(toc_path.read_text(encoding="utf-8")))


def _missing_toc_files(root: Path) -> tuple[list[str], list[str]]:
    """(missing executed notebooks, other missing pages) of ``_toc.yml``."""
    results, other = [], []
    for f in toc_files(root):
        p = root / f
        exists = p.is_file() if p.suffix else any(p.with_suffix(s).is_file() for s in (".md", ".ipynb", ".rst"))
        if not exists:
            (results if Path(f).as_posix().startswith(RESULTS_DIR.as_posix() + "/") else other).append(f)
    return results, other


# --------------------------------------------------------------------------- results table
def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3g}"
    if isinstance(value, list):
        if len(value) <= 4:
            return "[" + ", ".join(_fmt(v) for v in value) + "]"
        return f"{len(value)} values, {_fmt(value[0])} ... {_fmt(value[-1])}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_table(root: Path) -> str:
    """The markdown of the results table (see the module docstring)."""

    layout = Layout(Path(root))
    try:
        registry = load_profiles(layout.profiles)
    except ReproduceError:
        registry = {}
    names = list(registry)
    names += sorted(p.stem for p in layout.results.glob("*.json")
                    if p.stem not in registry and not p.name.startswith(".") and ".stamp" not in p.name)
    try:
        pages = {Path(f).with_suffix("").as_posix() for f in toc_files(root)}
    except ReproduceError:
        pages = set()
    lines = ["| chapter | quantity | value |", "|---|---|---|"]
    for name in names:
        title = registry.get(name, {}).get("title", name)
        page = f"{RESULTS_DIR.as_posix()}/{name}"
        chapter = f"{{doc}}`{_cell(title)} </{page}>`" if page in pages and (root / f"{page}.ipynb").is_file() \
            else _cell(title)
        doc = read_json(layout.results / f"{name}.json")
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict) or not doc["results"]:
            lines.append(f"| {chapter} | not run | |")
            continue
        chapter += f" ({_cell(doc.get('profile', '?'))} profile)"
        res = doc["results"]
        shown = [k for k in doc.get("headline") or [] if k in res][:MAX_HEADLINE] or list(res)[:MAX_HEADLINE]
        for k, key in enumerate(shown):
            lines.append(f"| {chapter if k == 0 else ''} | `{_cell(key)}` | {_cell(_fmt(res[key]))} |")
        if len(res) > len(shown):
            lines.append(f"| | ... | {len(res) - len(shown)} more in `{RESULTS_DIR.as_posix()}/{name}.json` |")
    return "\n".join(lines) + "\n"


def write_results_table(root: Path) -> Path:
    """Write :func:`results_table` to ``book/results/results-table.md`` (atomically)."""
    path = Layout(Path(root)).results / RESULTS_TABLE
    atomic_write_text(path, results_table(root))
    return path


# --------------------------------------------------------------------------- build
def build_book(root=None, builddir="_build", out=None) -> int:
    """Build the site with jupyter-book (warnings are errors); returns an exit code.

    The HTML goes to ``<builddir>/html`` (``builddir`` relative to the root). Fails, before
    building, when an executed notebook listed in ``_toc.yml`` is missing.
    """
    out = out or sys.stdout
    try:
        root = Path(root).resolve() if root is not None else find_root()
        missing_results, missing_pages = _missing_toc_files(root)
        if missing_results:
            raise ReproduceError(
                "executed notebooks listed in _toc.yml are missing: "
                + ", ".join(f"{f}.ipynb" for f in missing_results)
                + "\nrun `lowrank-learning reproduce` first (or `lowrank-learning reproduce --profile quick`)"
            )
        if missing_pages:
            raise ReproduceError("pages listed in _toc.yml are missing: " + ", ".join(missing_pages))
        ensure_mathjax(Layout(root).static)
        write_results_table(root)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    build = (root / builddir).resolve()
    outdir = build / "html"
    # Always from scratch: an incremental Sphinx build does not repeat the warnings of unchanged
    # pages (so -W would pass), and viewcode keeps stale _modules pages.
    for stale in (outdir, build / ".doctrees", build / "jupyter_execute"):
        shutil.rmtree(stale, ignore_errors=True)
    result = build_sphinx(
        root, outdir, use_external_toc=True, noconfig=True, path_config=str(root / "_config.yml"),
        confoverrides={"external_toc_path": (root / "_toc.yml").as_posix(), "latex_individualpages": False},
        builder="html", warningiserror=True, keep_going=True, freshenv=True,
    )
    if result != 0:
        print(f"error: the book build failed ({result}); warnings count as errors", file=sys.stderr)
        return 1
    print(f"book built: {outdir / 'index.html'}", file=out)
    return 0
