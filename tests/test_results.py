"""Chapters' machine-readable results, the intro's results table, and the notebook conventions.

- :func:`lowrank_learning.save_results` / :func:`load_results` against the JSON they must write;
- the results table that ``lowrank-learning book`` generates from ``book/results/*.json``;
- every notebook listed in ``notebooks/profiles.yml`` follows the house conventions (title and
  claim, the Colab install cell first, a parameters cell, ``save_results`` last, drawing-only
  cells tagged ``hide-input`` and computing cells visible).
"""

from __future__ import annotations

import ast
import re
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

import lowrank_learning as ll
from lowrank_learning import results as results_mod
from lowrank_learning.reproduce import book
from lowrank_learning.reproduce.colab import colab_cell

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- save/load
def test_save_results_writes_plain_json(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("LOWRANK_PROFILE", "quick")
    path = ll.save_results("e9_demo", {
        "a": np.float32(0.5), "n": np.int64(3), "bad": float("nan"), "inf": np.inf,
        "v": np.arange(3.0), "m": [[1, 2], [3, np.nan]], "none": None, "label": "x",
    }, parameters={"N": np.int32(200), "eta": 5e-3})
    assert path == tmp_path / "out" / "e9_demo.json"
    doc = json.loads(path.read_text())  # strict JSON: NaN/inf were replaced
    prov = doc.pop("provenance")  # the environment of this process (tests/test_provenance.py)
    assert prov["packages"]["lowrank-learning"] == ll.__version__ and prov["accelerator"]["platform"]
    assert doc == {
        "notebook": "e9_demo", "profile": "quick", "parameters": {"N": 200, "eta": 5e-3},
        "results": {"a": 0.5, "n": 3, "bad": None, "inf": None, "v": [0.0, 1.0, 2.0],
                    "m": [[1, 2], [3, None]], "none": None, "label": "x"},
        "headline": ["a", "n", "bad", "inf"],  # default: the first four
        "verdicts": {},
    }
    assert ll.load_results("e9_demo", tmp_path / "out") == dict(doc, provenance=prov)
    assert ll.load_results("e9_demo") == dict(doc, provenance=prov)  # default: $LOWRANK_RESULTS_DIR
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e9_demo.json"]  # no temporaries
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_results_defaults(tmp_path, monkeypatch):
    """Outside ``reproduce``: profile "interactive", book/results/interactive under the repository
    root (never the files the book's results table reads)."""
    monkeypatch.delenv("LOWRANK_RESULTS_DIR", raising=False)
    monkeypatch.delenv("LOWRANK_PROFILE", raising=False)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "profiles.yml").write_text("x: {}\n")
    monkeypatch.chdir(tmp_path / "notebooks")
    path = ll.save_results("x", {"a": 1})
    assert path == tmp_path / "book" / "results" / "interactive" / "x.json"
    assert json.loads(path.read_text())["profile"] == "interactive"


@pytest.mark.parametrize("notebook, results, match", [
    ("", {"a": 1}, "notebook must be a plain name"),
    ("../x", {"a": 1}, "notebook must be a plain name"),
    (".hidden", {"a": 1}, "notebook must be a plain name"),
    (3, {"a": 1}, "notebook must be a plain name"),
    ("x", {}, "non-empty dict"),
    ("x", [1, 2], "non-empty dict"),
    ("x", {"f": object()}, r"results\.f must be a number"),
])
def test_save_results_rejects_bad_input(tmp_path, monkeypatch, notebook, results, match):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.save_results(notebook, results)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("headline", [["b"], [], ["a"] * 5, "a", [1]])
def test_save_results_rejects_bad_headline(tmp_path, monkeypatch, headline):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ll.InvalidParameterError, match="headline"):
        ll.save_results("x", {"a": 1}, headline=headline)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- results table
def _repo(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "profiles.yml").write_text(
        'e1_a:\n  title: "E1 First"\n  quick: {}\n  paper: {}\n'
        'e2_b:\n  title: "E2 Second | with a bar"\n  quick: {}\n  paper: {}\n')
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/results/e1_a\n  - file: book/results/e2_b\n")
    res = tmp_path / "book" / "results"
    res.mkdir(parents=True)
    return tmp_path


def _write(res: Path, name: str, results: dict, profile="quick"):
    (res / f"{name}.json").write_text(json.dumps({"notebook": name, "profile": profile,
                                                  "parameters": {}, "results": results}))


