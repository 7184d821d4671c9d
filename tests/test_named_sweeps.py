"""The named sweeps read the E9 grid from the E9 chapter and notebooks/profiles.yml, nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

import lowrank_learning as ll
from lowrank_learning import named_sweeps as ns

ROOT = Path(__file__).resolve().parents[1]


def _notebook_defaults() -> dict:
    """The E9 notebook's parameters cell, read here with nbformat and ast (not with the pipeline)."""
    nb = nbformat.read(str(ROOT / "notebooks" / "e9_validation.ipynb"), as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            out[target.id] = ast.literal_eval(node.value)
    return out


def test_the_quick_grid_is_the_notebooks_defaults():
    assert ns.e9_grid("quick", ROOT) == _notebook_defaults()


def test_the_paper_grid_is_the_profile_over_the_defaults():
    profile = yaml.safe_load((ROOT / "notebooks" / "profiles.yml").read_text())["e9_validation"]["paper"]
    assert profile, "the paper profile of E9 overrides the grid"
    assert ns.e9_grid("paper", ROOT) == {**_notebook_defaults(), **profile}


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_the_nonlinear_sweep_runs_the_chapters_jobs(profile):
    grid = ns.e9_grid(profile, ROOT)
    fn, jobs = ns.named_sweep("e9-nonlinear", profile, ROOT)
    assert fn is ll.compare_nonlinear
    expected = ll.e9_jobs(grid["N_values"], grid["seeds"], grid["activations"], grid["tasks"], grid["lrs"],
                          epochs=grid["epochs"], n_trials=grid["n_trials"], dt=grid["dt"], T_max=grid["T_max"],
                          epochs_largest=grid["epochs_largest"], activations_largest=grid["activations_largest"],
                          lrs_largest=grid["lrs_largest"], dtype=grid["dtype"])
    assert jobs == expected and len(jobs) > 0


def test_the_linear_sweep_runs_the_chapters_sizes():
    fn, jobs = ns.named_sweep("e9-linear", "paper", ROOT)
    assert fn is ll.linear_exactness
    assert [j["N"] for j in jobs] == list(ns.e9_grid("paper", ROOT)["N_linear"])


def test_unknown_names_and_profiles_are_refused():
    with pytest.raises(ll.InvalidParameterError, match="unknown sweep 'nope'"):
        ns.named_sweep("nope", "paper", ROOT)
    with pytest.raises(ll.InvalidParameterError, match="unknown profile 'huge'"):
        ns.named_sweep("e9-linear", "huge", ROOT)
