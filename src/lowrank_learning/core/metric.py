"""The overlap-space metric: the linear map from dL/dsigma to dsigma/dtau (book/theory.md, section 5, E3).

With ``g = dL/dsigma`` over the K(K+1)/2 distinct overlaps (``S_ab = g_ab`` off the diagonal,
``S_aa = 2 g_aa``), gradient flow reads ``dsigma/dtau = -Metric(Sigma) g`` with
``Metric(Sigma) g = flatten(P S Sigma + Sigma S P)``. The metric is linear in Sigma; its
structural zeros and its visible -> invisible couplings follow from the architecture alone.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_int, check_seed
from .architecture import Architecture
from .overlaps import draw_vectors, flatten, overlaps, validate_sigma


def overlap_metric(arch: Architecture, Sigma, plastic=None) -> np.ndarray:
    """Metric matrix (n_overlaps, n_overlaps) at ``Sigma`` (K, K): ``dsigma/dtau = -Metric @ dL/dsigma``.

    Rows and columns follow ``arch.overlap_names``.
    """
    S0 = validate_sigma(arch, Sigma)
    P = arch.plasticity_mask(plastic).astype(float)
    n = arch.n_overlaps
    out = np.zeros((n, n))
    for k, (i, j) in enumerate(arch.overlap_pairs):
        S = np.zeros((arch.K, arch.K))
        if i == j:
            S[i, i] = 2.0
        else:
            S[i, j] = S[j, i] = 1.0
        PS = P[:, None] * S
        out[:, k] = flatten(arch, PS @ S0 + S0 @ PS.T)
    return out


def metric_structure(arch: Architecture, plastic=None, seed: int = 0, draws: int = 3) -> np.ndarray:
    """Boolean (n_overlaps, n_overlaps): True where the metric is not structurally zero.

    Evaluated at ``draws`` generic overlap matrices (random vectors with random cross overlaps);
    an entry that vanishes at all of them is zero for every Sigma (the metric is polynomial
    in Sigma, so a generic point reveals its support).
    """
    seed = check_seed(seed)
    nz = np.zeros((arch.n_overlaps, arch.n_overlaps), dtype=bool)
    for d in range(check_int("draws", draws, 1)):
        X = draw_vectors(arch, arch.K + 3, np.random.default_rng((seed, d)))
        Mx = overlap_metric(arch, overlaps(X), plastic)
        nz |= np.abs(Mx) > 1e-10 * np.max(np.abs(Mx))
    return nz
