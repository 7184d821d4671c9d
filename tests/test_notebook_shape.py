"""The shape of every chapter page, checked on the notebooks' source (nothing is executed).

Every notebook listed in ``notebooks/profiles.yml`` is a page of the book with one shape: the
claim, the parameters, the one or two package calls, the figure, the numbers and the verdict in
prose. This module checks what can be read off the source:

- no cell that shows on the page (not tagged ``remove-cell`` or ``remove-input``) consists only
  of ``glue(...)`` / ``print(...)`` calls (bookkeeping belongs in a removed cell or the package);
- the style module is used: ``ll.plotting.use_page_style()`` once, figures made with
  ``ll.plotting.page_figure`` (no ``figsize=`` of their own), and a cell that glues a figure closes
  it, so that it is shown once;
- every cell that makes a figure is followed (removed cells skipped) by its caption, a markdown
  cell that names the paper figure it reproduces ("paper Fig. 3b") or says "beyond the paper";
- the page ends with a "Headline numbers" section linking to the introduction's claims table.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = list(yaml.safe_load((NOTEBOOKS / "profiles.yml").read_text(encoding="utf-8")))
HIDDEN = {"remove-cell", "remove-input"}
FIGURE_CALL = re.compile(r"\b(page_figure|subplots|plt\.figure|plot_overlap_grid)\s*\(")
GLUED_FIGURE = re.compile(r"\bglue\(\s*[\"'][^\"']+[\"']\s*,\s*fig\w*\s*[,)]")
CAPTION = re.compile(r"paper Fig(ure|s)?\.?\s*\d|beyond the paper", re.IGNORECASE)
CLAIMS_LINK = re.compile(r"\{ref\}`[^`]*<?claims-table>?`")


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _python(cell: dict) -> str:
    """The cell's code with IPython magics and shell lines blanked out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in _source(cell).splitlines())


def _is_glue_or_print(node: ast.stmt) -> bool:
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    f = node.value.func
    return (isinstance(f, ast.Name) and f.id in ("glue", "print")) or (isinstance(f, ast.Attribute) and f.attr == "glue")


def _plain_name(target: ast.expr) -> bool:
    return isinstance(target, ast.Name) or (isinstance(target, ast.Tuple) and all(map(_plain_name, target.elts)))


def _bookkeeping(body: list[ast.stmt], top: bool) -> bool:
    """Only glue/print calls, loops and branches over them, and (inside those) plain assignments."""
    for node in body:
        if _is_glue_or_print(node):
            continue
        if isinstance(node, (ast.For, ast.If)) and _bookkeeping(node.body + node.orelse, top=False):
            continue
        if not top and isinstance(node, ast.Assign) and all(_plain_name(t) for t in node.targets):
            continue  # a loop variable's helper (key = ...), not a stored result (verdicts[k] = ...)
        return False
    return True


