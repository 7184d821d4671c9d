"""E9 measures: non-Gaussianity against closed forms, error-scaling fits on synthetic data, the
loss-drop epoch, and the E9 jobs against independent references."""

import numpy as np
import pytest
from scipy import stats

import lowrank_learning as ll
from lowrank_learning.experiments import validation as v


# ----------------------------------------------------------------------------- kurtosis
@pytest.mark.parametrize("draw, expected", [
    (lambda rng, n: rng.standard_normal(n), 0.0),
    (lambda rng, n: rng.uniform(-1, 1, n), -1.2),       # closed form: -6/5
    (lambda rng, n: rng.laplace(size=n), 3.0),          # closed form: 3
])
def test_excess_kurtosis_closed_forms(draw, expected):
    rng = np.random.default_rng(0)
    n = 200_000
    X = np.stack([draw(rng, n), draw(rng, n)], axis=1)
    k = ll.excess_kurtosis(X)
    assert k.shape == (2,)
    # standard error of the estimate: sqrt(24/n) for a Gaussian, larger for heavy tails
    tol = 8 * np.sqrt(24 / n) * (1 + abs(expected))
    np.testing.assert_allclose(k, expected, atol=tol)


def test_excess_kurtosis_matches_a_plain_formula():
    X = np.random.default_rng(1).standard_normal((500, 3)) ** 3
    c = X - X.mean(0)
    ref = np.mean(c ** 4, 0) / np.mean(c ** 2, 0) ** 2 - 3
    np.testing.assert_allclose(ll.excess_kurtosis(X), ref, rtol=1e-12)


# ----------------------------------------------------------------------------- distance
def test_gaussian_distance_is_small_for_gaussian_rows_and_shrinks_with_N():
    C = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    L = np.linalg.cholesky(C)
    d = {}
    for n in (1_000, 100_000):
        X = np.random.default_rng(2).standard_normal((n, 3)) @ L.T
        d[n] = ll.gaussian_distance(X, seed=0)
    assert d[100_000] < d[1_000] / 5  # ~1/sqrt(N) (10x fewer samples -> ~sqrt(100) larger)
    assert d[1_000] < 0.1


def test_gaussian_distance_one_dimension_matches_scipy_wasserstein():
    """1-d: the distance to N(0,1) quantiles equals scipy's W1 against a very fine quantile grid."""
    x = np.random.default_rng(3).exponential(size=4000)
    ours = ll.gaussian_distance(x[:, None], n_projections=1)
    z = (x - x.mean()) / x.std()
    ref_grid = stats.norm.ppf((np.arange(400_000) + 0.5) / 400_000)
    ref = stats.wasserstein_distance(z, ref_grid)
    assert ours == pytest.approx(ref, rel=2e-3)
    # a fair coin of +-1 is 0.40 from the Gaussian (closed form: E|Z| - ... = 2 phi(0) ... numerically)
    coin = np.where(np.random.default_rng(4).random(100_000) < 0.5, -1.0, 1.0)
    coin_ref = stats.wasserstein_distance(coin, ref_grid)
    assert ll.gaussian_distance(coin[:, None], n_projections=1) == pytest.approx(coin_ref, rel=1e-2)


def test_gaussian_distance_bad_input():
    with pytest.raises(ll.InvalidParameterError, match="at least 4 rows"):
        ll.gaussian_distance(np.ones((2, 3)))
    with pytest.raises(ll.InvalidParameterError, match="zero variance"):
        ll.gaussian_distance(np.ones((10, 2)))
    with pytest.raises(ll.InvalidParameterError, match="n_projections"):
        ll.gaussian_distance(np.random.default_rng(0).standard_normal((10, 2)), n_projections=0)


# ----------------------------------------------------------------------------- fits
def test_fit_error_scaling_recovers_synthetic_parameters():
    N = np.repeat([1e2, 1e3, 1e4, 1e5], 3)
    err = 0.3 / np.sqrt(N) + 2e-3
    fit = ll.fit_error_scaling(N, err)
    assert fit.a == pytest.approx(0.3, rel=1e-9)
    assert fit.b == pytest.approx(2e-3, rel=1e-9)
    assert fit.crossover == pytest.approx((0.3 / 2e-3) ** 2, rel=1e-8)
    assert fit.rms_residual < 1e-10
    np.testing.assert_allclose(fit(N), err, rtol=1e-9)


def test_fit_error_scaling_pure_finite_size_has_slope_minus_half_and_no_systematic_part():
    N = np.array([1e2, 1e3, 1e4, 1e5])
    fit = ll.fit_error_scaling(N, 0.5 / np.sqrt(N))
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.b == pytest.approx(0.0, abs=1e-15)
    assert fit.crossover == np.inf


def test_fit_error_scaling_bad_input():
    with pytest.raises(ll.InvalidParameterError, match="positive"):
        ll.fit_error_scaling([1, 10], [0.1, 0.0])
    with pytest.raises(ll.InvalidParameterError, match="distinct"):
        ll.fit_error_scaling([10, 10], [0.1, 0.2])
    with pytest.raises(ll.InvalidParameterError, match="same length"):
        ll.fit_error_scaling([10], [0.1])


