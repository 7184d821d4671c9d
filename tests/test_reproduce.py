"""`lowrank-learning reproduce` / `book` on tiny notebooks in a temporary repository.

Validation tests run no kernel; one test executes notebooks (3 kernel starts in all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lowrank_learning import cli
from lowrank_learning import reproduce as rp
from lowrank_learning.core import cache, provenance
from lowrank_learning.reproduce.launch import launch_links
from lowrank_learning.reproduce.runner import expected_cores, expected_seconds, longest_first, schedule

PARAMS = 'n = 3\nscale = 1.5\nlabel = "a"\nflags = [1, 2]\nlog = "log.txt"  # where each run appends a line'
GOOD = ('with open(log, "a") as f:\n    f.write(f"{n} {scale} {label} {flags}\\n")\nprint(n * scale)\n'
        'import lowrank_learning as ll\nll.save_results("good", {"product": n * scale}, parameters={"n": n})')
BAD = 'x = 1\nraise ValueError("boom " + label)'
PROFILES = """\
good:
  title: "Good notebook"
  quick: {n: 4}
  paper: {n: 5, scale: 2}
bad:
  title: "Failing notebook"
  quick: {}
  paper: {}
"""


def _notebook(path: Path, body: str, params: str = PARAMS, tag: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params)
    if tag:
        p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A result"), p, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "good.ipynb", GOOD)
    _notebook(tmp_path / "notebooks" / "bad.ipynb", BAD)
    (tmp_path / "notebooks" / "profiles.yml").write_text(PROFILES)
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _log(repo) -> list[str]:
    p = repo / "notebooks" / "log.txt"
    return p.read_text().splitlines() if p.exists() else []


def _nothing_ran(repo) -> None:
    assert not _log(repo)
    assert not (repo / "book" / "results").exists()


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, expected", [
    ({"profile": "fast"}, ["unknown profile 'fast'", "quick", "paper"]),
    ({"only": ["good", "nope"]}, ["unknown notebook 'nope'", "good, bad"]),
    ({"sets": ["nn=4"]}, ["'nn' is not a parameter", "n, scale, label, flags, log"]),
    ({"sets": ["good.nn=4"]}, ["'nn' is not a parameter of notebook 'good'", "n, scale, label, flags, log"]),
    ({"sets": ["other.n=4"]}, ["notebook 'other' is not selected", "good, bad"]),
    ({"sets": ["n=2.5"]}, ["'n' expects int", "float 2.5"]),
    ({"sets": ["n=True"]}, ["'n' expects int", "bool"]),
    ({"sets": ["scale=fast"]}, ["'scale' expects float", "str 'fast'"]),
    ({"sets": ["flags=3"]}, ["'flags' expects list"]),
    ({"sets": ["n"]}, ["expected NAME=VALUE"]),
    ({"jobs": 0}, ["--jobs"]),
])
def test_invalid_input_fails_before_running(repo, capsys, kwargs, expected):
    assert rp.reproduce(root=repo, progress=False, **kwargs) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    _nothing_ran(repo)


def test_profile_values_are_checked(repo, capsys):
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace("{n: 4}", "{n: 4, depth: 2}"))
    assert rp.reproduce(root=repo, profile="quick", progress=False) == 2
    err = capsys.readouterr().err
    assert "sets 'depth'" in err and "valid parameters: n, scale, label, flags, log" in err
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace("{n: 4}", "{scale: 1e-3}"))
    assert rp.reproduce(root=repo, profile="quick", progress=False) == 2
    err = capsys.readouterr().err
    assert "'scale' expects float" in err and "1.0e-3" in err  # the YAML hint
    _nothing_ran(repo)


def test_notebook_problems_fail_before_running(repo, capsys):
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES + "missing:\n  quick: {}\n  paper: {}\n")
    assert rp.reproduce(root=repo, profile="quick", progress=False) == 2
    assert "missing.ipynb does not exist" in capsys.readouterr().err
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES)
    _notebook(repo / "notebooks" / "bad.ipynb", BAD, tag=False)
    assert rp.reproduce(root=repo, profile="quick", progress=False) == 2
    assert "exactly one cell tagged 'parameters'" in capsys.readouterr().err
    _nothing_ran(repo)


def test_resolved_parameters(repo):
    jobs = rp.plan(rp.Layout(repo), "paper", only=["good"],
                   sets=["scale=3", "label=erf", "good.flags=(4, 5)", "log=other.txt"])
    (job,) = jobs
    assert job.parameters == {"n": 5, "scale": 3.0, "label": "erf", "flags": [4, 5], "log": "other.txt"}
    assert isinstance(job.parameters["scale"], float)          # int accepted where float expected
    (job,) = rp.plan(rp.Layout(repo), "quick", only=["good"], sets=["label=3"])
    assert job.parameters == {"n": 4, "label": "3"}            # str parameter keeps the text
    assert [j.name for j in rp.plan(rp.Layout(repo), "quick")] == ["good", "bad"]  # book order


def test_notebooks_start_while_a_core_is_idle(repo):
    """Scheduling by CPU need: the registry's cores estimate until a timed run of the same profile
    gives cpu_s / wall_s; a second notebook starts while the running ones leave part of a core
    idle, so only a chapter that keeps every core busy runs alone."""
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
        'title: "Failing notebook"', 'title: "Failing notebook"\n  cores: {paper: 2}'))
    good, bad = rp.plan(rp.Layout(repo), "paper")
    assert (good.cores, bad.cores) == (None, 2.0)
    assert [expected_cores(j, 2) for j in (good, bad)] == [1.0, 2.0] and expected_cores(bad, 1) == 1.0
    assert schedule([bad, good], [], capacity=2, jobs=2) == [bad]            # bad fills both cores
    assert schedule([good], [2.0], capacity=2, jobs=2) == []
    assert schedule([good, bad], [], capacity=2, jobs=2) == [good, bad]     # good leaves a core idle
    assert schedule([bad, good], [1.0], capacity=2, jobs=2) == [bad]
    assert schedule([good], [1.95], capacity=2, jobs=2) == []                # less than IDLE_CORE idle
    assert schedule([good, good], [], capacity=2, jobs=1) == [good]          # at most `jobs` at once
    assert schedule([bad], [], capacity=1, jobs=2) == [bad]                  # more than there is: alone
    assert schedule([good, good, good], [], capacity=4, jobs=4) == [good] * 3
    # a timed run of the same profile replaces the estimate: 160 s CPU in 100 s wall = 1.6 cores
    bad.stamp_path.parent.mkdir(parents=True, exist_ok=True)
    bad.stamp_path.write_text(json.dumps(dict(bad.stamp, wall_s=100.0, cpu_s=160.0)))
    assert expected_cores(bad, 2) == pytest.approx(1.6)
    assert schedule([bad, good], [], capacity=2, jobs=2) == [bad, good]
    bad.stamp_path.write_text(json.dumps(dict(bad.stamp, wall_s=100.0, cpu_s=199.0)))
    assert schedule([bad, good], [], capacity=2, jobs=2) == [bad]
    bad.stamp_path.write_text(json.dumps(dict(bad.stamp, profile="quick", wall_s=100.0, cpu_s=100.0)))
    assert expected_cores(bad, 2) == 2.0                                     # another profile: ignored
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
        'title: "Failing notebook"', 'title: "Failing notebook"\n  cores: {paper: 0.5}'))
    assert rp.reproduce(root=repo, profile="paper", progress=False) == 2


def test_notebook_after_another_waits_for_it(repo, capsys):
    """``after``: a notebook that reuses another's cached results starts once that one has finished
    (when both are to run), without holding back the notebooks behind it."""
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
        'title: "Failing notebook"', 'title: "Failing notebook"\n  after: [good]'))
    good, bad = rp.plan(rp.Layout(repo), "paper")
    assert (good.after, bad.after) == ((), ("good",))
    assert schedule([bad, good], [], capacity=2, jobs=2) == [good]           # bad waits for good ...
    assert schedule([bad], [1], capacity=2, jobs=2, unfinished=["good"]) == []  # ... while it runs
    assert schedule([bad], [], capacity=2, jobs=2) == [bad]                  # then starts
    assert schedule([bad], [], capacity=2, jobs=2, unfinished=["other"]) == [bad]
    for after in ("[missing]", "[bad]", "good"):
        (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
            'title: "Failing notebook"', f'title: "Failing notebook"\n  after: {after}'))
        assert rp.reproduce(root=repo, profile="paper", progress=False) == 2
        assert "bad.after" in capsys.readouterr().err


def test_longest_notebook_starts_first(repo, capsys):
    """Order of execution: the longer of the last timed run of the same profile and the
    registry's minutes estimate, longest first; the summary and the book keep book order."""
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
        'title: "Failing notebook"', 'title: "Failing notebook"\n  minutes: {paper: 2.5}'))
    jobs = rp.plan(rp.Layout(repo), "paper")
    assert [j.name for j in jobs] == ["good", "bad"] and jobs[1].minutes == 2.5 and jobs[0].minutes is None
    assert [expected_seconds(j) for j in jobs] == [0.0, 150.0]
    assert [j.name for j in longest_first(jobs)] == ["bad", "good"]
    stamp = dict(jobs[0].stamp, wall_s=400.0)
    jobs[0].stamp_path.parent.mkdir(parents=True, exist_ok=True)
    jobs[0].stamp_path.write_text(json.dumps(stamp))                 # a timed paper run of "good"
    assert [j.name for j in longest_first(jobs)] == ["good", "bad"]
    jobs[0].stamp_path.write_text(json.dumps(dict(stamp, profile="quick")))  # another profile: ignored
    assert [j.name for j in longest_first(jobs)] == ["bad", "good"]
    # a short timed run (its simulations from the result cache) does not go below the estimate
    jobs[1].stamp_path.write_text(json.dumps(dict(jobs[1].stamp, wall_s=10.0)))
    jobs[0].stamp_path.write_text(json.dumps(dict(stamp, wall_s=100.0)))
    assert [expected_seconds(j) for j in jobs] == [100.0, 150.0]
    assert [j.name for j in longest_first(jobs)] == ["bad", "good"]
    (repo / "notebooks" / "profiles.yml").write_text(PROFILES.replace(
        'title: "Failing notebook"', 'title: "Failing notebook"\n  minutes: {paper: fast}'))
    assert rp.reproduce(root=repo, profile="paper", progress=False) == 2
    assert "bad.minutes must map profile names to numbers" in capsys.readouterr().err


