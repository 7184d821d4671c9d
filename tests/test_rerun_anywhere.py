"""Rerunning the companion anywhere: where the project lives, Colab, Binder, conda, citing.

``pyproject.toml`` is the one source: its ``[project.urls] Repository`` (read by
:func:`lowrank_learning.reproduce.launch.repository_url`) and version place the book's launch
links and the notebooks' Colab install cell; its dependencies and extras are what
``environment.yml`` and ``binder/postBuild`` install; ``CITATION.cff`` names its version and URL.
The slow test installs the package the way the Colab cell does, into a fresh virtual environment
outside the repository, and runs a chapter there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from lowrank_learning.reproduce import ReproduceError, colab, launch

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
REPOSITORY = PROJECT["urls"]["Repository"]
VERSION = PROJECT["version"]
# What a chapter needs: the runtime dependencies and these extras (environment.yml, binder/).
CHAPTER_EXTRAS = ("notebooks", "lab")
# pyproject name -> conda-forge name, where they differ.
CONDA_NAMES: dict[str, str] = {}
# Only for the tests (the dev extra, and the book extra's browser test): never in a user's environment.
DEV_ONLY = {canonicalize_name(Requirement(r).name) for r in EXTRAS["dev"]} | {"playwright"}


def _requirements(lines) -> dict[str, SpecifierSet]:
    reqs = {}
    for line in lines:
        r = Requirement(line)
        reqs[canonicalize_name(r.name)] = r.specifier
    return reqs


def _chapter_requirements() -> dict[str, SpecifierSet]:
    lines = list(PROJECT["dependencies"])
    for extra in CHAPTER_EXTRAS:
        lines += EXTRAS[extra]
    return _requirements(lines)


# --------------------------------------------------------------------------- where the project lives
def test_repository_url_and_release_ref_come_from_pyproject():
    assert launch.repository_url(ROOT) == REPOSITORY.rstrip("/")
    assert launch.project_version(ROOT) == VERSION
    assert launch.release_ref(ROOT) == f"v{VERSION}"
    assert launch.project_name(ROOT) == PROJECT["name"]


def test_repository_url_errors_name_the_file(tmp_path):
    with pytest.raises(ReproduceError, match="pyproject.toml not found"):
        launch.repository_url(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0"\n')
    with pytest.raises(ReproduceError, match=r"\[project.urls\] Repository"):
        launch.repository_url(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(ReproduceError, match="not valid TOML"):
        launch.project_version(tmp_path)


def test_config_yml_urls_equal_pyproject():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"].rstrip("/") == REPOSITORY.rstrip("/"), \
        "_config.yml repository.url must equal pyproject.toml's [project.urls] Repository"
    sphinx = config.get("sphinx", {}).get("config", {})
    if sphinx.get("lowrank_repository"):
        assert sphinx["lowrank_repository"].rstrip("/") == REPOSITORY.rstrip("/")


def test_launch_links_default_to_pyproject_and_the_release_tag(tmp_path):
    app = SimpleNamespace(srcdir=ROOT)
    config = SimpleNamespace(lowrank_repository="", lowrank_ref="")
    launch._fill_config(app, config)
    assert (config.lowrank_repository, config.lowrank_ref) == (REPOSITORY.rstrip("/"), f"v{VERSION}")
    links = launch.launch_links(config.lowrank_repository, config.lowrank_ref, "e3_metric")
    assert links["source"] == f"{REPOSITORY.rstrip('/')}/blob/v{VERSION}/notebooks/e3_metric.ipynb"
    assert f"/v{VERSION}?labpath=notebooks%2Fe3_metric.ipynb" in links["binder"]
    assert links["colab"].endswith(f"/blob/v{VERSION}/notebooks/e3_metric.ipynb")
    # _config.yml may override either; an override is kept
    config = SimpleNamespace(lowrank_repository="https://github.com/o/r", lowrank_ref="main")
    launch._fill_config(SimpleNamespace(srcdir=tmp_path), config)
    assert (config.lowrank_repository, config.lowrank_ref) == ("https://github.com/o/r", "main")
    # without an override, a book outside any project is an error that says why
    with pytest.raises(ReproduceError, match="no pyproject.toml"):
        launch._fill_config(SimpleNamespace(srcdir=tmp_path),
                            SimpleNamespace(lowrank_repository="", lowrank_ref=""))


# --------------------------------------------------------------------------- the Colab cell
def test_every_notebook_starts_with_the_generated_colab_cell():
    paths = colab.notebook_paths(ROOT)
    assert paths, "no notebooks/*.ipynb"
    stale = [p.name for p in colab.stale_notebooks(ROOT)]
    assert not stale, ("the first code cell differs from the generated Colab cell in " + ", ".join(stale)
                       + "; run: python -m lowrank_learning.reproduce.colab --write")
    cell = colab.colab_cell(ROOT)
    assert f'"{PROJECT["name"]}[notebooks] @ git+{REPOSITORY.rstrip("/")}@v{VERSION}"' in cell
    for path in paths:
        first = colab.install_cell(json.loads(path.read_text(encoding="utf-8")), path)
        assert "remove-cell" in first["metadata"]["tags"]


def _run_cell(monkeypatch, in_colab: bool) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append((a, k)))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(colab.colab_cell(ROOT), "<colab cell>", "exec"), {})
    return calls


def test_colab_cell_installs_in_colab_only_and_keeps_preinstalled_packages(monkeypatch):
    assert _run_cell(monkeypatch, in_colab=False) == []
    (args, kwargs), = _run_cell(monkeypatch, in_colab=True)
    argv = args[0]
    assert argv[:4] == [sys.executable, "-m", "pip", "install"]
    assert argv[-1] == colab.install_requirement(ROOT)
    # no --upgrade: pip keeps Colab's jax (and the rest) wherever it satisfies the bounds
    assert not {"-U", "--upgrade", "--force-reinstall", "--upgrade-strategy"} & set(argv)
    assert kwargs == {"check": True}


def _project_copy(tmp_path, names=("e3_metric", "e1_framework")) -> Path:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(ROOT / "notebooks" / "profiles.yml", root / "notebooks" / "profiles.yml")
    for name in names:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root / "notebooks" / f"{name}.ipynb")
    return root


def test_colab_write_rewrites_the_cell_and_nothing_else(tmp_path, capsys):
    root = _project_copy(tmp_path)
    path = root / "notebooks" / "e3_metric.ipynb"
    original = path.read_text(encoding="utf-8")
    nb = json.loads(original)
    colab.install_cell(nb, path)["source"] = ["# an old install cell\n", "pass"]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert colab.stale_notebooks(root) == [path]
    assert colab.main(["--root", str(root)]) == 1
    assert "stale Colab cell: notebooks/e3_metric.ipynb" in capsys.readouterr().out
    assert colab.main(["--root", str(root), "--write"]) == 0
    assert path.read_text(encoding="utf-8") == original  # same bytes: format, ids, metadata kept
    assert colab.main(["--root", str(root)]) == 0
    assert colab.write_cells(root) == []


def test_colab_write_refuses_a_notebook_without_the_install_cell(tmp_path):
    root = _project_copy(tmp_path, names=("e3_metric",))
    path = root / "notebooks" / "e3_metric.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    colab.install_cell(nb, path)["metadata"]["tags"] = []
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    with pytest.raises(ReproduceError, match="not tagged remove-cell"):
        colab.write_cells(root)
    assert path.read_text(encoding="utf-8") == before


# --------------------------------------------------------------------------- conda, Binder
def _environment_yml() -> tuple[list[str], list[str], str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda, pip, python = [], [], None
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += [p for p in dep["pip"] if not p.startswith("-e")]
        elif dep.startswith("python="):
            python = dep.split("=", 1)[1]
        elif dep != "pip":
            conda.append(dep)
    return conda, pip, python


def test_environment_yml_agrees_with_pyproject():
    conda, pip, python = _environment_yml()
    conda_to_pypi = {v: k for k, v in CONDA_NAMES.items()}
    listed = _requirements(pip)
    for line in conda:
        r = Requirement(line)
        listed[canonicalize_name(conda_to_pypi.get(r.name, r.name))] = r.specifier
    expected = _chapter_requirements()
    assert not DEV_ONLY & set(listed), f"test-only packages in environment.yml: {sorted(DEV_ONLY & set(listed))}"
    assert set(listed) == set(expected), (
        f"environment.yml misses {sorted(set(expected) - set(listed))}, "
        f"has beyond pyproject's dependencies + {CHAPTER_EXTRAS}: {sorted(set(listed) - set(expected))}")
    wrong = {n: (str(listed[n]), str(expected[n])) for n in expected if listed[n] != expected[n]}
    assert not wrong, f"bounds differ from pyproject.toml (environment.yml, pyproject): {wrong}"
    assert {"jax", "optax"} <= set(_requirements(pip)), "jax and optax come from pip"
    assert SpecifierSet(PROJECT["requires-python"]).contains(python)


def test_binder_installs_the_chapter_extras_from_pyproject():
    post = (ROOT / "binder" / "postBuild").read_text(encoding="utf-8")
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK), "binder/postBuild must be executable"
    installs = [ln for ln in post.splitlines() if "pip install" in ln and not ln.lstrip().startswith("#")]
    assert len(installs) == 1, installs
    m = re.search(r"""["']?\.\[([^\]]*)\]["']?\s*$""", installs[0])
    assert m, f"postBuild must pip-install the repository itself with extras: {installs[0]!r}"
    extras = [e.strip() for e in m.group(1).split(",")]
    assert set(extras) <= set(EXTRAS), f"unknown extras {sorted(set(extras) - set(EXTRAS))}"
    assert set(CHAPTER_EXTRAS) <= set(extras)
    installed = _requirements(r for e in extras for r in EXTRAS[e])
    assert not DEV_ONLY & set(installed), f"test-only packages on Binder: {sorted(DEV_ONLY & set(installed))}"
    runtime = (ROOT / "binder" / "runtime.txt").read_text(encoding="utf-8").strip()
    assert SpecifierSet(PROJECT["requires-python"]).contains(runtime.removeprefix("python-"))


# --------------------------------------------------------------------------- citing
def test_citation_cff_agrees_with_pyproject():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == VERSION
    assert cff["repository-code"].rstrip("/") == REPOSITORY.rstrip("/")
    assert cff["license"] == PROJECT["license"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Learning reveals invisible structure in low-rank RNNs"
    assert [a["family-names"] for a in paper["authors"]] == ["Ger", "Barak"]
    assert any(i["value"] == "arXiv:2605.04115" for i in paper["identifiers"])


# --------------------------------------------------------------------------- a Colab-style install
CHAPTER = "e3_metric"  # the fastest chapter's quick profile


def _run(argv, **kw):
    r = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.mark.slow
def test_a_chapter_runs_from_a_colab_style_install_outside_the_repository(tmp_path):
    """Wheel -> fresh venv -> ``<name>[notebooks] @ <wheel>`` (the Colab cell's requirement with the
    local wheel for git+URL) plus papermill and ipykernel -> the chapter's quick profile, run
    from a folder outside the repository. Needs PyPI; takes minutes."""
    assert ROOT not in tmp_path.resolve().parents, "tmp_path must lie outside the repository"
    # build from a copy: an in-tree wheel build would leave build/ and *.egg-info in the checkout
    src = tmp_path / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "wheels", src], timeout=900)
    wheel, = (tmp_path / "wheels").glob("*.whl")

    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("LOWRANK_")}
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env, timeout=300)
    py = venv / "bin" / "python"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["LOWRANK_LEARNING_CACHE"] = str(tmp_path / "cache")
    requirement = colab.install_requirement(ROOT).split(" @ ")[0] + f" @ {wheel.as_uri()}"
    book = {canonicalize_name(Requirement(r).name): r for r in EXTRAS["book"]}
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # what a Colab kernel has after the install cell: the package with its notebooks extra, ipykernel
    _run(pip + [requirement, book["ipykernel"]], env=env, timeout=1800)
    work = tmp_path / "colab"
    work.mkdir()
    where = _run([py, "-c", "import lowrank_learning; print(lowrank_learning.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve()), where.stdout
    # and what this test needs to run the chapter as Colab would
    _run(pip + [book["papermill"]], env=env, timeout=1800)
    kernel = "lowrank-colab-test"  # a kernelspec of this venv only: no user-wide python3 kernel can stand in
    _run([py, "-m", "ipykernel", "install", "--prefix", venv, "--name", kernel], env=env, timeout=300)
    shutil.copy(ROOT / "notebooks" / f"{CHAPTER}.ipynb", work / f"{CHAPTER}.ipynb")
    params = yaml.safe_load((ROOT / "notebooks" / "profiles.yml").read_text(encoding="utf-8"))[CHAPTER]["quick"]
    argv = [py, "-m", "papermill", f"{CHAPTER}.ipynb", "out.ipynb", "-k", kernel, "--cwd", work]
    if params:
        argv += ["-y", json.dumps(params)]
    _run(argv, cwd=work, env=env, timeout=1800)

    assert (work / "out.ipynb").is_file()
    saved = json.loads((work / "book" / "results" / "interactive" / f"{CHAPTER}.json").read_text())
    assert saved["notebook"] == CHAPTER and saved["results"]
