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
    arch = ll.Architecture()
    target = ll.sigma_from_named(arch, {"zm": 0.3, "mu": -0.2}, fill_identity=True)
    errs = [np.max(np.abs(ll.overlaps(ll.sample_vectors(arch, N, seed=1, sigma=target)) - target))
            for N in (100, 10000)]
    assert errs[1] < errs[0] / 3
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