def test_cli_parses_and_delegates(repo, capsys):
    assert cli.main(["--root", str(repo), "reproduce", "--profile", "fast"]) == 2
    assert "valid profiles: quick, paper" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", "--jobs", "0"])
    assert exc.value.code == 2
    _nothing_ran(repo)


def test_book_requires_executed_notebooks(repo, capsys):
    (repo / "book").mkdir()
    (repo / "book" / "intro.md").write_text("# Intro\n")
    (repo / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/results/good\n  - file: book/results/bad\n")
    assert rp.build_book(root=repo) == 2
    err = capsys.readouterr().err
    assert "book/results/good.ipynb" in err and "book/results/bad.ipynb" in err
    assert "lowrank-learning reproduce" in err
    assert not (repo / "_build").exists()


# --------------------------------------------------------------------------- cleanup (no kernel)
def _job(repo) -> dict:
    (job,) = rp.plan(rp.Layout(repo), "quick", only=["good"])
    return rp._job_dict(job)


def _finished(repo, name="good"):
    results = repo / "book" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.ipynb").write_text("{}")
    (results / f"{name}.stamp.json").write_text("{}")
    return results


def _good_result(repo, name="good"):
    """A previous successful run: notebook, stamp and results JSON."""
    results = _finished(repo, name)
    (results / f"{name}.json").write_text('{"results": {"x": 1}}')
    return results


LAST_GOOD = ["good.ipynb", "good.json", "good.stamp.json"]


def test_interrupt_keeps_last_good_result(repo, monkeypatch):
    results = _good_result(repo)

    def interrupted(src, out, **kw):
        Path(out).write_text('{"cells": []}')  # papermill writes as it goes
        ll_results = Path(os.environ["LOWRANK_RESULTS_DIR"])
        (ll_results / "good.json").write_text('{"results": {"x": 2}}')  # staged, never published
        raise KeyboardInterrupt

    monkeypatch.setattr("papermill.execute_notebook", interrupted)
    outcome = rp.execute_job(_job(repo), str(repo / "notebooks"))
    assert outcome["status"] == "interrupted"
    # no temporary file or staging folder; the previous result, its JSON and stamp are untouched
    assert sorted(p.name for p in results.iterdir()) == LAST_GOOD
    assert json.loads((results / "good.json").read_text()) == {"results": {"x": 1}}
    assert (results / "good.ipynb").read_text() == "{}"


def test_crash_keeps_last_good_result(repo, monkeypatch):
    results = _good_result(repo)

    def crash(src, out, **kw):
        Path(out).write_text('{"cells": []}')
        (Path(os.environ["LOWRANK_RESULTS_DIR"]) / "good.json").write_text("{}")
        raise RuntimeError("kernel died")

    monkeypatch.setattr("papermill.execute_notebook", crash)
    outcome = rp.execute_job(_job(repo), str(repo / "notebooks"))
    assert outcome["status"] == "failed" and "kernel died" in outcome["message"]
    # the same rule as an interrupt, plus the failed copy beside the good result
    assert sorted(p.name for p in results.iterdir()) == sorted(LAST_GOOD + ["good.failed.ipynb"])
    assert json.loads((results / "good.json").read_text()) == {"results": {"x": 1}}
    assert (results / "good.ipynb").read_text() == "{}"
    assert (results / "good.failed.ipynb").read_text() == '{"cells": []}'


def test_results_json_is_staged_and_published_with_the_notebook(repo, monkeypatch):
    results = _good_result(repo)
    seen = {}

    def ok(src, out, **kw):
        seen["dir"], seen["profile"] = os.environ["LOWRANK_RESULTS_DIR"], os.environ["LOWRANK_PROFILE"]
        assert not (results / "good.json").read_text().endswith("2}}")
        Path(seen["dir"], "good.json").write_text('{"results": {"x": 2}}')
        Path(out).write_text('{"cells": [], "new": true}')

    monkeypatch.setattr("papermill.execute_notebook", ok)
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", "/elsewhere")
    (results / "good.failed.ipynb").write_text("{}")  # from an earlier failure
    outcome = rp.execute_job(_job(repo), str(repo / "notebooks"))
    assert outcome["status"] == "ok"
    assert Path(seen["dir"]).parent == results and seen["profile"] == "quick"
    assert not Path(seen["dir"]).exists()                   # the staging folder is gone
    assert os.environ["LOWRANK_RESULTS_DIR"] == "/elsewhere"  # restored
    assert sorted(p.name for p in results.iterdir()) == LAST_GOOD  # the failed copy is gone
    assert json.loads((results / "good.json").read_text()) == {"results": {"x": 2}}
    stamp = json.loads((results / "good.stamp.json").read_text())
    assert stamp["profile"] == "quick"
    # no provenance in the chapter's JSON: the runner's own, without the accelerator
    assert stamp["provenance_from"] == "runner" and stamp["provenance"]["accelerator"] is None
    assert stamp["provenance"]["packages"] == provenance.package_versions()

    # the kernel's provenance, recorded by save_results in the staged JSON, goes into the stamp
    kernel = {"python": {"version": "3.x"}, "accelerator": {"platform": "gpu", "kind": "H", "count": 1}}

    def ok_with_provenance(src, out, **kw):
        Path(os.environ["LOWRANK_RESULTS_DIR"], "good.json").write_text(
            json.dumps({"results": {"x": 3}, "provenance": kernel}))
        # a "kernel" process that burns 0.5 s of CPU: the stamp's cpu_s counts it
        subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                        "while time.process_time() - t < 0.5: pass"], check=True)
        Path(out).write_text("{}")

    monkeypatch.setattr("papermill.execute_notebook", ok_with_provenance)
    assert rp.execute_job(_job(repo), str(repo / "notebooks"))["status"] == "ok"
    stamp = json.loads((results / "good.stamp.json").read_text())
    assert stamp["provenance"] == kernel and stamp["provenance_from"] == "kernel"
    assert 0.5 <= stamp["cpu_s"] < 0.5 + stamp["wall_s"] * os.cpu_count()

    # a successful run that writes no JSON removes the old one (it would not match the page)
    monkeypatch.setattr("papermill.execute_notebook", lambda src, out, **kw: Path(out).write_text("{}"))
    assert rp.execute_job(_job(repo), str(repo / "notebooks"))["status"] == "ok"
    assert sorted(p.name for p in results.iterdir()) == ["good.ipynb", "good.stamp.json"]


