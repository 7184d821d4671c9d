"""Latent reduction: full network output vs the reduced model (book/theory.md, section 3).

References are written here as numpy loops over time steps, in float64, in the equations of
book/theory.md: the network (eq-network, eq-readout) and the reduced model (eq-latent,
eq-delta, eq-gain, eq-reduced; tanh's gain by scipy's adaptive quadrature). Gradients are
checked by the complex step on the numpy loop, Im L(X + i h D) / h = dL/dX . D to round-off.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

import lowrank_learning as ll
from lowrank_learning.core import network
from lowrank_learning.core.network import _scan_span

U = np.finfo(np.float64).eps / 2  # unit round-off of float64


def _phi(act, x):
    """The unit nonlinearity of book/theory.md, section 1 (complex arguments allowed)."""
    if act == "linear":
        return x
    if act == "erf":
        return special.erf(np.sqrt(np.pi) * x / 2)
    return np.tanh(x)


def _network_loop(arch, X, inputs, dt):
    """eq-network and eq-readout by a loop over steps: outputs (B, T, Dout) and states (B, T, N) h_1..h_T."""
    s = arch.slices
    M, Uv, V, Z = (X[:, s[k]] for k in ("M", "U", "V", "Z"))
    N = X.shape[0]
    B, T, _ = inputs.shape
    h = np.zeros((B, N), dtype=X.dtype)
    ys, hs = [], []
    for t in range(T):
        h = h + dt * (-h + (_phi(arch.activation, h) @ V / N) @ Uv.T + inputs[:, t] @ M.T)
        ys.append(_phi(arch.activation, h) @ Z / N)
        hs.append(h)
    return np.stack(ys, axis=1), np.stack(hs, axis=1)


def _gain(act, delta):
    """eq-gain: 1 (linear), the erf closed form, or tanh's expectation by adaptive quadrature."""
    if act == "linear":
        return 1.0
    if act == "erf":
        return 1.0 / np.sqrt(1.0 + np.pi * delta / 2)
    if delta == 0:
        return 1.0
    f = lambda xi: np.exp(-xi * xi / 2) / np.sqrt(2 * np.pi) * (1 - np.tanh(np.sqrt(delta) * xi) ** 2)
    return integrate.quad(f, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13)[0]


def _reduced_loop(arch, S, inputs, dt):
    """eq-latent, eq-delta and eq-reduced by loops over trials and steps (any rank, n_in, n_out)."""
    s = arch.slices
    blk = lambda a, b: S[s[a], s[b]]
    B, T, _ = inputs.shape
    y = np.zeros((B, T, arch.n_out))
    for b in range(B):
        k, lam = np.zeros(arch.n_in), np.zeros(arch.rank)
        delta = 0.0
        for t in range(T):
            g = _gain(arch.activation, delta)
            k, lam = (k + dt * (-k + inputs[b, t]),
                      lam + dt * (-lam + (blk("V", "M") @ k + blk("V", "U") @ lam) * g))
            delta = k @ blk("M", "M") @ k + 2 * k @ blk("M", "U") @ lam + lam @ blk("U", "U") @ lam
            y[b, t] = (blk("Z", "M") @ k + blk("Z", "U") @ lam) * _gain(arch.activation, delta)
    return y


@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 3000), rank=st.integers(1, 3), n_in=st.integers(1, 2),
       n_out=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_linear_latent_is_exact(N, rank, n_in, n_out, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out)
    rng = np.random.default_rng(seed)
    X = ll.sample_vectors(arch, N, seed=seed)
    inputs = rng.standard_normal((3, 40, n_in))
    y_full, h = ll.run_network(arch, X, inputs, 0.1, return_states=True)
    y_lat, (kappa, lam) = ll.run_latent(arch, ll.overlaps(X), inputs, 0.1, return_latents=True)
    scale = np.max(np.abs(y_full)) + 1e-300
    np.testing.assert_allclose(np.asarray(y_lat), np.asarray(y_full), atol=1e-10 * scale)
    # the hidden state is exactly M kappa + U lambda
    s = arch.slices
    h_lat = np.einsum("nd,btd->btn", X[:, s["M"]], kappa[:, 1:]) + np.einsum(
        "nr,btr->btn", X[:, s["U"]], lam[:, 1:])
    np.testing.assert_allclose(h_lat, np.asarray(h), atol=1e-10 * (np.max(np.abs(h)) + 1e-300))