# ----------------------------------------------------------------------------- drop
def test_loss_drop_epoch_of_a_sigmoidal_curve():
    e = np.arange(200)
    loss = np.exp(np.log(1e-4) / (1 + np.exp(-(e - 80.3))))  # log-loss halfway exactly at 80.3
    d = ll.loss_drop_epoch(loss)
    assert d == pytest.approx(80.3, abs=0.05)
    assert np.isnan(ll.loss_drop_epoch(np.linspace(1.0, 0.5, 50)))  # no drop by 10x
    with pytest.raises(ll.InvalidParameterError):
        ll.loss_drop_epoch(np.array([1.0, -1.0]))


# ----------------------------------------------------------------------------- jobs
def test_linear_exactness_job_is_at_rounding_level():
    r = ll.linear_exactness(N=50, seed=0, epochs=10, T_max=2.0)
    assert r["error"] < 1e-12 and r["loss_error"] < 1e-12


def test_compare_nonlinear_against_independent_runs():
    """The job's numbers equal those recomputed here from learn_vectors/learn_overlaps directly."""
    kw = dict(activation="erf", task="teacher", N=64, lr=0.2, seed=1, epochs=6, n_trials=1, dt=0.1, T_max=2.0)
    r = ll.compare_nonlinear(**kw, dtype="float64")
    arch = ll.Architecture(activation="erf")
    X0 = ll.sample_vectors(arch, 64, seed=1, sigma=ll.sigma_from_named(arch, v.INIT_OVERLAPS))
    task = v.teacher_batch("erf", 1, 0.1, 2.0)
    full = ll.learn_vectors(arch, X0, task, 0.2, 6, seed=1, progress=False)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), task, 0.2, 6, seed=1, progress=False)
    diff = full.final_sigma - theory.final_sigma
    assert r["err_end"] == pytest.approx(np.max(np.abs(diff)), rel=1e-12)
    np.testing.assert_allclose(r["diff_end"], ll.flatten(arch, diff), rtol=1e-12)
    np.testing.assert_allclose(r["loss_full"], full.loss, rtol=1e-12)
    np.testing.assert_allclose(r["kurtosis_end"], stats.kurtosis(full.final_vectors, axis=0), rtol=1e-10)
    assert r["err_curve"].shape == (7,) and r["err_curve"][0] < 1e-14  # the theory starts at X0's overlaps
    assert 0 < r["err_end"] < 0.1
    # the default float32 full network: same comparison to float32 rounding
    r32 = ll.compare_nonlinear(**kw)
    np.testing.assert_allclose(r32["diff_end"], r["diff_end"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(r32["loss_full"], r["loss_full"], rtol=1e-5)
    assert r32["err_curve"][0] < 1e-6


def test_teacher_batch_targets_are_the_teacher_outputs():
    b = v.teacher_batch("tanh", n_trials=2, dt=0.1, T_max=3.0)
    arch = ll.Architecture(activation="tanh")
    y = ll.run_latent(arch, ll.sigma_from_named(arch, v.TEACHER_OVERLAPS), b.inputs, 0.1)
    np.testing.assert_allclose(b.targets, y, rtol=1e-12)
    assert b.inputs.shape == (2, 30, 1) and b.loss == "masked_mean"


def test_e9_jobs_grid():
    jobs = ll.e9_jobs([100, 1000], [3, 1], activations=["erf"], tasks=["flipflop"], lrs=[0.1, 0.2],
                      epochs=50, epochs_largest=20)
    assert len(jobs) == 2 * (3 + 1)
    assert {j["epochs"] for j in jobs if j["N"] == 1000} == {20}
    assert {j["epochs"] for j in jobs if j["N"] == 100} == {50}
    assert {j["dtype"] for j in jobs} == {"float32"}
    with pytest.raises(ll.InvalidParameterError, match="same non-zero length"):
        ll.e9_jobs([100], [1, 2])
    with pytest.raises(ll.InvalidParameterError, match="dtype"):
        ll.e9_jobs([100], [1], dtype="float16")
    with pytest.raises(ll.InvalidParameterError, match="dtype"):
        ll.compare_nonlinear("erf", "teacher", 10, 0.1, 0, dtype="half")
    with pytest.raises(ll.InvalidParameterError, match="task"):
        ll.compare_nonlinear("erf", "nope", 10, 0.1, 0)
    with pytest.raises(ll.InvalidParameterError, match="activation"):
        ll.compare_nonlinear("linear", "teacher", 10, 0.1, 0)



def test_seconds_per_epoch_runs_once_untimed_then_times_each_repeat():
    import time

    calls = []

    def run(epochs):
        calls.append(epochs)
        time.sleep(0.002 * epochs)  # at least 2 ms per epoch

    median, best = ll.seconds_per_epoch(run, 5, 3)
    assert calls == [5, 5, 5, 5]  # one compiling run, then the three timed ones
    assert 0.002 <= best <= median < 1.0
