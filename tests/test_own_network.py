"""The "Your own network" experiment (experiments/own_network.py)."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest
from scipy.stats import binom

import lowrank_learning as ll

CTX = dict(n_trials=6, dt=0.5, T_max=5.0, stimulus=(0.5, 3.0), response=(3.5, 5.0))


def test_context_task_rules():
    b = {r: ll.context_task(r, seed=3, **CTX) for r in ll.CONTEXT_RULES}
    for r in ll.CONTEXT_RULES:
        np.testing.assert_array_equal(b[r].inputs, b["context"].inputs)   # same trials for every rule
        np.testing.assert_array_equal(b[r].mask, b["context"].mask)
    x, mask = np.asarray(b["context"].inputs), np.asarray(b["context"].mask)
    t = np.arange(10) * 0.5
    np.testing.assert_array_equal(mask[0, :, 0], (t >= 3.5).astype(float))
    cue = x[:, 0, 2:]
    assert np.all(cue.sum(axis=1) == 1) and np.all((x[:, :, 2:] == cue[:, None, :]))   # one cue, whole trial
    assert np.all(x[:, (t < 0.5) | (t >= 3.0), :2] == 0)                                 # stimuli in their window
    val = {r: np.asarray(b[r].targets)[:, -1, 0] for r in ll.CONTEXT_RULES}
    np.testing.assert_allclose(val["sum"], (val["context"] + val["other"]) / 2, rtol=1e-15)
    first_cued = cue[:, 0] == 1
    np.testing.assert_array_equal(val["first"], np.where(first_cued, val["context"], val["other"]))
    assert np.all(np.abs(val["context"]) <= 1)


@pytest.mark.parametrize("kwargs,match", [(dict(rule="xor"), "rule must be one of"),
                                          (dict(response=(4.0, 9.0)), "windows"),
                                          (dict(noise=-1.0), "noise")])
def test_context_task_bad_input(kwargs, match):
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.context_task(**{**CTX, **kwargs})


def test_linear_prediction_is_exact():
    """Linear units: the theory is exact, so the prediction equals the full network (float64),
    also for the Gaussian networks with the same overlaps."""
    arch = ll.Architecture(rank=2, n_in=4, n_out=1, activation="linear")
    X = ll.sample_vectors(arch, 40, seed=0)
    task = ll.context_task("other", seed=1, **CTX)
    p = ll.predict_learning(arch, X, task, 0.05, 30, n_redraws=2, dtype="float64")
    assert p["err_end"] < 1e-9 and p["loss_rel_max"] < 1e-9
    assert np.all(p["redraw_err_end"] < 1e-9) and p["redraw_loss"].shape == (2, 30)
    direct = ll.learn_overlaps(arch, ll.overlaps(X), task, 0.05, 30, progress=False)
    np.testing.assert_allclose(p["theory"].loss, direct.loss, rtol=1e-12)
    red = np.asarray(ll.redraw_gaussian(X, np.ones(arch.K), jax.random.fold_in(jax.random.PRNGKey(0), 1)))
    np.testing.assert_allclose(ll.overlaps(red), ll.overlaps(X), atol=1e-10)   # same overlaps, new rows
    assert np.max(np.abs(red - X)) > 0.1


@pytest.mark.slow
def test_erf_prediction_against_direct_runs():
    arch = ll.Architecture(rank=1, n_in=4, n_out=1, activation="erf")
    X = ll.sample_vectors(arch, 60, seed=0)
    task = ll.context_task("sum", seed=2, **CTX)
    p = ll.predict_learning(arch, X, task, 0.1, 20, n_redraws=1, dtype="float64", redraw_seed=4)
    full = ll.learn_vectors(arch, X, task, 0.1, 20, progress=False)
    np.testing.assert_allclose(p["full"].loss, full.loss, rtol=1e-12)
    np.testing.assert_allclose(p["err_curve"], ll.overlap_error_curve(full.sigma_all, p["theory"].sigma_all),
                               rtol=1e-12)
    red = np.asarray(ll.redraw_gaussian(X, np.ones(arch.K), jax.random.fold_in(jax.random.PRNGKey(4), 0)))
    np.testing.assert_allclose(ll.overlaps(red), ll.overlaps(X), atol=1e-10)   # same overlaps, new rows
    run = ll.learn_vectors(arch, red, task, 0.1, 20, progress=False)
    np.testing.assert_allclose(p["redraw_loss"][0], run.loss, rtol=1e-12)


def test_departure_verdict_null_and_planted():
    rng = np.random.default_rng(0)
    n, alpha = 300, 0.05
    holds = sum(ll.departure_verdict(v[0], v[1:], alpha=alpha).holds for v in rng.exponential(size=(n, 30)))
    assert holds <= binom.ppf(0.999, n, alpha)
    assert ll.departure_verdict(5.0, rng.uniform(0, 1, 29)).holds


def test_probe_network():
    arch = ll.Architecture(rank=1, n_in=4, n_out=1, activation="linear")
    S = ll.overlaps(ll.sample_vectors(arch, 500, seed=0))
    tasks = {r: ll.context_task(r, seed=0, **CTX) for r in ("other", "first")}
    out = ll.probe_network(arch, S, tasks, n=12, lr=0.05, epochs=15, n_permutations=19, seed=1)
    assert set(out["curves"]) == set(tasks) and out["curves"]["other"].shape == (12, 15)
    assert out["best"] == max(out["decoded"], key=lambda t: out["decoded"][t]["r2"])
    assert set(out["verdict"].parts) == set(tasks)
    vis = ll.flatten(arch, out["ensemble"].sigma)[:, arch.visible]
    np.testing.assert_allclose(vis, np.broadcast_to(ll.flatten(arch, S)[arch.visible], vis.shape), atol=1e-12)
    with pytest.raises(ll.InvalidParameterError, match="non-empty dict"):
        ll.probe_network(arch, S, {}, n=12, lr=0.05, epochs=15)


def test_predict_bad_input():
    arch = ll.Architecture(rank=1, n_in=4, n_out=1, activation="erf")
    task = ll.context_task(**CTX)
    with pytest.raises(ll.InvalidParameterError, match="X"):
        ll.predict_learning(arch, np.ones((10, 5)), task, 0.1, 5)
    with pytest.raises(ll.InvalidParameterError, match="dtype"):
        ll.predict_learning(arch, np.ones((10, 7)), task, 0.1, 5, dtype="float16")
    with pytest.raises(ll.InvalidParameterError, match="n_redraws"):
        ll.predict_learning(arch, np.ones((10, 7)), task, 0.1, 5, n_redraws=-1)
