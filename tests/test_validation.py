"""E9 measures: non-Gaussianity against closed forms, error-scaling fits on synthetic data, the
loss-drop epoch, and the E9 jobs against independent references."""

import numpy as np
import pytest
from scipy import special, stats

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
def test_gaussian_distance_is_small_for_gaussian_rows_and_shrinks_like_one_over_sqrt_N():
    """For Gaussian rows the distance is pure sampling error, ~ c / sqrt(N): 100x more rows must
    give 10x less distance. The tolerance comes from the seed-to-seed scatter: the ratio of the
    mean distances is compared with 1/10 within 4 of its standard errors (delta method), plus
    0.01 (10%) for the slowly varying prefactor: sqrt(N) times the distance of a Gaussian sample is
    not quite constant (the tails are unbounded); measured 0.79 at N = 1e3 and 0.84 at 1e5."""
    C = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    L = np.linalg.cholesky(C)
    d = {}
    for n, n_seeds in ((1_000, 30), (100_000, 5)):
        d[n] = np.array([ll.gaussian_distance(np.random.default_rng(s).standard_normal((n, 3)) @ L.T, seed=s)
                         for s in range(n_seeds)])
    m1, m2 = d[1_000].mean(), d[100_000].mean()
    se1 = d[1_000].std(ddof=1) / np.sqrt(d[1_000].size)
    se2 = d[100_000].std(ddof=1) / np.sqrt(d[100_000].size)
    ratio = m2 / m1
    se_ratio = ratio * np.hypot(se1 / m1, se2 / m2)
    assert abs(ratio - 0.1) < 4 * se_ratio + 0.01, (ratio, se_ratio)
    assert m1 < 0.1


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


# --- plain-NumPy references (no package code): the full network, its loss and a finite-difference
# gradient; the mean-field (overlap) model with the closed-form erf gain and the exact overlap map.
def _phi(x):  # erf(sqrt(pi)/2 x): slope 1 at 0
    return special.erf(np.sqrt(np.pi) / 2 * x)


def _full_outputs(X, inputs, dt):
    """h_{t+1} = h_t + dt (-h_t + u (v . phi(h_t))/N + m x_t), y_t = z . phi(h_{t+1}) / N."""
    N = X.shape[0]
    m, u, v_, z = X.T
    B, T, _ = inputs.shape
    y = np.zeros((B, T, 1))
    for b in range(B):
        h = np.zeros(N)
        for t in range(T):
            h = h + dt * (-h + u * (v_ @ _phi(h)) / N + m * inputs[b, t, 0])
            y[b, t, 0] = z @ _phi(h) / N
    return y


def _mean_field_outputs(S, inputs, dt):
    """Large-N limit: a . phi(h)/N -> (S_am kappa + S_au lambda) / sqrt(1 + pi Delta / 2), with
    Delta = Var(h) = S_mm kappa^2 + 2 S_mu kappa lambda + S_uu lambda^2 (E[phi'] for erf);
    vectors in the order m, u, v, z."""
    B, T, _ = inputs.shape
    y = np.zeros((B, T, 1))

    def gain(k, lam):
        return 1 / np.sqrt(1 + np.pi / 2 * (S[0, 0] * k * k + 2 * S[0, 1] * k * lam + S[1, 1] * lam * lam))

    for b in range(B):
        k, lam = 0.0, 0.0
        for t in range(T):
            k_new = k + dt * (-k + inputs[b, t, 0])
            lam_new = lam + dt * (-lam + (S[2, 0] * k + S[2, 1] * lam) * gain(k, lam))
            k, lam = k_new, lam_new
            y[b, t, 0] = (S[3, 0] * k + S[3, 1] * lam) * gain(k, lam)
    return y


def _loss(y, targets):  # masked_mean with a full mask
    return float(np.mean((y - targets) ** 2))


def _fd_grad(f, A, h):
    """Central finite differences of the scalar f at every entry of A."""
    g = np.zeros_like(A)
    for idx in np.ndindex(A.shape):
        Ap, Am = A.copy(), A.copy()
        Ap[idx] += h
        Am[idx] -= h
        g[idx] = (f(Ap) - f(Am)) / (2 * h)
    return g


def _flat(S):
    """The 10 overlaps in the order mm, mu, vm, zm, uu, vu, zu, vv, zv, zz (vectors m, u, v, z)."""
    i = {"m": 0, "u": 1, "v": 2, "z": 3}
    return np.array([S[i[n[0]], i[n[1]]] for n in ("mm", "mu", "vm", "zm", "uu", "vu", "zu", "vv", "zv", "zz")])


def _teacher_sigma():
    T = v.TEACHER_OVERLAPS
    return np.array([[T["mm"], T["mu"], T["vm"], T["zm"]], [T["mu"], T["uu"], T["vu"], T["zu"]],
                     [T["vm"], T["vu"], T["vv"], T["zv"]], [T["zm"], T["zu"], T["zv"], T["zz"]]])


