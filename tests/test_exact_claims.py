"""Tests of analysis/exact_claims.py: each verdict on data whose answer is known.

All functions here are deterministic checks against a bound (no p-value), so "null data" is a
planted value on the wrong side of the bound (it must give "does not hold") and "signal" one on
the right side (it must give "holds"). The conservation bound is checked against a plain numpy
loop over the N x N conserved matrix, written here without the package's learning code.
"""

import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning.analysis import exact_claims as ec


# --------------------------------------------------------------------------- exceeds_by
def test_exceeds_by_planted():
    assert ll.exceeds_by(300, 100, claim="c").verdict == "holds"
    assert ll.exceeds_by(100, 300, claim="c").verdict == "does not hold"
    assert ll.exceeds_by(100, 100, claim="c").verdict == "does not hold"  # equal is not larger
    v = ll.exceeds_by(300, 100, claim="c", min_ratio=2.0)
    assert v.verdict == "holds" and v.statistic == pytest.approx(3.0)
    assert ll.exceeds_by(150, 100, claim="c", min_ratio=2.0).verdict == "does not hold"
    # entry by entry: one failing entry fails the claim
    assert ll.exceeds_by([3, 1], [1, 2], claim="c").verdict == "does not hold"


def test_exceeds_by_censored():
    # never reached (inf) is at least the run's length: it exceeds any finite count
    v = ll.exceeds_by(np.inf, 100, claim="c", budget=300)
    assert v.verdict == "holds" and v.statistic == pytest.approx(3.0)  # at least 300 / 100
    assert ll.exceeds_by(100, np.inf, claim="c", budget=300).verdict == "does not hold"
    assert ll.exceeds_by(np.inf, np.inf, claim="c").verdict == "not testable at this profile"
    with pytest.raises(ll.InvalidParameterError, match="budget"):
        ll.exceeds_by(np.inf, 100, claim="c")
    with pytest.raises(ll.InvalidParameterError, match="NaN"):
        ll.exceeds_by(np.nan, 1.0, claim="c")
    with pytest.raises(ll.InvalidParameterError, match="non-negative"):
        ll.exceeds_by(-1.0, 1.0, claim="c")


# --------------------------------------------------------------------------- approaches
def test_approaches_planted():
    # complex eigenvalues: moved from 0.9 to 0.99 + 0.1i, target 1 + 0.1i
    v = ll.approaches([0.9, 0.9], [0.99 + 0.1j, 0.99 - 0.1j], [1 + 0.1j, 1 - 0.1j], claim="c")
    assert v.verdict == "holds"
    # remaining error / initial error = 0.01 / |0.9 - (1 + 0.1i)| = 0.01 / 0.1414
    assert v.statistic == pytest.approx(0.01 / np.hypot(0.1, 0.1))
    # half-way is not "learned"
    assert ll.approaches(0.0, 0.5, 1.0, claim="c").verdict == "does not hold"
    assert ll.approaches(0.0, np.inf, 1.0, claim="c").verdict == "does not hold"
    assert ll.approaches(1.0, 1.0, 1.0, claim="c").verdict == "not testable at this profile"


# --------------------------------------------------------------------------- nonzero_beyond_rounding
def test_nonzero_beyond_rounding():
    g = np.array([1.0, -0.3, 2e-3])
    assert ll.nonzero_beyond_rounding(g, g, claim="c").verdict == "holds"
    # one component at rounding level (1e-16 of the scale): a structural zero, does not hold
    g0 = np.array([1.0, -0.3, 1e-16])
    v = ll.nonzero_beyond_rounding(g0, g0, claim="c")
    assert v.verdict == "does not hold" and v.statistic == pytest.approx(1e-16)


# --------------------------------------------------------------------------- conservation bound
def _anticommuting(arch, rng):
    """A random symmetric S living on the A-B blocks (what a linear network's loss produces)."""
    J = ec._sign(arch)
    S = rng.standard_normal((arch.K, arch.K))
    S = S + S.T
    return np.where(J[:, None] != J[None, :], S, 0.0)


def _spectrum_direct(X, J):
    """Non-zero eigenvalues of C / N = X J X^T / N from the N x N matrix (plain numpy), sorted."""
    N = X.shape[0]
    w = np.linalg.eigvalsh((X * J) @ X.T / N)
    p, q = int(np.sum(J > 0)), int(np.sum(J < 0))
    return np.concatenate([w[:q], w[N - p:]])


