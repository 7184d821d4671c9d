"""Latent reduction: full network output vs the reduced model (book/theory.md, section 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll
from lowrank_learning.core import network
from lowrank_learning.core.network import _scan_span, network_step, split_vectors


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


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_meanfield_error_shrinks_with_N(act):
    """Nonlinear units: the mean-field output approaches the full network as N grows (~1/sqrt(N))."""
    arch = ll.Architecture(activation=act)
    sigma = ll.sigma_from_named(arch, {"zm": 0.3, "zu": 0.5, "vm": 0.5, "vu": 0.9, "mu": 0.2,
                                       "zv": 0.1, "mm": 1.0, "uu": 1.5, "vv": 1.3, "zz": 1.0})
    ff = ll.tasks.flip_flop(n_trials=4, dt=0.05, T_max=10.0, wait_min=2.0, wait_max=3.0,
                            input_amplitude=2.0)
    batch = ff(jax.random.PRNGKey(0))
    y_mf = np.asarray(ll.run_latent(arch, sigma, batch.inputs, batch.dt))
    errs = {}
    for N in (100, 1000, 10000):
        e = []
        for seed in range(4):
            X = ll.sample_vectors(arch, N, seed=seed, sigma=sigma)
            y = np.asarray(ll.run_network(arch, X, batch.inputs, batch.dt))
            e.append(np.sqrt(np.mean((y - y_mf) ** 2)))
        errs[N] = np.mean(e)
    # 100x more neurons: 1/sqrt(N) predicts a 10x smaller error; require at least 4x per 100x
    assert errs[1000] < errs[100]
    assert errs[10000] < errs[100] / 4, errs
    assert errs[10000] < 0.05 * np.sqrt(np.mean(y_mf**2)), errs


def _euler_reference(arch, X, inputs, dt):
    """The Euler recursion on the N-dimensional state, step by step (network_step in a scan)."""
    vectors = split_vectors(arch, X)

    def step(h, x_t):
        h_new, y = network_step(arch, vectors, h, x_t, dt)
        return h_new, (y, h_new)

    h0 = jnp.zeros((inputs.shape[0], X.shape[0]), X.dtype)
    _, (y, h) = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))
    return jnp.swapaxes(y, 0, 1), jnp.swapaxes(h, 0, 1)


@settings(max_examples=6, deadline=None)
@given(N=st.integers(1, 400), rank=st.integers(1, 3), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       act=st.sampled_from(ll.ACTIVATIONS), B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_span_simulation_equals_euler_recursion(N, rank, n_in, n_out, act, B, seed):
    """The span simulation ((B, R) carries, rematerialised steps; run_network's path for large
    problems): outputs, states and the loss gradient equal the plain Euler recursion on h (float64)."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    X = jnp.asarray(ll.sample_vectors(arch, N, seed=seed) * 1.5)
    inputs = jnp.asarray(rng.standard_normal((B, 20, n_in)))
    batch = ll.Batch(inputs=inputs, targets=jnp.asarray(rng.standard_normal((B, 20, n_out))), dt=0.1)
    y, h = _scan_span(arch, X, inputs, 0.1, return_states=True)
    y_ref, h_ref = _euler_reference(arch, X, inputs, 0.1)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=0,
                               atol=1e-12 * (float(jnp.max(jnp.abs(y_ref))) + 1e-300))
    np.testing.assert_allclose(np.asarray(h), np.asarray(h_ref), rtol=0,
                               atol=1e-12 * (float(jnp.max(jnp.abs(h_ref))) + 1e-300))
    g = jax.grad(lambda X_: ll.loss_value(_scan_span(arch, X_, inputs, 0.1, False), batch))(X)
    g_ref = jax.grad(lambda X_: ll.loss_value(_euler_reference(arch, X_, inputs, 0.1)[0], batch))(X)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0,
                               atol=1e-11 * (float(jnp.max(jnp.abs(g_ref))) + 1e-300))


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
