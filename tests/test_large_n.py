"""The large-N chapter's comparison and verdicts (experiments/large_n.py), each checked against an
independent reference:

* :func:`large_n_comparison` against direct calls of the three learners (``learn_vectors``,
  ``learn_overlaps``, ``learn_mean_field``) on the same starts and trials;
* :func:`vanishing_error_test` on data whose answer is known (null: an error with an
  N-independent part; planted: pure 1/sqrt(N) error). Over 200 seeds a 5% test says "holds" on
  null data about 10 times; more than 20 (the bound asserted: >= 90% "does not hold") has
  binomial(200, 0.05) probability below 1e-3. The planted case holds unless the levels-off test
  (level 5%) rejects by chance or the fall is missed: at least 90% expected, >= 80% asserted
  (binomial(200, 0.9) falls below 160 with probability below 1e-4);
* the fits against ``bootstrap_error_scaling`` called directly, the weighted kurtosis against
  scipy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lowrank_learning as ll
from lowrank_learning.analysis import verdicts as V
from lowrank_learning.experiments import large_n as L

SEEDS = 200
# the paper profile's design: seeds per size
N_PAPER = np.repeat([1e2, 1e3, 1e4, 1e5], [5, 5, 5, 2])


def _max_of_gaussians(rng, c=0.3):
    """Like the chapter's error: the largest of 10 overlap differences, each ~ N(0, c^2 / N)."""
    return np.max(np.abs(rng.standard_normal((N_PAPER.size, 10))), axis=1) * c / np.sqrt(N_PAPER)


def _planted_frame(rng, b_closure=0.03, bad=0):
    df = pd.DataFrame({"activation": "erf", "N": N_PAPER.astype(int), "seed": np.arange(N_PAPER.size)})
    df["err_limit"] = _max_of_gaussians(rng)
    df["err_closure"] = _max_of_gaussians(rng) + b_closure
    df.loc[: bad - 1, "err_limit"] = np.nan
    return df.set_index(["activation", "N", "seed"])


# ----------------------------------------------------------------------------- the comparison
def test_jobs_are_the_e9_jobs():
    jobs = L.large_n_jobs([100, 1000], [3, 2], ["erf", "tanh"], lr=0.2, epochs=20, activations_largest=["erf"])
    e9 = ll.e9_jobs([100, 1000], [3, 2], ["erf", "tanh"], ["flipflop"], [0.2], epochs=20,
                    activations_largest=["erf"], dtype="float32")
    assert jobs == e9 and len(jobs) == 3 + 2 + 3


@pytest.mark.slow
def test_comparison_matches_direct_calls(tmp_path, monkeypatch):
    """Every error of the frame against the three learners called here on the same start and
    trials (a tiny flip-flop grid: erf, N = 40, 3 seeds, 8 epochs, in a private cache; slow: it
    compiles the three learners twice, ~40 s on one core)."""
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path))
    jobs = L.large_n_jobs([40], [3], ["erf"], lr=0.2, epochs=8, n_trials=2, dt=0.1, T_max=4.0)
    runs = ll.run_sweep("e9-nonlinear", ll.compare_nonlinear, jobs, workers=1, progress=False)
    frame = L.large_n_comparison(runs, nodes=(3, 3, 2, 2), limit_dtype="float64")


    assert len(frame) == 3 and frame.attrs["nodes"] == 3 * 3 * 2 * 2
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=4.0)
    for (act, N, seed), r in frame.iterrows():
        X0 = ll.sample_vectors(arch, N, seed=seed, sigma=ll.sigma_from_named(arch, ll.INIT_OVERLAPS))
        full = ll.learn_vectors(arch, np.asarray(X0, dtype="float32"), task, 0.2, 8, seed=seed, progress=False)
        clo = ll.learn_overlaps(arch, ll.overlaps(X0), task, 0.2, 8, rule="exact", seed=seed, progress=False)
        lim = ll.learn_mean_field(arch, ll.overlaps(X0), task, 0.2, 8, nodes=(3, 3, 2, 2), seed=seed)
        f, c, m = (ll.flatten(arch, np.asarray(t.final_sigma, dtype=float)) for t in (full, clo, lim))
        # same computations (the sweep's run, the ensemble member): rounding of the float32 network
        # and of the ensemble's summation order, far below the errors compared (>= 1e-5 here)
        np.testing.assert_allclose(r.sigma_full, f, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.sigma_closure, c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.sigma_limit, m, rtol=0, atol=1e-12)
        assert r.err_closure == pytest.approx(np.max(np.abs(f - c)), abs=1e-9)
        assert r.err_limit == pytest.approx(np.max(np.abs(f - m)), abs=1e-9)
        assert r.err_closure_limit == pytest.approx(np.max(np.abs(c - m)), abs=1e-12)
        # the closure error is E9's err_end of the same run
        assert r.err_closure == pytest.approx(runs.xs((N, seed), level=["N", "seed"]).err_end.iloc[0], abs=1e-9)


def test_comparison_refuses_bad_input():
    runs = pd.DataFrame({"task": ["flipflop"], "diff_end": [np.zeros(10)]})
    with pytest.raises(ll.InvalidParameterError, match="limit_dtype"):
        L.large_n_comparison(runs, limit_dtype="float16")
    with pytest.raises(ll.InvalidParameterError, match="nodes"):
        L.large_n_comparison(runs, nodes=(3, 3))
    with pytest.raises(ll.InvalidParameterError, match="runs"):
        L.large_n_comparison(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ll.InvalidParameterError, match="activations"):
        L.large_n_jobs([10, 20], [1, 1], ["linear"])


