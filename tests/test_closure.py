"""The E9 closure test: Gaussian redraws with exact overlaps, and the verdict on synthetic data.

References: the overlaps and frozen columns of the input (exact), the excess kurtosis of a
Gaussian (0, standard error sqrt(24/N)), the exact overlap map of linear units (learn_overlaps,
which the plain linear network equals; tests/test_exactness.py), a plain Python loop of one-epoch
runs and explicit redraws, a direct least-squares line (numpy.polyfit), and synthetic errors with
known systematic parts.
"""

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lowrank_learning as ll
from lowrank_learning.experiments import closure as cl
from lowrank_learning.experiments.closure import closure_verdict, compare_redrawn
from lowrank_learning.learn.vectors import _REDRAW_STREAM, redraw_gaussian

# Redraws keep the overlaps to rounding: eigendecompositions of K x K matrices and sums over N rows
# in float64 err by ~K * N * eps * |Sigma| ~ 4 * 2000 * 2.2e-16 ~ 2e-12 relative; 1e-10 leaves room.
EXACT = 1e-10


def _non_gaussian(N, seed, K=4):
    """(N, K) with Laplace, uniform, exponential and Gaussian columns, mixed by a fixed matrix."""
    rng = np.random.default_rng(seed)
    cols = [rng.laplace(size=N), rng.uniform(-1, 1, N), rng.exponential(size=N) - 1, rng.standard_normal(N)]
    Z = np.stack(cols[:K] + [rng.standard_normal(N) for _ in range(K - 4)], axis=1)
    mix = np.eye(K) + 0.4 * rng.standard_normal((K, K))
    return Z @ mix


def _gram(X):
    return X.T @ X / X.shape[0]


# ----------------------------------------------------------------------------- the redraw
@pytest.mark.parametrize("plastic", [
    [1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0],
])
@pytest.mark.parametrize("singular", [False, True])
def test_redraw_keeps_the_overlaps_and_the_frozen_vectors(plastic, singular):
    X = _non_gaussian(2000, seed=1)
    if singular:  # two equal vectors: Sigma (and Sigma_FF or the Schur complement) is singular
        X[:, 3] = X[:, 1]
    mask = np.array(plastic, dtype=bool)
    Y = np.asarray(redraw_gaussian(X, mask, jax.random.PRNGKey(0)))
    assert Y.dtype == np.float64 and Y.shape == X.shape
    S = _gram(X)
    np.testing.assert_allclose(_gram(Y), S, rtol=0, atol=EXACT * np.max(np.abs(S)))
    np.testing.assert_array_equal(Y[:, ~mask], X[:, ~mask])          # frozen: bit for bit
    if mask.any():                                                   # plastic: really new
        assert np.max(np.abs(Y[:, mask] - X[:, mask])) > 0.5


def test_redraw_keeps_the_overlaps_at_rank_2():
    arch = ll.Architecture(rank=2)
    X = _non_gaussian(1500, seed=2, K=arch.K)
    mask = arch.plasticity_mask(["U", "V"])
    Y = np.asarray(redraw_gaussian(X, mask, jax.random.PRNGKey(3)))
    np.testing.assert_allclose(_gram(Y), _gram(X), rtol=0, atol=EXACT * np.max(np.abs(_gram(X))))
    np.testing.assert_array_equal(Y[:, ~mask], X[:, ~mask])


def test_redraw_is_deterministic_per_key():
    X = _non_gaussian(500, seed=3)
    mask = np.ones(4, bool)
    a, b = (np.asarray(redraw_gaussian(X, mask, jax.random.PRNGKey(5))) for _ in range(2))
    c = np.asarray(redraw_gaussian(X, mask, jax.random.PRNGKey(6)))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.5


def test_redrawn_rows_are_gaussian():
    """Excess kurtosis of every redrawn vector, and of random projections of the rows (a joint
    Gaussian projects to a Gaussian), is 0 within 4 standard errors sqrt(24/N) of a Gaussian sample
    (the input has kurtosis up to ~3: Laplace and exponential columns)."""
    N = 20000
    X = _non_gaussian(N, seed=4)
    assert np.max(np.abs(ll.excess_kurtosis(X))) > 20 * np.sqrt(24 / N)  # the input is far from Gaussian
    tol = 4 * np.sqrt(24 / N)
    W = np.random.default_rng(0).standard_normal((4, 6))
    Y = np.asarray(redraw_gaussian(X, np.ones(4, bool), jax.random.PRNGKey(1)))
    assert np.max(np.abs(ll.excess_kurtosis(Y))) < tol
    assert np.max(np.abs(ll.excess_kurtosis(Y @ W))) < tol
    # frozen Gaussian column: the plastic ones, X_F A + Gaussian, are Gaussian too
    X[:, 0] = np.random.default_rng(9).standard_normal(N)
    mask = np.array([False, True, True, True])
    Y = np.asarray(redraw_gaussian(X, mask, jax.random.PRNGKey(2)))
    assert np.max(np.abs(ll.excess_kurtosis(Y))) < tol
    assert np.max(np.abs(ll.excess_kurtosis(Y @ W))) < tol