def glue_only(code: str) -> bool:
    """Whether ``code`` consists only of ``glue``/``print`` calls (and loops over them)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Expr) and _is_glue_or_print(n)]
    return bool(calls) and _bookkeeping(tree.body, top=True)


def makes_figure(code: str) -> bool:
    return bool(FIGURE_CALL.search(code))


def shape_problems(cells: list[dict]) -> list[str]:
    """What in a notebook's cells breaks the page shape (empty: none)."""
    problems = []
    code_cells = [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    style_calls = sum(_source(c).count("use_page_style(") for _, c in code_cells)
    if style_calls != 1:
        problems.append(f"ll.plotting.use_page_style() is called {style_calls} times (once, after the imports)")
    for i, c in code_cells:
        if _tags(c) & {"remove-cell"}:
            continue
        code = _python(c)
        if not _tags(c) & HIDDEN and glue_only(code):
            problems.append(f"cell {i} shows on the page and only glues or prints: tag it remove-cell")
        if re.search(r"\bfigsize\s*=", code):
            problems.append(f"cell {i} sets its own figsize: use ll.plotting.page_figure")
        if re.search(r"\bplt\.subplots\s*\(", code):
            problems.append(f"cell {i} calls plt.subplots: use ll.plotting.page_figure")
        if GLUED_FIGURE.search(code) and "plt.close(" not in code:
            problems.append(f"cell {i} glues a figure without plt.close: it is rendered twice")
        if makes_figure(code):
            following = [d for d in cells[i + 1:] if not (d["cell_type"] == "code" and _tags(d) & {"remove-cell"})]
            caption = following[0] if following else None
            if caption is None or caption["cell_type"] != "markdown" or not CAPTION.search(_source(caption)):
                problems.append(f"cell {i} makes a figure, and the next cell is not a caption naming "
                                "'paper Fig. ...' or 'beyond the paper'")
    headline = [k for k, c in enumerate(cells) if c["cell_type"] == "markdown"
                and re.search(r"^#+\s*Headline numbers", _source(c), re.MULTILINE)]
    if not headline:
        problems.append("no 'Headline numbers' section")
    elif not CLAIMS_LINK.search(_source(cells[headline[-1]])):
        problems.append("the 'Headline numbers' section does not link to the claims table ({ref}`claims-table`)")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_page_shape(name):
    problems = shape_problems(_cells(name))
    assert not problems, f"notebooks/{name}.ipynb:\n  " + "\n  ".join(problems)


# ------------------------------------------------------------------ the checks themselves
def _code(src, tags=()):
    return {"cell_type": "code", "source": src, "metadata": {"tags": list(tags)}}


def _md(src):
    return {"cell_type": "markdown", "source": src, "metadata": {}}


GOOD = [
    _md("# Title\n\n**Claim.** ..."),
    _code("N = 3", ["parameters"]),
    _code("import lowrank_learning as ll\nll.plotting.use_page_style()"),
    _code("x = ll.compute(N)\nglue('a', x, display=False)"),
    _code("glue('b', 1, display=False)\nfor k in range(2):\n    v = k\n    glue(f'c{k}', v)", ["remove-cell"]),
    _code("fig, ax = ll.plotting.page_figure()\nax.plot([1])\nglue('f', fig, display=False)\nplt.close(fig)",
          ["hide-input"]),
    _code("print('skipped: removed')", ["remove-cell"]),
    _md("```{glue:figure} f\nThe loss (paper Fig. 3b).\n```"),
    _md("## Headline numbers\n\nSee {ref}`the claims table <claims-table>`."),
]


def test_good_page_passes():
    assert shape_problems(GOOD) == []


@pytest.mark.parametrize("change, expected", [
    (lambda c: c.__setitem__(4, _code("glue('b', 1)\nprint(2)")), "only glues or prints"),
    (lambda c: c.__setitem__(4, _code("for k in range(2):\n    v = k\n    glue(f'c{k}', v)")), "only glues or prints"),
    (lambda c: c.__setitem__(5, _code("fig, ax = plt.subplots(figsize=(12, 4))\nglue('f', fig)\nplt.close(fig)")),
     "figsize"),
    (lambda c: c.__setitem__(5, _code("fig, ax = ll.plotting.page_figure()\nglue('f', fig, display=False)")),
     "rendered twice"),
    (lambda c: c.__setitem__(7, _md("```{glue:figure} f\nThe loss.\n```")), "next cell is not a caption"),
    (lambda c: c.__setitem__(8, _md("## Headline numbers\n\nWritten to a file.")), "claims table"),
    (lambda c: c.__setitem__(2, _code("import lowrank_learning as ll")), "use_page_style"),
])
def test_bad_pages_are_caught(change, expected):
    cells = [dict(c) for c in GOOD]
    change(cells)
    problems = shape_problems(cells)
    assert any(expected in p for p in problems), problems


def test_glue_only_is_not_computation():
    assert glue_only("glue('a', 1)\nprint(x)")
    assert not glue_only("x = f(1)\nglue('a', x)")
    assert not glue_only("fig, ax = page_figure()\nglue('f', fig)")
    assert not glue_only("# a comment only")
    assert not glue_only("for k in ks:\n    verdicts[k] = test(k)\n    glue(k, verdicts[k])")


def test_injected_parameters_are_collapsed_on_the_page(tmp_path):
    """The executed notebook's injected-parameters cell gets hide-input before the book is built;
    other cells and pages outside book/results are left alone."""
    from lowrank_learning.reproduce.book import collapse_parameters

    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/results/demo\n  - file: book/other\n", encoding="utf-8")
    results = tmp_path / "book" / "results"
    results.mkdir(parents=True)
    cells = [_code("N = 1", ["parameters", "hide-input"]), _code("N = 2", ["injected-parameters"]), _code("x = N")]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (results / "demo.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (tmp_path / "book" / "other.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert collapse_parameters(tmp_path) == [results / "demo.ipynb"]
    tags = [c["metadata"].get("tags", []) for c in json.loads((results / "demo.ipynb").read_text())["cells"]]
    assert tags == [["parameters", "hide-input"], ["injected-parameters", "hide-input"], []]
    assert json.loads((tmp_path / "book" / "other.ipynb").read_text()) == nb
    assert collapse_parameters(tmp_path) == []  # already collapsed: nothing rewritten


def test_figures_are_numbered_per_page():
    """reproduce.numbering: each page's figures (and tables, code blocks) count from 1 in the
    order Sphinx numbered them across the book."""
    from lowrank_learning.reproduce.numbering import per_page_numbers

    page = {"figure": {"fig-b": (39,), "fig-a": (38,), "fig-c": (41,)}, "table": {"tab": (7,)}}
    assert per_page_numbers(page) == {"figure": {"fig-a": (1,), "fig-b": (2,), "fig-c": (3,)},
                                      "table": {"tab": (1,)}}
    assert per_page_numbers({}) == {}