@pytest.mark.parametrize("act, rank, n_in, n_out", [
    ("linear", 2, 2, 1), ("erf", 1, 1, 1), ("erf", 2, 1, 2), ("tanh", 1, 1, 1), ("tanh", 2, 2, 1)])
def test_run_latent_equals_plain_loop_reduced_model(act, rank, n_in, n_out):
    """run_latent against eq-reduced as a numpy loop (tanh: gain by adaptive quadrature).

    Tolerance: the two compute the same recursion in a different order, each step adding a few
    ulps relative to the size of its terms (K-length sums, the gain); the reduced model here
    contracts (|eig Sigma_VU| Gain < 1 in these draws, checked below), so over T = 30 steps the
    round-off stays below T (K + 10) u (5e-14 relative at K = 6). tanh adds the error of the two
    quadratures, each entering the T steps once: scipy's below 1e-13 (requested), the package's
    trapezoidal rule far below that (book/theory.md, section 3: step 0.025 on [-8.5, 8.5]; the
    integrand is analytic in the strip |Im xi| < pi / (2 sqrt(Delta)), so the rule's error is of
    order exp(-2 pi (pi / (2 sqrt(Delta))) / 0.025) < 1e-30 for Delta < 9, and the Gaussian mass
    cut off beyond 8.5 is 2e-17): T (K + 10) u + T 1e-13 relative."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(rank * 10 + n_in)
    F = rng.standard_normal((2 * arch.K, arch.K))
    S = F.T @ F / (2 * arch.K) * 0.6
    assert np.max(np.abs(np.linalg.eigvals(S[arch.slices["V"], arch.slices["U"]]))) < 1.0
    inputs = rng.standard_normal((2, 30, n_in))
    y_ref = _reduced_loop(arch, S, inputs, 0.1)
    y = np.asarray(ll.run_latent(arch, S, inputs, 0.1))
    tol = 30 * (arch.K + 10) * U + (30 * 1e-13 if act == "tanh" else 0.0)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol * np.max(np.abs(y_ref)))


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_meanfield_error_shrinks_as_one_over_sqrt_N(act):
    """Nonlinear units: the full network approaches the mean-field output with an error of order
    1/sqrt(N) (book/theory.md, section 3), i.e. N x (mean squared error) tends to a constant.

    S_N networks per size (run_network's simulation, vectorised over the networks): 48 at
    N = 100 (cheap, and their errors spread most), 12 at N = 10000.
    Q_N = N x (mean over networks of the mean squared output error) estimates that constant at
    each N; under 1/sqrt(N) scaling log(Q_100 / Q_10000) = 0 up to (i) sampling: its standard
    error, by the delta method, is sqrt(cv_100^2 / S_100 + cv_10000^2 / S_10000), with cv the
    coefficient of variation of the per-network errors measured here, and (ii) the next order of
    the expansion, a relative O(1/sqrt(N)) = 0.1 correction of the error at N = 100, 0.2 of its
    square. The check allows 3 standard errors plus 0.2. A power law N^-a gives
    |log ratio| = |2a - 1| log(100): 2.3 for a = 1/4, 4.6 for no convergence."""
    arch = ll.Architecture(activation=act)
    sigma = ll.sigma_from_named(arch, {"zm": 0.3, "zu": 0.5, "vm": 0.5, "vu": 0.9, "mu": 0.2,
                                       "zv": 0.1, "mm": 1.0, "uu": 1.5, "vv": 1.3, "zz": 1.0})
    ff = ll.tasks.flip_flop(n_trials=4, dt=0.05, T_max=6.0, wait_min=2.0, wait_max=3.0,
                            input_amplitude=2.0)
    batch = ff(jax.random.PRNGKey(0))
    y_mf = np.asarray(ll.run_latent(arch, sigma, batch.inputs, batch.dt))
    Q, var = {}, {}
    for N, S in ((100, 48), (10000, 12)):
        Xs = jnp.asarray(np.stack([ll.sample_vectors(arch, N, seed=s, sigma=sigma) for s in range(S)]))
        y = np.asarray(jax.jit(jax.vmap(lambda X: network.scan_network(arch, X, batch.inputs, batch.dt)))(Xs))
        mse = np.mean((y - y_mf) ** 2, axis=(1, 2, 3))
        Q[N], var[N] = N * mse.mean(), (mse.std(ddof=1) / mse.mean()) ** 2 / S
    log_ratio = np.log(Q[100] / Q[10000])
    se = np.sqrt(var[100] + var[10000])
    assert abs(log_ratio) < 3 * se + 0.2, (Q, var, log_ratio, se)


def _loss_loop(arch, X, inputs, targets, dt):
    """eq-loss (sum_time, mask all ones) of the numpy loop network."""
    y, _ = _network_loop(arch, X, inputs, dt)
    return np.sum((y - targets) ** 2) * dt / inputs.shape[0]


# each example compiles the span simulation and its gradient (~4 s of CPU): 3 by default
@settings(max_examples=3, deadline=None)
@given(N=st.integers(1, 400), rank=st.integers(1, 3), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       act=st.sampled_from(ll.ACTIVATIONS), B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_span_simulation_equals_plain_loop(N, rank, n_in, n_out, act, B, seed):
    """The span simulation ((B, R) carries, rematerialised steps; run_network's path for large
    problems): outputs and states equal eq-network as a numpy loop, and the loss gradient's
    projections on random directions equal the complex-step derivative of that loop.

    Tolerance: per step the two add round-off of a length-N dot product (N u, Higham's bound)
    plus a few ulps (Euler update, phi), relative to the size of the state; earlier errors are
    amplified at most by A = (1 + dt max(0, ||U V^T||/N - 1))^T (|phi'| <= 1), so the bound is
    A T (N + K + 10) u relative to max |h| (states; 1e-12 at N = 400, T = 20, A = 1) and to the
    readout's scale max |Z|^T |phi(h)| / N (outputs). The complex step has no cancellation
    (h = 1e-30), so the directional derivative carries the same relative round-off, here
    relative to sum |dL/dX| |D|; 10x the bound covers the backward pass's second sweep."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    X = ll.sample_vectors(arch, N, seed=seed) * 1.5
    T, dt = 20, 0.1
    inputs = rng.standard_normal((B, T, n_in))
    targets = rng.standard_normal((B, T, n_out))
    batch = ll.Batch(inputs=jnp.asarray(inputs), targets=jnp.asarray(targets), dt=dt)
    # compiled whole, as run_network and the learners run it (op by op, each of its ~60 operations
    # and their transposes would compile on its own)
    y, h = (np.asarray(a) for a in jax.jit(_scan_span, static_argnums=(0, 3, 4))(
        arch, jnp.asarray(X), jnp.asarray(inputs), dt, True))
    y_ref, h_ref = _network_loop(arch, X, inputs, dt)
    s = arch.slices
    W = X[:, s["U"]] @ X[:, s["V"]].T / N
    amp = (1 + dt * max(0.0, np.linalg.norm(W, 2) - 1)) ** T
    bound = amp * T * (N + arch.K + 10) * U
    readout = np.max(np.abs(_phi(act, h_ref)) @ np.abs(X[:, s["Z"]]) / N)
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=bound * np.max(np.abs(h_ref)) + 1e-300)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=bound * readout + 1e-300)
    g = np.asarray(jax.jit(jax.grad(lambda X_: ll.loss_value(_scan_span(arch, X_, batch.inputs, dt, False), batch)))(
        jnp.asarray(X)))
    np.testing.assert_allclose(float(ll.loss_value(jnp.asarray(y_ref), batch)),
                               _loss_loop(arch, X, inputs, targets, dt), rtol=1e-13)
    step = 1e-30
    for d in range(3):
        D = rng.standard_normal(X.shape)
        cs = np.imag(_loss_loop(arch, X + 1j * step * D, inputs, targets, dt)) / step
        assert abs(np.sum(g * D) - cs) <= 10 * bound * np.sum(np.abs(g * D)) + 1e-300, (np.sum(g * D), cs)


def test_run_network_takes_the_span_path_for_large_problems(monkeypatch):
    """Both paths of run_network give the same outputs; the threshold picks one by B x T x N."""
    arch = ll.Architecture(activation="erf")
    X = jnp.asarray(ll.sample_vectors(arch, 50, seed=1))
    inputs = jnp.asarray(np.random.default_rng(0).standard_normal((2, 30, 1)))
    calls = []
    span = network._scan_span
    monkeypatch.setattr(network, "_scan_span", lambda *a: calls.append(1) or span(*a))
    y_direct = ll.run_network(arch, X, inputs, 0.1)
    assert not calls                                   # 3000 states: direct
    monkeypatch.setattr(network, "_SPAN_MIN_STATES", 3000)
    y_span = ll.run_network(arch, X, inputs, 0.1)
    assert calls                                       # at the threshold: span
    np.testing.assert_allclose(np.asarray(y_span), np.asarray(y_direct), rtol=0, atol=1e-13)