@pytest.mark.parametrize("plastic, every", [(None, 1), (["u", "v", "z"], 1), (None, 3)])
def test_linear_units_redrawn_every_epoch_follow_the_same_overlaps(plastic, every):
    """Linear learning is closed in overlap space: the exact map does not depend on the rows'
    distribution, so a network redrawn every epoch follows the plain network's overlaps and loss.
    Tolerance: the plain network equals the exact map to 1e-9 relative (tests/test_exactness.py);
    each redraw adds ~1e-14 relative, carried over 20 epochs by a map with eta |S| << 1, i.e. far less."""
    arch = ll.Architecture()
    task = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=5.0)
    X0 = ll.sample_vectors(arch, 300, seed=2)
    kw = dict(lr=2e-2, epochs=20, plastic=plastic, progress=False)
    plain = ll.learn_vectors(arch, X0, task, **kw)
    redrawn = ll.learn_vectors(arch, X0, task, redraw_every=every, **kw)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=2e-2, epochs=20, plastic=plastic, progress=False)
    scale = np.max(np.abs(plain.sigma_all))
    np.testing.assert_allclose(redrawn.sigma_all, plain.sigma_all, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(redrawn.sigma_all, theory.sigma_all, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(redrawn.loss, plain.loss, rtol=1e-9)
    mask = arch.plasticity_mask(plastic)
    np.testing.assert_array_equal(redrawn.final_vectors[:, ~mask], X0[:, ~mask])
    # not vacuous: the vectors themselves were replaced
    assert np.max(np.abs(redrawn.final_vectors[:, mask] - plain.final_vectors[:, mask])) > 0.5


def test_redraw_in_the_compiled_loop_equals_a_plain_loop():
    """erf units, a fixed batch, input vector frozen, redraw every 2 epochs: the compiled run equals
    one-epoch runs with explicit redraws before epochs 2 and 4 (the documented keys)."""
    arch = ll.Architecture(activation="erf")
    rng = np.random.default_rng(0)
    batch = ll.Batch(rng.standard_normal((2, 15, 1)), 0.5 * rng.standard_normal((2, 15, 1)),
                     np.ones((2, 15, 1)), 0.1, "masked_mean")
    X0 = ll.sample_vectors(arch, 200, seed=1)
    plastic = ["u", "v", "z"]
    run = ll.learn_vectors(arch, X0, batch, 0.1, 5, plastic=plastic, seed=4, redraw_every=2, progress=False)
    mask = arch.plasticity_mask(plastic)
    key = jax.random.fold_in(jax.random.PRNGKey(4), _REDRAW_STREAM)
    X = X0
    for e in range(5):
        if e > 0 and e % 2 == 0:
            X = np.asarray(redraw_gaussian(X, mask, jax.random.fold_in(key, e)))
        X = ll.learn_vectors(arch, X, batch, 0.1, 1, plastic=plastic, progress=False).final_vectors
    np.testing.assert_allclose(run.final_vectors, X, rtol=0, atol=1e-12 * np.max(np.abs(X)))
    np.testing.assert_array_equal(run.final_vectors[:, 0], X0[:, 0])


def test_redrawn_runs_repeat_per_seed():
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=1, dt=0.1, T_max=2.0)
    X0 = ll.sample_vectors(arch, 100, seed=0)
    runs = [ll.learn_vectors(arch, X0, task, 0.1, 4, seed=1, redraw_every=1, redraw_seed=s, progress=False)
            for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].final_vectors, runs[1].final_vectors)
    np.testing.assert_array_equal(runs[0].sigma_all, runs[1].sigma_all)
    assert not np.allclose(runs[0].final_vectors, runs[2].final_vectors)
    default = ll.learn_vectors(arch, X0, task, 0.1, 4, seed=1, redraw_every=1, progress=False)
    same = ll.learn_vectors(arch, X0, task, 0.1, 4, seed=1, redraw_every=1, redraw_seed=1, progress=False)
    np.testing.assert_array_equal(default.final_vectors, same.final_vectors)  # redraw_seed defaults to seed


@pytest.mark.parametrize("kwargs, field", [
    (dict(redraw_every=0), "redraw_every"),
    (dict(redraw_every=1.5), "redraw_every"),
    (dict(redraw_every=1, optimizer="adam"), "redraw_every"),
    (dict(redraw_every=1, redraw_seed=-1), "redraw_seed"),
])
def test_redraw_bad_input(kwargs, field):
    arch = ll.Architecture()
    X0 = ll.sample_vectors(arch, 20, seed=0)
    with pytest.raises(ll.InvalidParameterError, match=field):
        ll.learn_vectors(arch, X0, ll.tasks.exponential_filter(dt=0.1, T_max=2.0), 1e-2, 2, progress=False, **kwargs)


