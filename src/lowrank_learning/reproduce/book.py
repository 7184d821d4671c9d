"""Build the jupyter-book site from the executed notebooks, with the results and provenance tables.

Before Sphinx runs, :func:`write_claims_table` turns the ``verdicts`` of every
``book/results/<notebook>.json`` (written by :func:`~lowrank_learning.save_results`) into the
claims table, ``book/results/claims-table.md``: one row per tested claim, in book order, with the
paper's figure, what the run measured (statistic, interval, p-value and test) and the verdict.
:func:`write_results_table` writes every chapter's headline numbers to
``book/results/results-table.md``. The introduction includes both. Notebooks listed in
``notebooks/profiles.yml`` without a JSON file show as "not run"; JSON files of notebooks not
(yet) in the registry are listed too, so a new chapter appears without editing anything.

:func:`write_provenance_table` likewise writes ``book/results/provenance-table.md``, which the
reproducibility chapter includes: the environment (Python, operating system, CPU, accelerator,
package versions) each chapter's kernel recorded in its JSON, or failing that in its stamp,
with the chapters that share an environment in one column. Both files are generated at every
build under ``book/results/``, which is not in git.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path


from ..results import MAX_HEADLINE
from .files import atomic_write_text, read_json
from .layout import RESULTS_DIR, Layout, ReproduceError, find_root, optional
from .mathjax import ensure_mathjax
from .profiles import load_profiles

RESULTS_TABLE = "results-table.md"  # not an identifier, so never a notebook's name
CLAIMS_TABLE = "claims-table.md"  # likewise
PROVENANCE_TABLE = "provenance-table.md"  # likewise


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


def build_sphinx(*args, **kwargs):
    """jupyter-book's Sphinx build (from the ``book`` extra, imported when a book is built)."""
    return optional("jupyter_book.sphinx").build_sphinx(*args, **kwargs)


def toc_files(root: Path) -> list[str]:
    """Every page of ``_toc.yml`` (paths from the root, as written there)."""

    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise ReproduceError(f"{toc_path} not found")
    return _toc_files(optional("yaml").safe_load(toc_path.read_text(encoding="utf-8")))


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


def _chapters(layout: Layout) -> tuple[dict, list[str]]:
    """(the registry, or {} when it cannot be read; the chapters: the registry's in book order,
    then those with a results file that are not in the registry)."""
    try:
        registry = load_profiles(layout.profiles)
    except ReproduceError:
        registry = {}
    names = list(registry)
    names += sorted(p.stem for p in layout.results.glob("*.json")
                    if p.stem not in registry and not p.name.startswith(".") and ".stamp" not in p.name)
    return registry, names


def _linked_pages(root: Path) -> set[str]:
    """The pages ``book/results/<name>`` that are in the table of contents and executed."""
    try:
        pages = {Path(f).with_suffix("").as_posix() for f in toc_files(root)}
    except ReproduceError:
        return set()
    return {p for p in pages if (Path(root) / f"{p}.ipynb").is_file()}


def results_table(root: Path) -> str:
    """The markdown of the results table (see the module docstring)."""

    layout = Layout(Path(root))
    registry, names = _chapters(layout)
    pages = _linked_pages(root)
    lines = ["| chapter | quantity | value |", "|---|---|---|"]
    for name in names:
        title = registry.get(name, {}).get("title", name)
        page = f"{RESULTS_DIR.as_posix()}/{name}"
        chapter = f"{{doc}}`{_cell(title)} </{page}>`" if page in pages else _cell(title)
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


VERDICT_MARKS = {
    "holds": "✔ holds",
    "holds in part": "◐ holds in part",
    "does not hold": "✘ does not hold",
    "not testable at this profile": "– not testable at this profile",
}


