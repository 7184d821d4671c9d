"""ll.diagnose and the Monte Carlo verdict (analysis/diagnose.py)."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest
from scipy.stats import binom, kurtosis

import lowrank_learning as ll

ARCH = ll.Architecture(rank=2, n_in=2, n_out=1, activation="erf")


# ----------------------------------------------------------------------- monte_carlo_verdict
def test_monte_carlo_null_rate():
    """Observed value and null draws exchangeable: "holds" at most at the stated rate."""
    rng = np.random.default_rng(0)
    n_seeds, alpha = 400, 0.05
    holds = sum(ll.monte_carlo_verdict(v[0], v[1:], claim="c", alpha=alpha).holds
                for v in rng.standard_normal((n_seeds, 40)))
    assert holds <= binom.ppf(0.999, n_seeds, alpha)


def test_monte_carlo_planted_and_counts():
    null = np.arange(39.0)
    v = ll.monte_carlo_verdict(100.0, null, claim="c")
    assert v.holds and v.p == pytest.approx(1 / 40)
    assert ll.monte_carlo_verdict(20.0, null, claim="c").p == pytest.approx((1 + 19) / 40)
    assert ll.monte_carlo_verdict(100.0, null[:19], claim="c").verdict == "not testable at this profile"


@pytest.mark.parametrize("obs,null,match", [(np.nan, [1.0], "observed"), (1.0, [], "at least one"),
                                            (1.0, [1.0, np.inf], "1 of 2 null values")])
def test_monte_carlo_bad_input(obs, null, match):
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.monte_carlo_verdict(obs, null, claim="c")


# ----------------------------------------------------------------------- diagnose
def test_diagnose_against_direct_computation():
    X = ll.sample_vectors(ARCH, 300, seed=1)
    X0 = ll.sample_vectors(ARCH, 300, seed=2)
    task = ll.tasks.exponential_filter(c=0.3, dt=0.2, T_max=4.0)
    arch = ll.Architecture(rank=2, n_in=1, n_out=1, activation="erf")
    X, X0 = X[:, 1:], X0[:, 1:]
    d = ll.diagnose(arch, X, task, X_start=X0, reference={"a": 0.5, "b": 0.02, "source": "test"}, n_null=5)
    S = X.T @ X / 300
    np.testing.assert_allclose(d.sigma, S, rtol=1e-14)
    assert d.visible == arch.visible_names and d.invisible == arch.invisible_names
    np.testing.assert_allclose(d.kurtosis, kurtosis(X, axis=0), rtol=1e-12)
    assert d.kurtosis_se == pytest.approx(np.sqrt(24 / 300))
    assert d.gauss_distance == ll.gaussian_distance(X)
    assert d.network_loss == pytest.approx(float(ll.network_loss(arch, X, task)), rel=1e-12)
    assert d.theory_loss == pytest.approx(float(ll.overlap_loss(arch, S, task)), rel=1e-12)
    assert d.loss_difference == pytest.approx(abs(d.network_loss - d.theory_loss) / d.theory_loss)
    assert d.expected_error == pytest.approx(0.5 / np.sqrt(300) + 0.02)
    assert d.conserved_drift == pytest.approx(ll.conserved_drift(arch, S, X0.T @ X0 / 300))
    assert d.balance_drift == pytest.approx(np.max(np.abs(ll.balance(arch, S) - ll.balance(arch, X0.T @ X0 / 300))))
    assert set(d.summary()) >= {"kurtosis", "gauss_distance", "loss_difference"}
    same = ll.diagnose(arch, X, X_start=X, n_null=5)
    assert same.conserved_drift == pytest.approx(0, abs=1e-12) and same.balance_drift == 0
    assert same.network_loss is None and same.expected_error is None


def test_linear_units_are_exact():
    lin = ll.Architecture(activation="linear")
    assert ll.diagnose(lin, ll.sample_vectors(lin, 50, seed=0), n_null=3).expected_error == 0.0


def test_gaussian_rows_null_rate():
    """Gaussian rows: the non-Gaussianity claim holds at most at the stated rate (40 networks)."""
    n, alpha = 40, 0.05
    holds = sum(ll.diagnose(ARCH, ll.sample_vectors(ARCH, 100, seed=s, sigma=np.eye(ARCH.K) + 0.3),
                            n_null=39, seed=s).gaussian_verdict.holds for s in range(n))
    assert holds <= binom.ppf(0.999, n, alpha)


def test_planted_non_gaussian_rows():
    """Two populations (a +-1 coin on one vector): detected, also on a subsample of the rows."""
    X = ll.sample_vectors(ARCH, 2000, seed=0)
    X[:, 2] = np.sign(X[:, 2])
    for rows in (4096, 500):
        v = ll.diagnose(ARCH, X, n_null=39, test_rows=rows).gaussian_verdict
        assert v.holds and v.p == pytest.approx(1 / 40)


@pytest.mark.parametrize("kwargs,match", [
    (dict(X=np.full((10, 7), np.nan)), "non-finite"),
    (dict(X=np.ones((10, 6))), r"shape \(N, 7\)"),
    (dict(X=np.ones((3, 7))), "N >= 4"),
    (dict(X_start=np.ones((11, 7))), "X_start must have N = 10"),
    (dict(reference={"a": 1.0}), "reference"),
    (dict(n_null=0), "n_null"),
    (dict(task="flip-flop"), "task must be a Batch"),
])
def test_bad_input(kwargs, match):
    kw = {"X": np.random.default_rng(0).standard_normal((10, 7)), **kwargs}
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.diagnose(ARCH, kw.pop("X"), kw.pop("task", None), n_null=kw.pop("n_null", 3), **kw)
