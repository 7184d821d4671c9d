"""Initial conditions of E6-E8 (lowrank_learning.core.initial)."""

import numpy as np
import pytest
from scipy import stats

import lowrank_learning as ll

ERF = ll.Architecture(rank=1, activation="erf")


# --------------------------------------------------------------------------- balanced_vectors
@pytest.mark.parametrize("N, seed", [(600, 0), (50, 3), (4000, 11)])
def test_balanced_overlaps_exact(N, seed):
    X = ll.balanced_vectors(ERF, N, seed)
    assert X.shape == (N, 4) and X.dtype == np.float64
    s = ll.named(ERF, X.T @ X / N)  # overlaps computed here, not with the package
    for norm in ("mm", "uu", "vv", "zz"):
        assert s[norm] == pytest.approx(1.0, abs=1e-12)
    assert abs(s["zu"] - s["vm"]) < 1e-12
    assert abs(s["mu"] - s["zv"]) < 1e-12
    # the pairs are not trivially zero: they are O(1/sqrt(N)) like any Gaussian draw
    assert 0 < abs(s["zu"]) + abs(s["mu"]) < 10 / np.sqrt(N)


def test_balanced_is_a_small_change_of_the_gaussian_draw():
    N, seed = 600, 2
    X0 = ll.sample_vectors(ERF, N, seed)
    X = ll.balanced_vectors(ERF, N, seed)
    s0, s = ll.named(ERF, X0.T @ X0 / N), ll.named(ERF, X.T @ X / N)
    # the overlaps not in a pair are those of the Gaussian draw
    for name in ("zm", "vu"):
        assert s[name] == pytest.approx(s0[name], abs=1e-12)
    # each pair is replaced by its mean
    assert s["zu"] == pytest.approx(0.5 * (s0["zu"] + s0["vm"]), abs=1e-12)
    assert s["mu"] == pytest.approx(0.5 * (s0["mu"] + s0["zv"]), abs=1e-12)
    # and the vectors move by O(1/sqrt(N)) per entry
    assert np.max(np.abs(X - X0)) < 3 / np.sqrt(N)


def test_balanced_pair_has_the_conditional_variance():
    """The authors' rejection draw (zu = vm given independent zu, vm of variance 1/N on the
    sphere) has the common value of variance 1/(2N); so must the direct construction."""
    N, n = 100, 600
    zu = np.array([ll.named(ERF, ll.overlaps(ll.balanced_vectors(ERF, N, s)))["zu"] for s in range(n)])
    expected = 1.0 / (2 * N)
    # relative standard error of a variance estimate from n Gaussian samples: sqrt(2/n) = 5.8%
    assert np.var(zu) == pytest.approx(expected, rel=5 * np.sqrt(2 / n))
    assert abs(np.mean(zu)) < 5 * np.sqrt(expected / n)


def test_balanced_reproducible_and_seeded():
    a, b = ll.balanced_vectors(ERF, 300, 5), ll.balanced_vectors(ERF, 300, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, ll.balanced_vectors(ERF, 300, 6))


@pytest.mark.parametrize("kwargs, field", [
    (dict(arch=ll.Architecture(rank=2, activation="erf"), N=100, seed=0), "rank"),
    (dict(arch=ERF, N=3, seed=0), "N"),
    (dict(arch=ERF, N=100, seed=None), "seed"),
    (dict(arch="erf", N=100, seed=0), "arch"),
])
def test_balanced_bad_input(kwargs, field):
    with pytest.raises(ll.InvalidParameterError, match=field):
        ll.balanced_vectors(**kwargs)


# --------------------------------------------------------------------------- random_overlaps
def _reference_draws(n, seed, scale=0.4, lo=0.5, hi=2.0):
    """Independent reference: one draw at a time, positive definiteness by Cholesky."""
    rng = np.random.RandomState(seed)
    acc, rej = [], 0
    while len(acc) < n:
        S = np.diag(rng.uniform(lo, hi, 4))
        for i in range(4):
            for j in range(i + 1, 4):
                S[i, j] = S[j, i] = abs(rng.normal(0.0, scale))
        try:
            np.linalg.cholesky(S)
            acc.append(S)
        except np.linalg.LinAlgError:
            rej += 1
    return np.array(acc), rej