def _measured(v: dict) -> str:
    """What the run measured, in one cell: statistic [interval], p-value, test."""
    bits = []
    stat = v.get("statistic")
    if isinstance(stat, (int, float)) and not isinstance(stat, bool) and v.get("parts") == {}:
        text = _fmt(float(stat))
        iv = v.get("interval")
        if isinstance(iv, list) and len(iv) == 2:
            text += f" [{_fmt(iv[0])}, {_fmt(iv[1])}]"
        bits.append(text)
    p = v.get("p")
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        bits.append(f"p = {p:.2g}")
    if v.get("test"):
        bits.append(str(v["test"]))
    return "; ".join(bits)


def claims_table(root: Path) -> str:
    """The markdown of the claims table (see the module docstring): columns claim (linked to
    its chapter), paper figure, measured, verdict; a chapter without a results file shows as
    "not run", one without verdicts as "no tested claims"."""

    layout = Layout(Path(root))
    registry, names = _chapters(layout)
    pages = _linked_pages(root)
    lines = ["| claim | paper | this run measured | verdict |", "|---|---|---|---|"]
    for name in names:
        title = registry.get(name, {}).get("title", name)
        page = f"{RESULTS_DIR.as_posix()}/{name}"
        linked = page in pages
        doc = read_json(layout.results / f"{name}.json")
        if not isinstance(doc, dict):
            lines.append(f"| {_cell(title)} | | | not run |")
            continue
        verdicts = doc.get("verdicts") if isinstance(doc.get("verdicts"), dict) else {}
        chapter = f"{{doc}}`{_cell(title)} </{page}>`" if linked else _cell(title)
        if not verdicts:
            lines.append(f"| {chapter}: no tested claims | | | |")
            continue
        profile = _cell(doc.get("profile", "?"))
        for v in verdicts.values():
            if not isinstance(v, dict):
                continue
            claim = _cell(v.get("claim", "?"))
            claim = f"{claim} ({{doc}}`{name} </{page}>`, {profile})" if linked else f"{claim} ({name}, {profile})"
            mark = VERDICT_MARKS.get(v.get("verdict"), _cell(v.get("verdict", "?")))
            lines.append(f"| {claim} | {_cell(v.get('figure') or '')} | {_cell(_measured(v))} | {mark} |")
    return "\n".join(lines) + "\n"


def write_claims_table(root: Path) -> Path:
    """Write :func:`claims_table` to ``book/results/claims-table.md`` (atomically)."""
    path = Layout(Path(root)).results / CLAIMS_TABLE
    atomic_write_text(path, claims_table(root))
    return path


def write_results_table(root: Path) -> Path:
    """Write :func:`results_table` to ``book/results/results-table.md`` (atomically)."""
    path = Layout(Path(root)).results / RESULTS_TABLE
    atomic_write_text(path, results_table(root))
    return path


# --------------------------------------------------------------------------- provenance table
def chapter_provenance(layout: Layout, name: str) -> dict | None:
    """The provenance a chapter's last successful run recorded: its results JSON's (written in
    the kernel), else its stamp's, else None."""
    for path in (layout.results / f"{name}.json", layout.results / f"{name}.stamp.json"):
        doc = read_json(path)
        if isinstance(doc, dict) and isinstance(doc.get("provenance"), dict):
            return doc["provenance"]
    return None


def _accelerator_text(acc) -> str:
    if not isinstance(acc, dict):
        return "not recorded"
    if acc.get("platform") is None:
        return f"unavailable ({acc.get('error', 'no backend')})"
    if acc.get("platform") == "cpu":
        return "none (JAX on the CPU)"
    count = acc.get("count")
    return f"{acc.get('platform')}: {acc.get('kind', '?')}" + (f" × {count}" if isinstance(count, int) else "")