def test_compare_nonlinear_against_plain_numpy_learners():
    """The job's full-network run equals gradient descent written here in NumPy (X <- X - eta N dL/dX,
    central finite differences), and its theory run equals the exact overlap map written here
    (Sigma <- (I - eta S) Sigma (I - eta S), S = G + G^T, G by finite differences of the mean-field
    loss over the 16 entries). Tolerance: central differences with step 1e-6 have truncation error
    ~1e-12 and rounding error ~eps |L| / h ~ 1e-10 per gradient entry; through 4 updates this moves
    the overlaps by < 1e-8, so 1e-6 leaves room and is far below the ~1e-2 errors the job measures."""
    kw = dict(activation="erf", task="teacher", N=32, lr=0.2, seed=1, epochs=4, n_trials=1, dt=0.1, T_max=1.5)
    r = ll.compare_nonlinear(**kw, dtype="float64")
    batch = v.teacher_batch("erf", 1, 0.1, 1.5)
    x, tg = np.asarray(batch.inputs), np.asarray(batch.targets)
    arch = ll.Architecture(activation="erf")
    X = np.asarray(ll.sample_vectors(arch, 32, seed=1, sigma=ll.sigma_from_named(arch, v.INIT_OVERLAPS)), float)
    N = X.shape[0]
    S = X.T @ X / N
    loss_full, loss_th = [], []
    for _ in range(4):
        f = lambda A: _loss(_full_outputs(A, x, 0.1), tg)
        loss_full.append(f(X))
        X = X - 0.2 * N * _fd_grad(f, X, 1e-6)
        fs = lambda A: _loss(_mean_field_outputs(A, x, 0.1), tg)
        loss_th.append(fs(S))
        G = _fd_grad(fs, S, 1e-6)
        P = np.eye(4) - 0.2 * (G + G.T)
        S = P @ S @ P
    diff = X.T @ X / N - S
    np.testing.assert_allclose(r["loss_full"], loss_full, rtol=1e-6)
    np.testing.assert_allclose(r["loss_theory"], loss_th, rtol=1e-6)
    assert r["err_end"] == pytest.approx(np.max(np.abs(diff)), rel=1e-6)
    np.testing.assert_allclose(r["diff_end"], _flat(diff), rtol=1e-6, atol=1e-9)
    c = X - X.mean(0)
    np.testing.assert_allclose(r["kurtosis_end"], np.mean(c ** 4, 0) / np.mean(c ** 2, 0) ** 2 - 3, rtol=1e-6)
    assert r["err_curve"].shape == (5,) and r["err_curve"][0] < 1e-14  # the theory starts at X0's overlaps
    assert r["err_end"] > 1e-4  # N = 32 is far from the large-N limit: the comparison is not vacuous
    # the default float32 full network: the same comparison to float32 rounding (eps 6e-8 times
    # ~1e2 operations per entry, over 4 updates: 1e-5)
    r32 = ll.compare_nonlinear(**kw)
    np.testing.assert_allclose(r32["diff_end"], r["diff_end"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(r32["loss_full"], r["loss_full"], rtol=1e-5)
    assert r32["err_curve"][0] < 1e-6


def test_teacher_batch_targets_are_the_teacher_outputs():
    """Targets against the plain-NumPy mean-field model above (its own loop and the closed-form erf
    gain), and a plain loop of a large full network drawn with the teacher's covariance (N = 20000:
    its outputs scatter around the mean-field ones by ~|y| / sqrt(N); bound: 5 times that).
    Inputs: the documented draw, input_std * N(0, 1) from the seed."""
    b = v.teacher_batch("erf", n_trials=2, dt=0.1, T_max=3.0)
    x = 1.5 * np.random.default_rng(1234).standard_normal((2, 30, 1))
    np.testing.assert_allclose(b.inputs, x, rtol=0, atol=0)
    S = _teacher_sigma()
    np.testing.assert_allclose(b.targets, _mean_field_outputs(S, x, 0.1), rtol=1e-10, atol=1e-12)
    n = 20_000
    X = np.random.default_rng(0).standard_normal((n, 4)) @ np.linalg.cholesky(S).T
    y_full = _full_outputs(X, x, 0.1)
    scale = np.max(np.abs(b.targets)) + np.sqrt(np.max(np.diag(S)))
    assert np.max(np.abs(y_full - b.targets)) < 5 * scale / np.sqrt(n)
    assert b.inputs.shape == (2, 30, 1) and b.loss == "masked_mean"


def test_e9_jobs_grid():
    jobs = ll.e9_jobs([100, 1000], [3, 1], activations=["erf"], tasks=["flipflop"], lrs=[0.1, 0.2],
                      epochs=50, epochs_largest=20)
    assert len(jobs) == 2 * (3 + 1)
    assert {j["epochs"] for j in jobs if j["N"] == 1000} == {20}
    assert {j["epochs"] for j in jobs if j["N"] == 100} == {50}
    assert {j["dtype"] for j in jobs} == {"float32"}
    assert [j["N"] for j in jobs] == sorted((j["N"] for j in jobs), reverse=True)  # largest first
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
