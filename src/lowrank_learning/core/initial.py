"""Initial conditions of the paper's nonlinear experiments (book/experiments.md, E6, E7, E8).

* :func:`balanced_vectors`: the authors' "balanced" draw of E6/E7 - Gaussian vectors with every
  norm 1, ``sigma_zu = sigma_vm`` and ``sigma_mu = sigma_zv`` - built directly (the authors redraw
  until both equalities hold within 1e-3; here they hold to rounding).
* :func:`random_overlaps`: the random starting points of E8 in overlap space - non-negative cross
  overlaps ``|N(0, cross_scale^2)|`` and norms ``U(norm_range)`` - redrawn until positive
  definite, with the number of rejected draws reported.

Every random draw comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_instance, check_int, check_nonnegative, check_seed
from .architecture import Architecture
from .errors import InvalidParameterError
from .overlaps import overlaps, sample_vectors

__all__ = ["balanced_vectors", "random_overlaps", "RandomOverlaps"]

# Draws per vectorised batch in random_overlaps: fixed, so that the n first points of a seed do
# not depend on n (a run with more points extends a run with fewer).
_BATCH = 256
_MAX_DRAWS = 10_000_000


def _sqrtm(S: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, Q = np.linalg.eigh(S)
    return (Q * (w ** (-0.5 if inverse else 0.5))) @ Q.T


# --------------------------------------------------------------------------- E6 / E7
def balanced_vectors(arch: Architecture, N: int, seed: int) -> np.ndarray:
    """The authors' "balanced" initial vectors of E6 and E7 (book/experiments.md, E6).

    The authors draw i.i.d. Gaussian vectors, normalise them to ``|a|^2 = N`` and redraw until
    ``sigma_zu = sigma_vm`` and ``sigma_mu = sigma_zv`` within 1e-3. This function builds such a
    draw directly: from one Gaussian draw (:func:`~lowrank_learning.sample_vectors`, all norms 1)
    with overlaps ``Sigma``, the target ``T`` replaces both members of each pair by their mean,
    keeps every other overlap and sets the norms to 1; the vectors ``X Sigma^{-1/2} T^{1/2}`` then
    have overlaps ``T`` to rounding and differ from the Gaussian draw by O(1/sqrt(N)).

    With ``A = [Z V]`` and ``B = [M U]`` the result satisfies ``A^T A = B^T B`` (``zz = mm``,
    ``vv = uu``, ``zv = mu``) and ``A^T B`` symmetric (``zu = vm``): the balanced condition of
    linear-network theory.

    Parameters
    ----------
    arch : Architecture
        Rank 1 with scalar input and output (K = 4, vectors m, u, v, z).
    N : int
        Number of neurons, ``N >= K``.
    seed : int

    Returns
    -------
    X : array (N, 4), float64, columns ``m, u, v, z``.
    """
    check_instance("arch", arch, Architecture)
    if (arch.rank, arch.n_in, arch.n_out) != (1, 1, 1):
        raise InvalidParameterError(
            "balanced_vectors: the balanced draw is defined for rank 1 with scalar input and output; "
            f"got rank={arch.rank}, n_in={arch.n_in}, n_out={arch.n_out}"
        )
    check_int("N", N, arch.K)
    check_seed(seed)
    X = sample_vectors(arch, N, seed)
    S = overlaps(X)
    T = S.copy()
    for a, b in (("zu", "vm"), ("mu", "zv")):
        (i, j), (k, m) = arch.overlap_pair(a), arch.overlap_pair(b)
        mean = 0.5 * (S[i, j] + S[k, m])
        T[i, j] = T[j, i] = T[k, m] = T[m, k] = mean
    np.fill_diagonal(T, 1.0)
    if np.linalg.eigvalsh(T)[0] <= 0 or np.linalg.eigvalsh(S)[0] <= 0:  # only at tiny N
        raise InvalidParameterError(f"balanced_vectors: N = {N} is too small for a balanced draw; use a larger N")
    return X @ _sqrtm(S, inverse=True) @ _sqrtm(T)


# --------------------------------------------------------------------------- E8
@dataclass(frozen=True)
class RandomOverlaps:
    """Random positive-definite starting points in overlap space (:func:`random_overlaps`).

    Attributes
    ----------
    sigma : ndarray (n, K, K)
        The accepted overlap matrices, in the order drawn.
    n_rejected : int
        Draws rejected (smallest eigenvalue not above ``min_eigenvalue``) before the n-th
        acceptance.
    """

    sigma: np.ndarray
    n_rejected: int

    @property
    def n(self) -> int:
        return int(self.sigma.shape[0])

    @property
    def n_drawn(self) -> int:
        """Draws made up to and including the n-th accepted one."""
        return self.n + self.n_rejected

    @property
    def acceptance_rate(self) -> float:
        """Accepted fraction of the draws, ``n / n_drawn``."""
        return self.n / self.n_drawn


def random_overlaps(arch: Architecture, n: int, seed: int, cross_scale: float = 0.4,
                    norm_range: tuple[float, float] = (0.5, 2.0),
                    min_eigenvalue: float = 0.0) -> RandomOverlaps:
    """Random starting points in overlap space, redrawn until positive definite (book/experiments.md, E8).

    Each draw sets every cross overlap ``sigma_ab`` (a != b; for rank 1: zm, zu, vm, vu, mu, zv)
    to ``|N(0, cross_scale^2)|`` and every norm ``sigma_aa`` (mm, uu, vv, zz) to
    ``U(norm_range[0], norm_range[1])``, all independent. Such a matrix need not be a Gram matrix:
    a draw is accepted when its smallest eigenvalue is strictly above ``min_eigenvalue`` (default 0:
    strictly positive definite, so that vectors realising it exist for every ``N >= K``; a small
    positive margin keeps the accepted points away from the boundary) and redrawn otherwise.

    Draws are made in vectorised batches of a fixed size and scanned in order, so the result is
    the first ``n`` accepted draws of the seed's sequence: the first ``n`` points of a call with a
    larger ``n`` are the same, and ``n_rejected`` counts the rejected draws before the n-th
    accepted one (a negative-binomial count with the acceptance probability).

    Parameters
    ----------
    arch : Architecture
        Any architecture (the paper's E8: rank 1, K = 4, 10 overlaps).
    n : int
        Number of points, ``n >= 1``.
    seed : int
    cross_scale : float
        Standard deviation of the Gaussian whose absolute value gives the cross overlaps.
    norm_range : (low, high)
        Range of the uniform norms, ``0 <= low < high``.
    min_eigenvalue : float
        Acceptance threshold on the smallest eigenvalue (strict), ``>= 0``.

    Returns
    -------
    RandomOverlaps with ``sigma`` (n, K, K) and ``n_rejected``.
    """
    check_instance("arch", arch, Architecture)
    check_int("n", n, 1)
    check_seed(seed)
    check_nonnegative("cross_scale", cross_scale)
    try:
        lo, hi = (float(v) for v in norm_range)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"norm_range must be a pair (low, high), got {norm_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise InvalidParameterError(f"norm_range must satisfy 0 <= low < high, got {norm_range!r}")
    check_nonnegative("min_eigenvalue", min_eigenvalue)
    if min_eigenvalue >= hi:
        raise InvalidParameterError(
            f"min_eigenvalue ({min_eigenvalue}) must be below norm_range's high end ({hi}): "
            "no draw could be accepted"
        )
    K = arch.K
    iu, ju = np.triu_indices(K, k=1)
    rng = np.random.default_rng(seed)
    accepted, n_rejected, drawn = [], 0, 0
    need = int(n)
    while need > 0:
        if drawn >= _MAX_DRAWS:
            raise InvalidParameterError(
                f"random_overlaps: fewer than {n} positive-definite draws in {drawn} "
                f"(cross_scale={cross_scale}, norm_range={norm_range}, min_eigenvalue={min_eigenvalue})"
            )
        cross = np.abs(rng.normal(0.0, cross_scale, (_BATCH, iu.size)))
        norms = rng.uniform(lo, hi, (_BATCH, K))
        S = np.zeros((_BATCH, K, K))
        S[:, iu, ju] = cross
        S[:, ju, iu] = cross
        S[:, np.arange(K), np.arange(K)] = norms
        ok = np.linalg.eigvalsh(S)[:, 0] > min_eigenvalue
        idx = np.flatnonzero(ok)
        if idx.size >= need:
            last = idx[need - 1]  # the n-th acceptance: rejections after it do not count
            n_rejected += int(last + 1 - need)
            accepted.append(S[idx[:need]])
            need = 0
        else:
            n_rejected += _BATCH - idx.size
            accepted.append(S[idx])
            need -= idx.size
        drawn += _BATCH
    return RandomOverlaps(np.concatenate(accepted), n_rejected)