def test_redraw_needs_N_at_least_K():
    arch = ll.Architecture()
    with pytest.raises(ll.InvalidParameterError, match="redraw_every"):
        ll.learn_vectors(arch, np.ones((3, 4)), ll.tasks.exponential_filter(dt=0.1, T_max=2.0), 1e-2, 2,
                         redraw_every=1, progress=False)


# ----------------------------------------------------------------------------- the estimator
def test_intercept_contrast_is_the_least_squares_line_through_the_means():
    rng = np.random.default_rng(0)
    N = np.repeat([100.0, 1000.0, 10000.0, 300.0], [3, 4, 5, 3])
    e1, e2 = rng.random(N.size), rng.random(N.size)
    con = cl._contrast(N, [e1, e2], 0.95)
    sizes = np.unique(N)
    for k, e in enumerate((e1, e2)):
        means = np.array([e[N == n].mean() for n in sizes])
        intercept = np.polyfit(1 / np.sqrt(sizes), means, 1)[1]
        assert con["est"][k] == pytest.approx(intercept, rel=1e-10)
        # variance of the contrast: sum c^2 var / n, var with ddof 1 (independent strata)
        var = sum(c ** 2 * e[N == n].var(ddof=1) / np.sum(N == n) for c, n in zip(con["weights"], sizes))
        assert con["cov"][k, k] == pytest.approx(var, rel=1e-10)
    c = con["weights"]
    assert np.sum(c) == pytest.approx(1.0) and np.sum(c / np.sqrt(sizes)) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- the verdict
# Synthetic errors at the chapter's sizes: err = (a/sqrt(N) + b) * lognormal(0.3) (skewed, like
# errors), 4 pairs per size, plain and redrawn correlated (rho = 0.5, shared seeds).
SIZES, PAIRS, A = (100, 1000, 10000), 4, 0.3
# A calibrated 5% test is wrong on null data ~ Binomial(200, 0.05) times: P(> 20 of 200) = 0.0014
# (stats.binom.sf(20, 200, 0.05)), so ">= 180 of 200 right" fails a correct test 1 time in ~700.
WRONG_MAX = 20
assert stats.binom.sf(WRONG_MAX, 200, 0.05) < 0.002


def _synthetic(seed, b_plain, b_redrawn, sd=0.3, rho=0.5, pairs=PAIRS):
    rng = np.random.default_rng(seed)
    N = np.repeat(SIZES, pairs).astype(float)
    z1 = rng.standard_normal(N.size)
    z2 = rho * z1 + np.sqrt(1 - rho ** 2) * rng.standard_normal(N.size)
    return N, (A / np.sqrt(N) + b_plain) * np.exp(sd * z1), (A / np.sqrt(N) + b_redrawn) * np.exp(sd * z2)


def _verdicts(b_plain, b_redrawn, **kw):
    return [closure_verdict(*_synthetic(s, b_plain, b_redrawn, **kw)) for s in range(200)]


def test_verdict_null_redraw_changes_nothing():
    """Null: redrawing leaves the systematic part as it is (b = 0.02 in both): "does not hold"."""
    vs = _verdicts(0.02, 0.02)
    assert sum(v.verdict == "does not hold" for v in vs) >= 200 - WRONG_MAX
    assert sum(v.parts["reduces"].holds for v in vs) <= WRONG_MAX


def test_verdict_null_at_the_boundary_of_most():
    """Null of part 3 at its boundary: redrawing removes exactly half (b_redrawn = b_plain / 2)."""
    vs = _verdicts(0.02, 0.01)
    assert sum(v.parts["removes_most"].holds for v in vs) <= WRONG_MAX
    assert sum(v.verdict == "holds" for v in vs) <= WRONG_MAX


def test_verdict_without_a_systematic_part_is_not_testable():
    """Null of the premise: no systematic part in either variant: the claim is not testable."""
    vs = _verdicts(0.0, 0.0)
    assert sum(v.parts["premise"].holds for v in vs) <= WRONG_MAX
    assert sum(v.verdict == "not testable at this profile" for v in vs) >= 200 - WRONG_MAX
    assert sum(v.verdict == "holds" for v in vs) <= WRONG_MAX


