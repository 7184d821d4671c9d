"""Twins (E8) and the conservation-law violation behind nonlinear memory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll
from lowrank_learning import twins


@settings(max_examples=8, deadline=None)
@given(rank=st.integers(1, 2), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       act=st.sampled_from(["linear", "erf", "tanh"]), seed=st.integers(0, 2**16))
def test_conservation_violation_matches_parameter_space(rank, n_in, n_out, act, seed):
    """The overlap formula equals ||C(X') - C(X)||_F / (N eta) for X' = X (I - eta S), built in
    N dimensions (C = A A^T - B B^T), to O(eta); zero for linear units."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    N = 50
    X = ll.sample_vectors(arch, N, seed=seed)
    batch = ll.Batch(rng.standard_normal((2, 20, n_in)), rng.standard_normal((2, 20, n_out)), dt=0.1)
    G = np.asarray(ll.overlap_value_and_grad(arch, ll.overlaps(X), batch)[1])
    S = G + G.T
    eta = 1e-7
    Xn = X @ (np.eye(arch.K) - eta * S)
    Amask = np.array([g in ("V", "Z") for g in arch.vector_group])

    def C(Y):
        return Y[:, Amask] @ Y[:, Amask].T - Y[:, ~Amask] @ Y[:, ~Amask].T

    ref = np.linalg.norm(C(Xn) - C(X)) / (N * eta)
    got = ll.conservation_violation(arch, ll.overlaps(X), G)
    scale = np.linalg.norm(S) * np.linalg.norm(ll.overlaps(X)) + 1e-300
    assert abs(got - ref) <= 1e-5 * scale
    if act == "linear":
        assert got == 0.0


def test_twin_gaps_and_decoding():
    rng = np.random.default_rng(0)
    n = 6
    base = ll.random_overlaps(twins.ARCH, n, seed=1).sigma
    other = base.copy()
    # twin 2 differs from twin 1 only in zz, by +3: an invisible gap, no visible one
    i, j = twins.ARCH.overlap_pair("zz")
    other[:, i, j] += 3.0
    S = np.concatenate([base, other])
    g = twins.twin_gaps(S)
    np.testing.assert_allclose(g[:, twins.ARCH.overlap_index("zz")], -3.0)
    norms = twins.gap_norms(S)
    np.testing.assert_allclose(norms["invisible"], 3.0)
    np.testing.assert_allclose(norms["visible"], 0.0)
    dec = twins.decode_history({"t": S}, n_splits=10)
    assert dec[("invisible", "t")].mean == 1.0
    assert dec[("visible", "t")].mean == pytest.approx(0.5, abs=0.25)
    with pytest.raises(ll.InvalidParameterError, match="2n, 4, 4"):
        twins.twin_gaps(S[:5])
    del rng


def test_teacher_sigma_is_valid_and_has_the_e8_visible_overlaps():
    S = twins.teacher_sigma()
    named = ll.named(twins.ARCH, S)
    for k, v in twins.TEACHER_VISIBLE.items():
        assert named[k] == v
    assert np.linalg.eigvalsh(S)[0] > 0


def test_run_twins_small():
    r = twins.run_twins(n_pairs=3, epochs_phase1=6, epochs_phase2=4, n_trials=4, record_every=2, progress=False)
    assert r["p1_loss"].shape == (6, 6) and r["p2_loss"].shape == (6, 4)
    np.testing.assert_array_equal(r["p1_sigma"][:3, 0], r["p1_sigma"][3:, 0])  # twins start equal
    assert r["p1_drops"].shape == (6,)
