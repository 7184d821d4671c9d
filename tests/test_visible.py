"""The visible/invisible partition: structural (architecture) vs numerical (dL/dsigma = 0)."""

import numpy as np
import pytest

import lowrank_learning as ll


def test_rank1_partition_matches_theory():
    lin = ll.Architecture()
    assert set(lin.visible_names) == {"zm", "zu", "vm", "vu"}
    erf = ll.Architecture(activation="erf")
    assert set(erf.visible_names) == {"zm", "zu", "vm", "vu", "mm", "uu", "mu"}
    assert set(erf.invisible_names) == {"vv", "zz", "zv"}
    assert len(ll.Architecture(rank=2).visible_names) == 9
    assert ll.Architecture(rank=2).n_overlaps == 21


@pytest.mark.parametrize("act", ["linear", "erf", "tanh"])
@pytest.mark.parametrize("rank,n_in,n_out", [(1, 1, 1), (2, 1, 1), (2, 2, 3)])
def test_visible_mask_is_nonzero_gradient(act, rank, n_in, n_out):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(rank * 10 + n_out)
    X = ll.sample_vectors(arch, arch.K + 4, seed=1, sigma=None)
    X = X + 0.5 * rng.standard_normal(X.shape)  # generic cross overlaps
    batch = ll.Batch(rng.standard_normal((2, 30, n_in)), rng.standard_normal((2, 30, n_out)),
                     None, 0.1, "sum_time")
    G = np.asarray(ll.overlap_gradient(arch, ll.overlaps(X) * 0.5, batch))
    S = G + G.T
    vis = arch.visible_matrix
    assert np.all(S[~vis] == 0.0)  # structurally zero: exactly, not approximately
    assert np.all(np.abs(S[vis]) > 1e-12)  # generic point: every visible overlap matters