def test_random_overlaps_as_specified():
    r = ll.random_overlaps(ERF, 500, seed=0)
    S = r.sigma
    assert S.shape == (500, 4, 4)
    np.testing.assert_array_equal(S, np.swapaxes(S, 1, 2))
    d = np.diagonal(S, axis1=1, axis2=2)
    assert np.all((d >= 0.5) & (d < 2.0))
    iu, ju = np.triu_indices(4, 1)
    off = S[:, iu, ju]
    assert np.all(off >= 0) and off.shape == (500, 6)
    # strictly positive definite: every accepted draw has a Cholesky factor
    for s in S:
        np.linalg.cholesky(s)
    assert np.min(np.linalg.eigvalsh(S)) > 0
    # the package accepts them as overlaps
    ll.validate_sigma(ERF, S[0])
    assert r.n_drawn == 500 + r.n_rejected and r.acceptance_rate == 500 / r.n_drawn


def test_random_overlaps_distribution_matches_an_independent_rejection_sampler():
    r = ll.random_overlaps(ERF, 3000, seed=1)
    ref, _ = _reference_draws(3000, seed=2)
    flat, flat_ref = ll.flatten(ERF, r.sigma), ll.flatten(ERF, ref)
    for k, name in enumerate(ERF.overlap_names):
        p = stats.ks_2samp(flat[:, k], flat_ref[:, k]).pvalue
        assert p > 1e-4, f"{name}: KS p-value {p:.2g}"


def test_rejection_count_matches_monte_carlo_acceptance_rate():
    # acceptance probability from an independent Monte Carlo (plain loop, Cholesky)
    n_mc = 40_000
    _, rej_mc = _reference_draws(n_mc, seed=7)
    p = n_mc / (n_mc + rej_mc)
    n = 2000
    r = ll.random_overlaps(ERF, n, seed=3)
    # rejections before the n-th acceptance ~ NegBin(n, p): mean n(1-p)/p, var n(1-p)/p^2
    mean, sd = n * (1 - p) / p, np.sqrt(n * (1 - p)) / p
    sd_p = np.sqrt(p * (1 - p) / (n_mc + rej_mc)) * n / p**2  # uncertainty of the MC mean
    assert 0.05 < 1 - p < 0.5  # the constraint is active at the paper's values
    assert abs(r.n_rejected - mean) < 5 * np.hypot(sd, sd_p), (r.n_rejected, mean, sd)


def test_random_overlaps_margin_and_no_rejection_case():
    r = ll.random_overlaps(ERF, 200, seed=4, min_eigenvalue=0.2)
    assert np.min(np.linalg.eigvalsh(r.sigma)) > 0.2
    assert r.n_rejected > ll.random_overlaps(ERF, 200, seed=4).n_rejected
    # diagonal draws (no cross overlaps) are always positive definite
    r0 = ll.random_overlaps(ERF, 50, seed=4, cross_scale=0.0)
    assert r0.n_rejected == 0
    np.testing.assert_array_equal(r0.sigma[:, 0, 1], 0.0)


def test_random_overlaps_reproducible_and_prefix_stable():
    a, b = ll.random_overlaps(ERF, 300, seed=9), ll.random_overlaps(ERF, 300, seed=9)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    assert a.n_rejected == b.n_rejected
    longer = ll.random_overlaps(ERF, 700, seed=9)  # spans several internal batches
    np.testing.assert_array_equal(longer.sigma[:300], a.sigma)
    assert longer.n_rejected >= a.n_rejected
    assert not np.allclose(ll.random_overlaps(ERF, 300, seed=10).sigma, a.sigma)


def test_random_overlaps_other_architectures():
    arch = ll.Architecture(rank=2, activation="erf")
    r = ll.random_overlaps(arch, 20, seed=0)
    assert r.sigma.shape == (20, 6, 6)
    assert np.min(np.linalg.eigvalsh(r.sigma)) > 0


@pytest.mark.parametrize("kwargs, field", [
    (dict(n=0), "n"), (dict(n=2.0), "n"), (dict(seed=None), "seed"), (dict(cross_scale=-1.0), "cross_scale"),
    (dict(norm_range=(2.0, 1.0)), "norm_range"), (dict(norm_range=3.0), "norm_range"),
    (dict(min_eigenvalue=-0.1), "min_eigenvalue"), (dict(min_eigenvalue=5.0), "min_eigenvalue"),
])
def test_random_overlaps_bad_input(kwargs, field):
    args = dict(arch=ERF, n=5, seed=0) | kwargs
    with pytest.raises(ll.InvalidParameterError, match=field):
        ll.random_overlaps(**args)
