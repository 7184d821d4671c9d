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


# ----------------------------------------------------------------------------- E6 and E10 with the limit
def _flip_flop_start(N=4000, seed=0):
    arch = ll.Architecture(rank=1, activation="erf")
    return arch, ll.overlaps(ll.balanced_vectors(arch, N, seed))


def test_e6_limit_starts_where_the_closure_starts():
    """At epoch 0 the limit's rows are Gaussian with the run's overlaps: its overlaps and its loss
    equal the Gaussian closure's (closed-form erf gain) to the quadrature's accuracy, on the same trials."""
    import jax
    jax.config.update("jax_enable_x64", True)
    arch, S0 = _flip_flop_start()
    lim = L.e6_limit_runs(S0[None], [3], lr=0.05, epochs=2, n_trials=3, dt=0.1, T_max=6.0, nodes=(10, 10, 5, 5),
                          dtype="float64")
    clo = ll.learn_overlaps(arch, S0, ll.tasks.flip_flop(n_trials=3, dt=0.1, T_max=6.0), lr=0.05, epochs=2,
                            rule="exact", seed=3, progress=False)
    assert lim["sigma"].shape == (1, 3, 4, 4) and lim["loss"].shape == (1, 2)
    np.testing.assert_allclose(lim["sigma"][0, 0], S0, atol=1e-12)
    np.testing.assert_allclose(lim["loss"][0, 0], clo.loss[0], rtol=1e-6)
    # after one small step both have moved the same way to first order (the rows are still Gaussian)
    np.testing.assert_allclose(lim["sigma"][0, 1], clo.sigma_all[1], atol=1e-6)


def _fake(sigma, loss):
    from types import SimpleNamespace
    return SimpleNamespace(sigma_all=np.asarray(sigma), loss=np.asarray(loss))


def test_e6_with_limit_on_planted_runs():
    """Full networks planted as the limit plus a 1/sqrt(N) fluctuation: the test against the limit
    holds; against a closure that differs from each network by an N-independent 0.5 + N(0, 0.05^2)
    it does not."""
    rng = np.random.default_rng(0)
    epochs, runs, members = 30, [], []
    base = np.eye(4)[None] * np.linspace(1.0, 1.5, epochs + 1)[:, None, None]
    for N in (75, 150, 600):
        for s in range(3):
            noise = rng.normal(size=(epochs + 1, 4, 4)) / np.sqrt(N)
            full = _fake(base + noise, np.linspace(1, 0.1, epochs))
            offset = 0.5 + 0.05 * rng.normal(size=(epochs + 1, 4, 4))
            closure = _fake(base + noise - offset, np.linspace(1, 0.1, epochs))
            runs.append((N, s, full, closure))
            members.append(base)
    limit = {"sigma": np.stack(members), "loss": np.tile(np.linspace(1, 0.1, epochs), (len(runs), 1))}
    frame, v = L.e6_with_limit(runs, limit)
    assert len(frame) == 9 and set(v) == {"closure", "limit"}
    assert v["limit"].verdict == V.HOLDS and v["limit"].interval[0] <= -0.5 <= v["limit"].interval[1]
    assert v["closure"].verdict == V.DOES_NOT_HOLD
    assert np.all(frame["err_closure_limit"] > 0.4)
    # the error column is the root-mean-square over epochs of the largest overlap difference
    N, s, full, closure = runs[4]
    want = np.sqrt(np.mean(np.max(np.abs(full.sigma_all - base), axis=(1, 2)) ** 2))
    assert frame["err_limit"].iloc[4] == pytest.approx(want, rel=1e-12)


def test_e6_with_limit_refuses_mismatched_input():
    arch, S0 = _flip_flop_start(200)
    run = (200, 0, _fake(np.zeros((5, 4, 4)), np.ones(4)), _fake(np.zeros((5, 4, 4)), np.ones(4)))
    with pytest.raises(ll.InvalidParameterError, match="2 runs but the limit has 1"):
        L.e6_with_limit([run, run], {"sigma": np.zeros((1, 5, 4, 4)), "loss": np.ones((1, 4))})
    with pytest.raises(ll.InvalidParameterError, match="shapes"):
        L.e6_with_limit([run], {"sigma": np.zeros((1, 6, 4, 4)), "loss": np.ones((1, 5))})
    with pytest.raises(ll.InvalidParameterError, match="2 starts but 1 seeds"):
        L.e6_limit_runs(np.stack([S0, S0]), [0], 0.1, 2, 2, 0.1, 4.0)
    with pytest.raises(ll.InvalidParameterError, match="dtype"):
        L.e6_limit_runs(S0[None], [0], 0.1, 2, 2, 0.1, 4.0, dtype="float16")


def test_savings_with_limit_starts_as_the_closure_and_times_its_own_curves():
    """The first visit starts where E10's closure starts (Gaussian rows), and the learning times
    are those of its own loss curves (``savings``)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    arch = ll.Architecture(rank=1, activation="erf")
    starts = ll.random_overlaps(arch, 3, seed=4).sigma
    A = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=8.0)
    B = ll.tasks.exponential_filter(c=0.6, dt=0.1, T_max=8.0)
    lim = L.savings_with_limit(starts, A, B, 0.01, 40, 30, 0.05, nodes=(20, 20, 3, 3), dtype="float64")
    clo = ll.savings_experiment(arch, starts, A, B, 0.01, 40, 30, 0.05)
    np.testing.assert_allclose(lim["loss_first"][:, 0], clo["loss_first"][:, 0], rtol=1e-5)
    assert lim["loss_b"].shape == (3, 30) and lim["loss_again"].shape == (3, 40)
    want = ll.savings(lim["loss_first"], lim["loss_again"], 0.05)
    np.testing.assert_array_equal(lim["t_first"], want["t_first"])
    np.testing.assert_array_equal(lim["t_again"], want["t_again"])
    # B starts where the first visit ended: the limit's overlaps are continuous across the switch
    assert np.all(np.isfinite(lim["end_b"])) and not np.allclose(lim["end_b"], lim["end_first"])
    with pytest.raises(ll.InvalidParameterError, match="sigma0 must be"):
        L.savings_with_limit(starts[0], A, B, 0.01, 4, 3, 0.05)