def test_conservation_step_bound_against_plain_loop():
    arch = ll.Architecture(rank=1, activation="linear")
    rng = np.random.default_rng(0)
    N, lr, steps = 60, 0.05, 40
    X = rng.standard_normal((N, arch.K))
    J = ec._sign(arch)
    spec0 = _spectrum_direct(X, J)
    Sig0 = X.T @ X / N
    total = 0.0
    for _ in range(steps):
        S = _anticommuting(arch, rng)
        Sig = X.T @ X / N
        step = ec.conservation_step_bound(arch, Sig, S / 2, lr)  # G = S / 2 gives G + G^T = S
        Xn = X @ (np.eye(arch.K) - lr * S)
        dC = ((Xn * J) @ Xn.T - (X * J) @ X.T) / N
        # the move is exactly second order: its Frobenius norm is the step bound (to rounding)
        assert np.linalg.norm(dC) == pytest.approx(step, rel=1e-8)
        total += step
        X = Xn
    drift = np.linalg.norm(_spectrum_direct(X, J) - spec0)
    # the package's drift (from the overlaps alone) equals the direct one to rounding
    assert ll.conserved_drift(arch, X.T @ X / N, Sig0) == pytest.approx(drift, rel=1e-8, abs=1e-12)
    assert drift <= total
    assert drift > 1e-4 * total  # not a vacuous bound
    v = ll.conserved_to_bound(drift, total, claim="c")
    assert v.verdict == "holds"
    # planted: a first-order (non-anticommuting) update moves C at O(lr): above the bound
    S_bad = rng.standard_normal((arch.K, arch.K))
    S_bad = S_bad + S_bad.T
    Xb = X @ (np.eye(arch.K) - lr * S_bad)
    drift_bad = np.linalg.norm(_spectrum_direct(Xb, J) - spec0)
    assert ll.conserved_to_bound(drift_bad, total, claim="c").verdict == "does not hold"
    assert ll.breaks_conservation(drift_bad, total, claim="c").verdict == "holds"
    assert ll.breaks_conservation(drift, total, claim="c").verdict == "does not hold"


def test_conservation_step_bound_refuses_nonlinear():
    arch = ll.Architecture(rank=1, activation="erf")
    with pytest.raises(ll.InvalidParameterError, match="activation"):
        ec.conservation_step_bound(arch, np.eye(arch.K), np.zeros((arch.K, arch.K)), 0.1)


def _schedule(update_noise, optimizer="gd"):
    arch = ll.Architecture(rank=1, activation="linear")
    A = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=5.0)
    B = ll.tasks.exponential_filter(c=0.4, dt=0.1, T_max=5.0)
    X0 = ll.sample_vectors(arch, 80, seed=1)
    lr = 5e-3 if optimizer == "gd" else 1e-3
    phases = [ll.Phase(t, lr, 60, optimizer=optimizer, update_noise=update_noise, label=lab)
              for lab, t in (("A", A), ("B", B), ("A", A))]
    return arch, ll.run_schedule(arch, X0, phases, seed=0)


@pytest.mark.slow  # ~25 s on a shared core: it compiles six short schedules
def test_conservation_bound_on_runs():
    import jax
    jax.config.update("jax_enable_x64", True)
    # gradient descent: the drift between the first and the last visit stays within the bound
    arch, run = _schedule(0.0)
    drift = ll.conserved_drift(arch, run.end_sigma(2), run.end_sigma(0))
    bound = ll.conservation_bound(arch, run, 0, 2)
    scale = float(np.max(np.abs(ll.conserved_quantities(arch, run.end_sigma(0)))))
    assert 0 < drift <= bound
    assert ll.conserved_to_bound(drift, bound, claim="c", scale=scale).verdict == "holds"
    # planted: noise added to the vectors moves C at first order in the noise, beyond the bound
    arch, noisy = _schedule(0.01)
    d_noisy = ll.conserved_drift(arch, noisy.end_sigma(2), noisy.end_sigma(0))
    b_noisy = ll.conservation_bound(arch, noisy, 0, 2)
    assert ll.conserved_to_bound(d_noisy, b_noisy, claim="c", scale=scale).verdict == "does not hold"
    assert ll.breaks_conservation(d_noisy, b_noisy, claim="c", scale=scale).verdict == "holds"
    # bad arguments name the field
    with pytest.raises(ll.InvalidParameterError, match="last"):
        ll.conservation_bound(arch, run, 0, 3)
    with pytest.raises(ll.InvalidParameterError, match="sampler"):
        A = ll.tasks.with_label_noise(ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=5.0), 0.1)
        X0 = ll.sample_vectors(arch, 20, seed=1)
        r = ll.run_schedule(arch, X0, [ll.Phase(A, 5e-3, 3), ll.Phase(A, 5e-3, 3)], seed=0)
        ll.conservation_bound(arch, r, 0, 1)


def test_conservation_drift_args():
    with pytest.raises(ll.InvalidParameterError):
        ll.conserved_to_bound(np.nan, 1.0, claim="c")
    with pytest.raises(ll.InvalidParameterError):
        ll.breaks_conservation(1.0, -1.0, claim="c")


# --------------------------------------------------------------------------- performance
def test_speedup_verdict():
    v = ll.speedup_verdict(2.0, 1.5, 0.1, claim="c")
    assert v.verdict == "holds" and v.statistic == pytest.approx(20.0)
    # the median is slower, but the best repeat is not: does not hold
    assert ll.speedup_verdict(0.2, 0.05, 0.1, claim="c").verdict == "does not hold"
    assert ll.speedup_verdict(0.05, 0.04, 0.1, claim="c").verdict == "does not hold"
    with pytest.raises(ll.InvalidParameterError, match="full_best_s"):
        ll.speedup_verdict(1.0, 2.0, 0.1, claim="c")