def _rows(md: str) -> list[list[str]]:
    lines = md.strip().splitlines()
    assert lines[0] == "| chapter | quantity | value |" and lines[1] == "|---|---|---|"
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def test_results_table(tmp_path):
    root = _repo(tmp_path)
    res = root / "book" / "results"
    _write(res, "e1_a", {"err": 1.23456e-12, "epochs": 42, "never": None, "v": [1.0, 2.5],
                         "long": list(range(10)), "sixth": 6})
    (res / "e1_a.ipynb").write_text("{}")
    _write(res, "e7_new", {"x": 0.5}, profile="paper")  # a chapter not in the registry yet
    (res / "e1_a.stamp.json").write_text("{}")            # not a results file
    rows = _rows(book.results_table(root))
    assert rows == [
        ["{doc}`E1 First </book/results/e1_a>` (quick profile)", "`err`", "1.23e-12"],
        ["", "`epochs`", "42"],
        ["", "`never`", "n/a"],
        ["", "`v`", "[1, 2.5]"],  # no headline in the file: the first four
        ["", "...", "2 more in `book/results/e1_a.json`"],
        ["E2 Second \\| with a bar", "not run", ""],  # no JSON; not executed: no link
        ["e7_new (paper profile)", "`x`", "0.5"],     # not in the toc: no link
    ]
    # a chapter's headline picks what the table shows
    doc = json.loads((res / "e1_a.json").read_text())
    doc["headline"] = ["long", "err"]
    (res / "e1_a.json").write_text(json.dumps(doc))
    assert _rows(book.results_table(root))[:3] == [
        ["{doc}`E1 First </book/results/e1_a>` (quick profile)", "`long`", "10 values, 0 ... 9"],
        ["", "`err`", "1.23e-12"],
        ["", "...", "4 more in `book/results/e1_a.json`"],
    ]
    path = book.write_results_table(root)
    assert path == res / "results-table.md" and path.read_text() == book.results_table(root)
    # the generated page is not mistaken for a chapter's results
    assert len(_rows(book.results_table(root))) == 5


def test_results_table_of_this_repository_lists_every_registered_chapter():
    registry = yaml.safe_load((ROOT / "notebooks" / "profiles.yml").read_text())
    md = book.results_table(ROOT)
    for name, entry in registry.items():
        assert entry.get("title", name).replace("|", "\\|") in md


def test_intro_includes_the_results_table():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "{include} results/" + book.RESULTS_TABLE in intro
    assert "```{include} results/" + book.CLAIMS_TABLE in intro


def _claim_rows(md: str) -> list[list[str]]:
    lines = md.strip().splitlines()
    assert lines[:2] == ["| claim | paper | this run measured | verdict |", "|---|---|---|---|"]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln.strip()[1:-1])] for ln in lines[2:]]


def test_claims_table_shows_every_verdict_in_book_order(tmp_path, monkeypatch):
    root = _repo(tmp_path)
    res = root / "book" / "results"
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(res))
    monkeypatch.setenv("LOWRANK_PROFILE", "paper")
    yes = ll.sign_test(np.arange(1.0, 11), claim="relearning is faster").with_figure("Fig. 7c")
    no = ll.mean_test([0.1, -0.2, 0.05, 0.0], claim="a | b", alternative="greater")
    few = ll.sign_test([1.0, 2.0], claim="too few")
    ll.save_results("e1_a", {"x": 1.0}, verdicts={"fast": yes, "bar": no,
                                                   "both": ll.combine("both", {"y": yes, "n": no})})
    (res / "e1_a.ipynb").write_text("{}")
    ll.save_results("e7_new", {"x": 1.0}, verdicts={"few": few})   # not in the registry or the toc
    ll.save_results("e2_b", {"x": 1.0})                             # a chapter without verdicts
    rows = _claim_rows(book.claims_table(root))
    link = "{doc}`e1_a </book/results/e1_a>`, paper)"
    assert rows[0] == [f"relearning is faster ({link}", "Fig. 7c",
                       "5.5 [3, 8]; p = 0.00098; exact sign test (one-sided, > 0), 10 pairs",  # median [bootstrap]
                       "✔ holds"]
    assert rows[1][0] == f"a \\| b ({link}" and rows[1][3] == "✘ does not hold" and rows[1][1] == ""
    assert rows[2][3] == "◐ holds in part" and rows[2][2] == "1 of 2 parts hold"   # no statistic for a combination
    assert rows[3] == ["E2 Second \\| with a bar: no tested claims", "", "", ""]
    assert rows[4] == ["too few (e7_new, paper)", "", rows[4][2], "– not testable at this profile"]
    (res / "e2_b.json").unlink()
    assert _claim_rows(book.claims_table(root))[3] == ["E2 Second \\| with a bar", "", "", "not run"]
    path = book.write_claims_table(root)
    assert path == res / "claims-table.md" and path.read_text() == book.claims_table(root)


