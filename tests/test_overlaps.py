"""Overlap matrices: names, sampling with prescribed overlaps, round trips."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll


def test_names_rank1():
    arch = ll.Architecture()
    assert arch.vector_names == ("m", "u", "v", "z")
    assert arch.K == 4 and len(arch.overlap_names) == 10
    assert set(arch.overlap_names) == {"zm", "zu", "vm", "vu", "mu", "zv", "mm", "uu", "vv", "zz"}
    assert arch.overlap_index("mu") == arch.overlap_index("um")
    assert ll.Architecture(rank=2, n_in=2).vector_names == ("m1", "m2", "u1", "u2", "v1", "v2", "z")


@settings(max_examples=25, deadline=None)
@given(rank=st.integers(1, 3), n_in=st.integers(1, 3), n_out=st.integers(1, 3),
       N=st.integers(1, 400), seed=st.integers(0, 2**20))
def test_exact_sampling_hits_target(rank, n_in, n_out, N, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out)
    rng = np.random.default_rng(seed)
    r = min(N, arch.K)
    F = rng.standard_normal((r, arch.K))
    target = F.T @ F / r  # PSD of rank <= N: always realisable with N neurons
    X = ll.sample_vectors(arch, N, seed=seed, sigma=target, exact=True)
    assert X.shape == (N, arch.K)
    np.testing.assert_allclose(ll.overlaps(X), target, atol=1e-10 * np.max(np.abs(target)))


def test_gaussian_sampling_fluctuates_as_1_over_sqrt_N():
    """Rows drawn i.i.d. N(0, Sigma): each empirical overlap is a mean of N i.i.d. products
    x_a x_b, with mean Sigma_ab and, by Isserlis' theorem, variance
    (Sigma_aa Sigma_bb + Sigma_ab^2) / N exactly. So z = (sigma_hat - Sigma) / sd has mean 0 and
    variance 1 at every N, which is the 1/sqrt(N) law with its constant.

    200 draws per N (N = 100 and 10000), each of the 10 overlaps on its own (they are correlated
    within a draw). z is a mean of N products, Gaussian to within excess kurtosis <= 6 / N, so the
    sample mean of 200 z is N(0, 1/200) and 199 s^2 is chi-square(199); each is checked at level
    1e-3 / 40 (Bonferroni over 2 sizes x 10 overlaps x 2 statistics), 1e-3 in all."""
    from scipy import stats

    arch = ll.Architecture()
    target = ll.sigma_from_named(arch, {"zm": 0.3, "mu": -0.2, "vu": 0.5}, fill_identity=True)
    target[2, 2] = 2.0  # sigma_vv: unequal norms
    pairs = arch.overlap_pairs
    sd_unit = np.array([np.sqrt(target[a, a] * target[b, b] + target[a, b] ** 2) for a, b in pairs])
    alpha = 1e-3 / 40
    S = 200
    for N in (100, 10000):
        z = np.array([[ll.overlaps(X)[a, b] for a, b in pairs]
                      for X in (ll.sample_vectors(arch, N, seed=s, sigma=target) for s in range(S))])
        z = (z - np.array([target[a, b] for a, b in pairs])) * np.sqrt(N) / sd_unit
        assert np.all(np.abs(z.mean(axis=0)) < stats.norm.ppf(1 - alpha / 2) / np.sqrt(S)), (N, z.mean(axis=0))
        chi2 = (S - 1) * z.var(axis=0, ddof=1)
        lo, hi = stats.chi2.ppf([alpha / 2, 1 - alpha / 2], S - 1)
        assert np.all((chi2 > lo) & (chi2 < hi)), (N, z.var(axis=0, ddof=1))
    # the default draw: isotropic, every norm exactly 1
    X = ll.sample_vectors(arch, 1000, seed=4)
    np.testing.assert_allclose(np.diag(ll.overlaps(X)), 1.0, atol=1e-12)


def test_named_round_trip_and_flatten():
    arch = ll.Architecture(rank=2)
    X = ll.sample_vectors(arch, 50, seed=0)
    S = ll.overlaps(X)
    d = ll.named(arch, S)
    assert set(d) == set(arch.overlap_names)
    np.testing.assert_allclose(ll.sigma_from_named(arch, d), S, atol=1e-14)
    np.testing.assert_allclose(ll.unflatten(arch, ll.flatten(arch, S)), S)


def test_sampling_is_seeded():
    arch = ll.Architecture(rank=2)
    a = ll.sample_vectors(arch, 30, seed=9)
    np.testing.assert_array_equal(a, ll.sample_vectors(arch, 30, seed=9))
    assert not np.array_equal(a, ll.sample_vectors(arch, 30, seed=10))


def test_metric_structure_rank1():
    """E3: structural zeros of the metric and the visible -> invisible couplings."""
    arch = ll.Architecture()
    nz = ll.metric_structure(arch)
    idx = {n: k for k, n in enumerate(arch.overlap_names)}
    # d sigma_mm / d tau = -2 (S Sigma)_mm involves S_mz, S_mv (visible) -> mm moves under linear loss
    assert nz[idx["mm"], idx["vm"]] and nz[idx["mm"], idx["zm"]]
    # invisible zz is driven by the visible gradients dL/dzm, dL/dzu
    assert nz[idx["zz"], idx["zm"]] and nz[idx["zz"], idx["zu"]]
    # a gradient on zm never moves vv directly (S_zm couples z and m only)
    assert not nz[idx["vv"], idx["zm"]]