# --------------------------------------------------------------------------- execution
def test_run_failure_skip_and_rerun(repo, capsys, monkeypatch):
    results = _finished(repo, "bad")  # a stale result of the notebook that will now fail

    # 1. both run in parallel; bad fails, good still completes
    assert rp.reproduce(root=repo, profile="quick", jobs=2, progress=False) == 1
    out = capsys.readouterr().out
    assert "FAILED bad" in out and "cell 2 of bad.ipynb" in out and "ValueError: boom a" in out
    # the last good result stays, the failed copy is beside it, the summary says which is shown
    assert (results / "bad.ipynb").read_text() == "{}" and (results / "bad.stamp.json").exists()
    assert (results / "bad.failed.ipynb").exists()
    assert f"the book shows the last good result {results / 'bad.ipynb'}" in out
    assert _log(repo) == ["4 1.5 a [1, 2]"]
    executed = nbformat.read(str(results / "good.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    stamp = json.loads((results / "good.stamp.json").read_text())
    assert stamp["parameters"] == {"n": 4} and stamp["source_hash"] == cache.package_hash()
    # the stamp and the chapter's JSON record the environment of the kernel that ran the notebook
    chapter = json.loads((results / "good.json").read_text())
    assert chapter["results"] == {"product": 6.0} and chapter["profile"] == "quick"
    assert stamp["provenance_from"] == "kernel" and stamp["provenance"] == chapter["provenance"]
    assert stamp["provenance"]["accelerator"]["platform"] == "cpu"  # found in the kernel, not the runner
    assert stamp["provenance"]["packages"] == provenance.package_versions()
    assert stamp["environment"] == provenance.numeric_environment(accelerator_kind=False)
    assert not list(results.glob(".*"))  # no temporary files

    # 2. nothing changed: skipped without starting a kernel
    assert rp.reproduce(root=repo, profile="quick", only=["good"], progress=False) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(_log(repo)) == 1

    # 3. a changed parameter reruns it
    assert rp.reproduce(root=repo, profile="quick", only=["good"], sets=["n=7"], progress=False) == 0
    assert _log(repo) == ["4 1.5 a [1, 2]", "7 1.5 a [1, 2]"]
    assert json.loads((results / "good.stamp.json").read_text())["parameters"] == {"n": 7}

    # up to date for the same inputs; stale after a notebook edit or a package change
    layout = rp.Layout(repo)
    assert rp.plan(layout, "quick", ["good"], ["n=7"])[0].up_to_date
    assert not rp.plan(layout, "quick", ["good"], ["n=7"], force=True)[0].up_to_date
    monkeypatch.setattr(cache, "package_hash", lambda: "f" * 64)
    assert not rp.plan(layout, "quick", ["good"], ["n=7"])[0].up_to_date
    monkeypatch.undo()
    with monkeypatch.context() as m:  # another jax: the numbers may change
        m.setattr(provenance, "package_version", lambda name: "0.0.1" if name == "jax" else None)
        assert not rp.plan(layout, "quick", ["good"], ["n=7"])[0].up_to_date
    assert rp.plan(layout, "quick", ["good"], ["n=7"])[0].up_to_date
    _notebook(repo / "notebooks" / "good.ipynb", GOOD + "\n# edited")
    assert not rp.plan(layout, "quick", ["good"], ["n=7"])[0].up_to_date


# --------------------------------------------------------------------------- launch links
def test_launch_links():
    links = launch_links("https://github.com/owner/repo.git", "main", "e1_framework")
    assert links == {
        "source": "https://github.com/owner/repo/blob/main/notebooks/e1_framework.ipynb",
        "binder": "https://mybinder.org/v2/gh/owner/repo/main?labpath=notebooks%2Fe1_framework.ipynb",
        "colab": "https://colab.research.google.com/github/owner/repo/blob/main/notebooks/e1_framework.ipynb",
    }
    with pytest.raises(ValueError, match="lowrank_repository"):
        launch_links("https://gitlab.com/owner/repo", "main", "e1")


def test_summary_without_an_earlier_result(repo, capsys):
    """A notebook that fails with no earlier result: the summary says the book cannot show it."""
    assert rp.reproduce(root=repo, profile="quick", only=["bad"], progress=False) == 1
    out = capsys.readouterr().out
    assert "FAILED bad" in out and "no earlier result: the book cannot be built until this notebook runs" in out
    results = repo / "book" / "results"
    assert sorted(p.name for p in results.iterdir()) == ["bad.failed.ipynb"]