# --------------------------------------------------------------------------- conventions
# Generated from pyproject.toml (name, [project.urls] Repository, version): see reproduce/colab.py.
COLAB_CELL = colab_cell(ROOT)

NOTEBOOKS = list(yaml.safe_load((ROOT / "notebooks" / "profiles.yml").read_text()))


def _calls(tree) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def classify(source: str) -> dict:
    """What a code cell does: draws a figure, computes (numbers quoted, cached runs, results)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics
        return {"draws": False, "computes": True}
    calls = _calls(tree)
    fig_glue = num_glue = False
    for c in calls:
        if _name(c) == "glue" and len(c.args) >= 2:
            arg = c.args[1]
            if isinstance(arg, ast.Name) and arg.id.startswith("fig"):
                fig_glue = True
            else:
                num_glue = True
    draws = fig_glue or any(_name(c) in ("subplots", "figure") or _name(c).startswith("plot_") for c in calls)
    computes = (num_glue or any(_name(c) in ("memo", "save_results", "print") for c in calls)
                or any(k.arg == "cache_name" for c in calls for k in c.keywords))
    return {"draws": draws, "computes": computes}


def test_classify():
    assert classify("fig, ax = plt.subplots()\nax.plot(x)\nglue('f', fig, display=False)") == \
        {"draws": True, "computes": False}
    assert classify("r = memo('k', f, 1)\nglue('n', f'{r:.2g}', display=False)")["computes"]
    assert classify("x = run(a, cache_name='e5')") == {"draws": False, "computes": True}
    assert classify("fig = plotting.plot_overlap_grid(a)\nglue('e', err)") == {"draws": True, "computes": True}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_conventions(name):
    nb = nbformat.read(str(ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
    problems = []
    first = nb.cells[0]
    if first.cell_type != "markdown" or not first.source.lstrip().startswith("# "):
        problems.append("the first cell must be markdown with the title (# ...)")
    elif "**claim" not in first.source.lower():
        problems.append("the first cell must state the **Claim**")
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tags = {i: c.metadata.get("tags", []) for i, c in code}
    i0, c0 = code[0]
    if c0.source.strip() != COLAB_CELL or "remove-cell" not in tags[i0]:
        problems.append("the first code cell must be the Colab install cell, tagged remove-cell, exactly as "
                        "in the conventions")
    params = [i for i, _ in code if "parameters" in tags[i]]
    if len(params) != 1:
        problems.append(f"exactly one cell tagged parameters (found {len(params)})")
    last_i, last = code[-1]
    saves = [c for c in _calls(ast.parse(last.source)) if _name(c) == "save_results"] if "save_results" in last.source else []
    if not saves:
        problems.append("the last code cell must call ll.save_results(...)")
    elif not (saves[0].args and isinstance(saves[0].args[0], ast.Constant) and saves[0].args[0].value == name):
        problems.append(f"save_results must be called with the notebook's name {name!r}")
    elif not any(k.arg == "parameters" for k in saves[0].keywords):
        problems.append("save_results must record the parameters (parameters={...})")
    for i, c in code:
        if i in (i0, *params):
            continue
        kind = classify(c.source)
        hidden = "hide-input" in tags[i]
        first_line = c.source.strip().splitlines()[0][:60] if c.source.strip() else ""
        if kind["draws"] and not kind["computes"] and not hidden:
            problems.append(f"cell {i} only draws and must be tagged hide-input: {first_line!r}")
        if hidden and kind["computes"]:
            problems.append(f"cell {i} computes (numbers quoted, cached runs or results) and must stay "
                            f"visible, not hide-input: {first_line!r}")
    assert not problems, f"notebooks/{name}.ipynb:\n  " + "\n  ".join(problems)


def test_results_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path / "staging"))
    assert results_mod.results_dir() == tmp_path / "staging"