def _environment_rows(prov: dict) -> list[tuple[str, str]]:
    """(quantity, value) rows of one recorded provenance."""
    py = prov.get("python") or {}
    plat = prov.get("platform") or {}
    cpu = prov.get("cpu") or {}
    cores = cpu.get("cores")
    usable = cpu.get("usable_cores")
    core_text = "" if cores is None else f", {cores} cores" + (
        f" ({usable} usable)" if usable is not None and usable != cores else "")
    rows = [
        ("Python", f"{py.get('version', '?')} ({py.get('implementation', '?')})"),
        ("operating system", f"{plat.get('system', '?')} {plat.get('release', '')} ({plat.get('machine', '?')})"
                             .replace("  ", " ")),
        ("CPU", f"{cpu.get('model', '?')}{core_text}"),
        ("accelerator", _accelerator_text(prov.get("accelerator"))),
    ]
    for package, version in (prov.get("packages") or {}).items():
        rows.append((f"`{package}`", version if version is not None else "not installed"))
    return rows


def provenance_table(root: Path) -> str:
    """The markdown of the provenance table (see the module docstring): one column per distinct
    environment, headed by the chapters computed in it."""
    layout = Layout(Path(root))
    _, names = _chapters(layout)
    groups: list[tuple[dict, list[str]]] = []
    unrecorded = []
    for name in names:
        prov = chapter_provenance(layout, name)
        if prov is None:
            unrecorded.append(name)
            continue
        for recorded, members in groups:
            if recorded == prov:
                members.append(name)
                break
        else:
            groups.append((prov, [name]))
    if not groups:
        return ("No chapter has recorded its environment yet: run `lowrank-learning reproduce`, "
                "then `lowrank-learning book`.\n")
    columns = [_environment_rows(prov) for prov, _ in groups]
    quantities = []
    for rows in columns:
        quantities += [q for q, _ in rows if q not in quantities]
    if len(groups) == 1:
        header = ["", "environment"]
        chapters = [f"all {len(groups[0][1])} chapters" if not unrecorded else
                    ", ".join(f"`{n}`" for n in groups[0][1])]
    else:
        header = [""] + [f"environment {i + 1}" for i in range(len(groups))]
        chapters = [", ".join(f"`{n}`" for n in members) for _, members in groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             "| chapters | " + " | ".join(_cell(c) for c in chapters) + " |"]
    for q in quantities:
        values = [dict(rows).get(q, "not recorded") for rows in columns]
        lines.append(f"| {_cell(q)} | " + " | ".join(_cell(v) for v in values) + " |")
    text = "\n".join(lines) + "\n"
    if unrecorded:
        text += ("\nNo environment recorded (not run, or run before environments were recorded): "
                 + ", ".join(f"`{n}`" for n in unrecorded) + ".\n")
    return text


def write_provenance_table(root: Path) -> Path:
    """Write :func:`provenance_table` to ``book/results/provenance-table.md`` (atomically)."""
    path = Layout(Path(root)).results / PROVENANCE_TABLE
    atomic_write_text(path, provenance_table(root))
    return path


# --------------------------------------------------------------------------- parameters collapsed
COLLAPSED = "hide-input"


def collapse_parameters(root: Path) -> list[Path]:
    """Collapse the parameters on every executed result page: papermill's ``injected-parameters``
    cell (the values the run used) gets the tag ``hide-input``, as the notebooks' own ``parameters``
    cells have, so that a page opens on its claim and figure with the parameters a click away.
    Returns the notebooks that were changed (rewritten atomically; the source notebooks and
    their stamps are untouched)."""
    changed = []
    for f in toc_files(Path(root)):
        path = Path(root) / f"{Path(f).with_suffix('').as_posix()}.ipynb"
        if not Path(f).as_posix().startswith(RESULTS_DIR.as_posix() + "/") or not path.is_file():
            continue
        nb = read_json(path)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            continue
        dirty = False
        for cell in nb["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if "injected-parameters" in tags and COLLAPSED not in tags:
                cell["metadata"]["tags"] = [*tags, COLLAPSED]
                dirty = True
        if dirty:
            atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


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
        collapse_parameters(root)
        write_results_table(root)
        write_claims_table(root)
        write_provenance_table(root)
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
