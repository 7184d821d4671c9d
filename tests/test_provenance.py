"""Provenance: what a result was computed with, where it is recorded, and how the book shows it.

- :func:`lowrank_learning.core.provenance.provenance` and ``numeric_environment`` against the
  running process;
- ``lowrank-learning --version``;
- the provenance table that ``lowrank-learning book`` generates into ``book/results/`` for the
  reproducibility chapter, from the chapters' JSON files and stamps.

The cache key (tests/test_cache.py), the chapters' JSON (tests/test_results.py) and the stamps
(tests/test_reproduce.py) are tested with the code that records them.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning import cli
from lowrank_learning.core import provenance
from lowrank_learning.reproduce import book
from lowrank_learning.reproduce.runner import kernel_provenance

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the record
def test_provenance_describes_this_process():
    prov = provenance.provenance()
    assert set(prov) == {"python", "platform", "cpu", "accelerator", "packages"}
    assert prov["python"] == {"version": platform.python_version(), "implementation": platform.python_implementation()}
    assert prov["platform"]["system"] == platform.system() and prov["platform"]["machine"] == platform.machine()
    assert prov["cpu"]["cores"] == os.cpu_count() and isinstance(prov["cpu"]["model"], str) and prov["cpu"]["model"]
    assert 1 <= prov["cpu"]["usable_cores"] <= os.cpu_count()
    devices = jax.devices()
    assert prov["accelerator"] == {"platform": devices[0].platform, "kind": devices[0].device_kind,
                                   "count": len(devices)}
    assert list(prov["packages"]) == list(provenance.PACKAGES)
    assert {"lowrank-learning", "jax", "jaxlib", "numpy", "scipy", "numba", "optax", "scikit-learn"} \
        == set(prov["packages"])
    for name, version in prov["packages"].items():
        assert version == metadata.version(name)
    assert prov["packages"]["jax"] == jax.__version__ and prov["packages"]["numpy"] == np.__version__
    assert json.loads(json.dumps(prov, allow_nan=False)) == prov  # plain JSON


def test_provenance_records_nothing_personal():
    text = json.dumps(provenance.provenance())
    for private in (sys.executable, str(Path.home()), os.getcwd()):
        assert private not in text


def test_provenance_without_the_accelerator_does_not_ask_jax(monkeypatch):
    def no_devices():
        raise AssertionError("jax.devices() called")

    monkeypatch.setattr(provenance.jax, "devices", no_devices)
    assert provenance.provenance(accelerator_kind=False)["accelerator"] is None
    assert "accelerator" not in provenance.numeric_environment(accelerator_kind=False)


def test_a_backend_that_fails_is_recorded(monkeypatch):
    def broken():
        raise RuntimeError("Unable to initialize backend 'cuda': no GPU\nmore detail")

    monkeypatch.setattr(provenance.jax, "devices", broken)
    assert provenance.provenance()["accelerator"] == {
        "platform": None, "error": "Unable to initialize backend 'cuda': no GPU"}


def test_numeric_environment():
    env = provenance.numeric_environment()
    assert list(env)[:5] == list(provenance.NUMERIC_PACKAGES) == ["jax", "jaxlib", "numpy", "scipy", "numba"]
    assert env["system"] == platform.system() and env["machine"] == platform.machine()
    assert env["accelerator"] == f"{jax.devices()[0].platform}/{jax.devices()[0].device_kind}"


def test_missing_package_is_none():
    assert provenance.package_version("surely-not-an-installed-distribution") is None
    assert provenance.package_versions(["numpy", "surely-not-an-installed-distribution"]) == {
        "numpy": np.__version__, "surely-not-an-installed-distribution": None}


def test_version_flag(capsys):
    assert provenance.lowrank_version() == ll.__version__ == metadata.version("lowrank-learning")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"lowrank-learning {ll.__version__}"


# --------------------------------------------------------------------------- where it is read
def test_kernel_provenance_prefers_the_chapter_json(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps({"results": {"x": 1}, "provenance": {"python": {"version": "k"}}}))
    assert kernel_provenance(tmp_path, "good") == ({"python": {"version": "k"}}, "kernel")
    prov, origin = kernel_provenance(tmp_path, "other")  # no results file: this process, no accelerator
    assert origin == "runner" and prov["accelerator"] is None
    assert prov["packages"] == provenance.package_versions()


# --------------------------------------------------------------------------- the book's table
def _prov(jax_version="0.4.35", kind="cpu", platform_="cpu"):
    return {"python": {"version": "3.12.1", "implementation": "CPython"},
            "platform": {"system": "Linux", "release": "6.1", "machine": "x86_64"},
            "cpu": {"model": "Some CPU | model", "cores": 8, "usable_cores": 4},
            "accelerator": {"platform": platform_, "kind": kind, "count": 1},
            "packages": {"lowrank-learning": "0.1.0", "jax": jax_version, "numba": None}}


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "profiles.yml").write_text(
        "".join(f'{n}:\n  title: "{n.upper()}"\n  quick: {{}}\n  paper: {{}}\n' for n in ("e1", "e2", "e3", "e4")))
    (tmp_path / "book" / "results").mkdir(parents=True)
    return tmp_path


def _table(md: str) -> dict[str, list[str]]:
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    assert set(lines[1]) == {"|", "-"}
    rows = {}
    for ln in [lines[0]] + lines[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def test_provenance_table_groups_chapters_by_environment(tmp_path):
    root = _repo(tmp_path)
    res = root / "book" / "results"
    for name in ("e1", "e2"):
        (res / f"{name}.json").write_text(json.dumps({"results": {"x": 1}, "provenance": _prov()}))
    gpu = _prov("0.4.36", "NVIDIA H200", "gpu")
    (res / "e3.stamp.json").write_text(json.dumps({"provenance": gpu}))  # no JSON: the stamp's
    md = book.provenance_table(root)
    rows = _table(md)
    assert rows[""] == ["environment 1", "environment 2"]
    assert rows["chapters"] == ["`e1`, `e2`", "`e3`"]
    assert rows["Python"] == ["3.12.1 (CPython)"] * 2
    assert rows["operating system"] == ["Linux 6.1 (x86_64)"] * 2
    assert rows["CPU"] == ["Some CPU \\| model, 8 cores (4 usable)"] * 2
    assert rows["accelerator"] == ["none (JAX on the CPU)", "gpu: NVIDIA H200 × 1"]
    assert rows["`jax`"] == ["0.4.35", "0.4.36"] and rows["`numba`"] == ["not installed"] * 2
    assert "No environment recorded (not run, or run before environments were recorded): `e4`." in md


def test_provenance_table_of_one_environment(tmp_path):
    root = _repo(tmp_path)
    res = root / "book" / "results"
    unqueried = dict(_prov(), accelerator=None)
    for name in ("e1", "e2", "e3", "e4"):
        (res / f"{name}.json").write_text(json.dumps({"results": {"x": 1}, "provenance": unqueried}))
    (res / "e5_new.json").write_text(json.dumps({"results": {"x": 1}, "provenance": unqueried}))  # not registered
    rows = _table(book.provenance_table(root))
    assert rows[""] == ["environment"] and rows["chapters"] == ["all 5 chapters"]
    assert rows["accelerator"] == ["not recorded"]
    path = book.write_provenance_table(root)
    assert path == res / book.PROVENANCE_TABLE and path.read_text() == book.provenance_table(root)
    # the generated page is not mistaken for a chapter's results
    assert "provenance-table" not in book.results_table(root)


def test_provenance_table_before_any_run(tmp_path):
    assert "No chapter has recorded its environment yet" in book.provenance_table(_repo(tmp_path))


def test_build_book_writes_the_provenance_table(tmp_path, monkeypatch):
    root = _repo(tmp_path)
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (root / "book" / "results" / "e1.json").write_text(json.dumps({"results": {"x": 1}, "provenance": _prov()}))
    built = []
    monkeypatch.setattr(book, "ensure_mathjax", lambda static: None)
    monkeypatch.setattr(book, "build_sphinx", lambda *a, **k: built.append(a) or 0)
    assert book.build_book(root=root, out=io.StringIO()) == 0
    assert built
    table = root / "book" / "results" / book.PROVENANCE_TABLE
    assert table.read_text() == book.provenance_table(root) and "`e1`" in table.read_text()


def test_reproducibility_chapter_includes_the_provenance_table():
    text = (ROOT / "book" / "reproducibility.md").read_text()
    assert "```{include} results/" + book.PROVENANCE_TABLE in text
    assert "lowrank-learning cache prune" in text
    # generated at build time, never checked in
    assert "book/results/" in (ROOT / ".gitignore").read_text().splitlines()
