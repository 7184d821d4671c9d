"""Gaussian gains: closed form (erf) and Gauss-Hermite (tanh) vs scipy quadrature and Monte Carlo."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy import integrate, special, stats

import lowrank_learning as ll


def _phi_prime(act, x):
    if act == "erf":
        return np.exp(-np.pi / 4 * x**2)
    return 1.0 - np.tanh(x) ** 2


@pytest.mark.parametrize("act", ["erf", "tanh"])
@pytest.mark.parametrize("delta", [0.0, 1e-3, 0.3, 1.0, 4.0, 25.0, 100.0])
def test_gain_vs_quadrature(act, delta):
    ref, _ = integrate.quad(lambda x: _phi_prime(act, np.sqrt(delta) * x) * stats.norm.pdf(x),
                            -np.inf, np.inf, epsabs=1e-14, limit=200)
    assert abs(float(ll.gain(act, jnp.asarray(delta))) - ref) < 1e-9


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_gain_vs_monte_carlo(act):
    rng = np.random.default_rng(0)
    xi = rng.standard_normal(1_000_000)
    for delta in (0.5, 2.0):
        samples = _phi_prime(act, np.sqrt(delta) * xi)
        mc, se = samples.mean(), samples.std() / np.sqrt(xi.size)
        assert abs(float(ll.gain(act, jnp.asarray(delta))) - mc) < 5 * se


def test_erf_slope_one_and_linear_gain():
    x = jnp.linspace(-1e-4, 1e-4, 3)
    np.testing.assert_allclose(np.gradient(np.asarray(ll.phi("erf", x)), 1e-4), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ll.phi("erf", jnp.asarray(0.7))),
                               special.erf(np.sqrt(np.pi) / 2 * 0.7))
    assert float(ll.gain("linear", jnp.asarray(3.0))) == 1.0


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_gain_derivative_finite_at_zero(act):
    d = jax.grad(lambda x: ll.gain(act, x))(jnp.asarray(0.0))
    assert np.isfinite(float(d))
    d1 = float(jax.grad(lambda x: ll.gain(act, x))(jnp.asarray(0.5)))
    fd = (float(ll.gain(act, jnp.asarray(0.5 + 1e-6))) - float(ll.gain(act, jnp.asarray(0.5 - 1e-6)))) / 2e-6
    assert abs(d1 - fd) < 1e-6