def test_verdict_planted_removal_holds():
    """Planted: redrawing removes the whole systematic part (b 0.02 -> 0)."""
    vs = _verdicts(0.02, 0.0)
    assert sum(v.verdict == "holds" for v in vs) >= 200 - WRONG_MAX
    v = vs[0]
    assert v.parts["premise"].holds and v.interval is not None
    assert v.interval[0] <= v.statistic <= v.interval[1]
    assert v.statistic == pytest.approx(1.0, abs=0.5)  # the share removed: all of it, within the noise


def test_verdict_planted_partial_removal_holds_in_part():
    """Planted: redrawing removes a quarter (b 0.02 -> 0.015), with little noise: "holds in part"."""
    vs = _verdicts(0.02, 0.015, sd=0.05)
    assert sum(v.verdict == "holds in part" for v in vs) >= 200 - WRONG_MAX


def test_verdict_counts_failed_runs_and_refuses_tiny_samples():
    N, ep, er = _synthetic(0, 0.02, 0.0)
    ep[0], er[5] = np.nan, np.nan
    v = closure_verdict(N, ep, er)
    assert v.excluded == 2 and v.n == N.size - 2
    assert "1 plain and 1 redrawn runs failed" in v.note
    N2, ep2, er2 = _synthetic(0, 0.02, 0.0, pairs=2)
    assert closure_verdict(N2, ep2, er2).verdict == "not testable at this profile"
    assert closure_verdict(N[N < 5000], ep[N < 5000], er[N < 5000]).verdict == "not testable at this profile"


@pytest.mark.parametrize("args, kwargs, field", [
    (([100, 1000], [0.1, 0.1], [0.1]), {}, "err_plain"),
    (([100, 1000], [0.1, -0.1], [0.1, 0.1]), {}, "err_plain"),
    (([100, 1000], [0.1, 0.1], [0.1, np.inf]), {}, "err_redrawn"),
    (([100, 0], [0.1, 0.1], [0.1, 0.1]), {}, "N"),
    (([100, 1000], [0.1, 0.1], [0.1, 0.1]), {"most": 1.0}, "most"),
    (([100, 1000], [0.1, 0.1], [0.1, 0.1]), {"alpha": 0.0}, "alpha"),
])
def test_verdict_bad_input(args, kwargs, field):
    with pytest.raises(ll.InvalidParameterError, match=field):
        closure_verdict(*args, **kwargs)


# ----------------------------------------------------------------------------- the job
def test_redrawn_job_matches_its_parts():
    """compare_redrawn's numbers equal those recomputed here from learn_vectors(redraw_every=2) and
    learn_overlaps, from the same initial vectors and trials as the plain E9 job."""
    kw = dict(activation="erf", task="teacher", N=64, lr=0.2, seed=1, epochs=5, n_trials=1, dt=0.1, T_max=1.5,
              dtype="float64")
    job = compare_redrawn(**kw, redraw_every=2)
    arch = ll.Architecture(activation="erf")
    X0 = ll.sample_vectors(arch, 64, seed=1, sigma=ll.sigma_from_named(arch, ll.INIT_OVERLAPS))
    task = ll.e9_task("teacher", "erf", 1, 0.1, 1.5)
    full = ll.learn_vectors(arch, X0, task, 0.2, 5, seed=1, redraw_every=2, progress=False)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), task, 0.2, 5, rule="exact", seed=1, progress=False)
    assert job["err_end"] == pytest.approx(np.max(np.abs(full.final_sigma - theory.final_sigma)), rel=1e-12)
    np.testing.assert_allclose(job["loss_full"], full.loss, rtol=1e-12)
    plain = ll.compare_nonlinear(**kw)
    assert set(job) == set(plain)  # the same measures, so that sweep frames index both alike
    np.testing.assert_allclose(plain["loss_full"][:2], job["loss_full"][:2], rtol=1e-12)  # same until the redraw
    with pytest.raises(ll.InvalidParameterError, match="redraw_every"):
        compare_redrawn(**kw, redraw_every=0)


@pytest.mark.slow
def test_run_closure_end_to_end_counts_missing_jobs():
    """run_closure on a tiny grid, through a sweep that loses one redrawn job: the job is counted
    as failed (NaN row, excluded pair), nothing is dropped."""
    def sweep(name, fn, jobs):
        rows = [dict(job, **fn(**job)) for job in jobs if not (name == "e9-closure" and job["seed"] == 0
                                                                 and job["N"] == 40)]
        return pd.DataFrame(rows).set_index(list(jobs[0]))
    res = cl.run_closure([20, 40, 80], [3, 3, 3], redraw_every=1, task="teacher", epochs=3, n_trials=1, T_max=1.5,
                         sweep=sweep)
    assert len(res.runs) == 18 and int(res.runs.failed.sum()) == 1
    assert res.verdict.excluded == 1 and res.verdict.n == 8
    assert res.table.loc[("redrawn", 40), "failed"] == 1
    assert list(res.fits.index) == ["plain", "redrawn"]