def test_scaling_is_bootstrap_error_scaling():
    frame = _planted_frame(np.random.default_rng(4))
    tab = L.large_n_scaling(frame, n_boot=100, seed=3)
    df = frame.reset_index()
    for ref, col in (("limit", "err_limit"), ("closure", "err_closure")):
        want = ll.bootstrap_error_scaling(df.N, df[col], n_boot=100, seed=3)
        row = tab.loc[("erf", ref)]
        for name in ("a", "b", "b_free", "slope"):
            assert (row[name], row[name + "_lo"], row[name + "_hi"]) == pytest.approx(want[name])
        assert row["runs"] == N_PAPER.size and row["excluded"] == 0


# ----------------------------------------------------------------------------- the verdicts
def test_vanishing_error_on_an_error_with_a_systematic_part_does_not_hold_at_the_stated_rate():
    """Null: a flat error (b only, log-normal seed noise): the fall test holds by chance at 5%."""
    k = sum(L.vanishing_error_test(N_PAPER, 0.03 * np.exp(0.3 * np.random.default_rng(s).standard_normal(N_PAPER.size)),
                                   n_boot=20).holds for s in range(SEEDS))
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds'"


def test_vanishing_error_on_finite_size_plus_a_systematic_part_does_not_hold():
    """Null as E9 found it for the closure: a / sqrt(N) + b with b = 0.02 (the crossover near N = 200)."""
    k = sum(L.vanishing_error_test(N_PAPER, _max_of_gaussians(np.random.default_rng(s)) + 0.02, n_boot=20).holds
            for s in range(SEEDS))
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds'"


def test_vanishing_error_on_pure_finite_size_error_holds():
    k = sum(L.vanishing_error_test(N_PAPER, _max_of_gaussians(np.random.default_rng(s)), n_boot=20).holds
            for s in range(SEEDS))
    assert k >= 160, f"only {k} of {SEEDS} planted runs said 'holds'"


def test_vanishing_error_statistic_and_p_against_scipy():
    rng = np.random.default_rng(1)
    err = _max_of_gaussians(rng)
    v = L.vanishing_error_test(N_PAPER, err, n_boot=50)
    res = stats.linregress(np.log(N_PAPER), np.log(err))
    assert v.statistic == pytest.approx(res.slope, rel=1e-12)
    assert v.p == pytest.approx(stats.t.cdf(res.slope / res.stderr, N_PAPER.size - 2), rel=1e-10)
    assert L.vanishing_error_test([10, 100], [0.1, 0.03]).verdict == V.NOT_TESTABLE


def test_verdicts_on_a_planted_frame():
    """Networks converge to the limit, the closure keeps b = 0.03: claim 1 holds in part."""
    v = L.large_n_verdicts(_planted_frame(np.random.default_rng(0)), n_boot=200)
    assert v["converges_to_limit"].holds and not v["limit_levels_off"].holds
    assert not v["converges_to_closure"].holds and v["closure_levels_off"].holds
    assert v["claim1"].verdict == V.HOLDS_IN_PART and v["claim1"].figure == "Fig. 4a-c"
    # both references exact: claim 1 holds
    v2 = L.large_n_verdicts(_planted_frame(np.random.default_rng(0), b_closure=0.0), n_boot=200)
    assert v2["claim1"].verdict == V.HOLDS


def test_verdicts_count_runs_left_out():
    v = L.large_n_verdicts(_planted_frame(np.random.default_rng(0), bad=2), n_boot=50)
    assert v["converges_to_limit"].excluded == 2 and v["converges_to_limit"].n == N_PAPER.size - 2
    assert "2 of 17 runs" in v["converges_to_limit"].note
    with pytest.raises(ll.InvalidParameterError, match="tanh"):
        L.large_n_verdicts(_planted_frame(np.random.default_rng(0)), activation="tanh")


# ----------------------------------------------------------------------------- the moved distribution
def test_weighted_kurtosis_against_scipy():
    rng = np.random.default_rng(2)
    X = rng.standard_t(6, size=(500, 3))
    np.testing.assert_allclose(L.weighted_excess_kurtosis(X), stats.kurtosis(X, axis=0, bias=True), rtol=1e-12)
    # integer weights are repeated rows
    w = rng.integers(1, 4, size=500)
    np.testing.assert_allclose(L.weighted_excess_kurtosis(X, w),
                               stats.kurtosis(np.repeat(X, w, axis=0), axis=0, bias=True), rtol=1e-10)
    with pytest.raises(ll.InvalidParameterError, match="weights"):
        L.weighted_excess_kurtosis(X, -np.ones(500))
    with pytest.raises(ll.InvalidParameterError, match="zero variance"):
        L.weighted_excess_kurtosis(np.ones((5, 2)))


def test_trained_loadings_against_direct_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path))
    out = L.trained_loadings("erf", 60, seed=1, epochs=4, n_trials=2, T_max=4.0, cloud_nodes=256)
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=4.0)
    X0 = ll.sample_vectors(arch, 60, seed=1, sigma=ll.sigma_from_named(arch, ll.INIT_OVERLAPS))
    full = ll.learn_vectors(arch, np.asarray(X0, dtype="float32"), task, 0.2, 4, seed=1, progress=False)
    np.testing.assert_allclose(out["X_full"], np.asarray(full.final_vectors, dtype=float), rtol=0, atol=0)
    assert out["nodes"].shape == (256, 4) and out["weights"].shape == (256,)
    # the moved nodes' second moments are the limit's final overlaps (float32 rounding)
    np.testing.assert_allclose(np.einsum("n,ni,nj->ij", out["weights"], out["nodes"], out["nodes"]),
                               out["sigma_limit"], rtol=0, atol=1e-5)
