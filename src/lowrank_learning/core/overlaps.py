"""Overlap (Gram) matrices: computing, naming, validating and realising them with vectors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._checks import check_int, check_seed
from .architecture import Architecture
from .errors import InvalidOverlapError, InvalidParameterError

_SYM_TOL = 1e-8
_PSD_TOL = 1e-8


def sigma_tolerance(Sigma) -> float:
    """Relative tolerance for symmetry and positive semi-definiteness of ``Sigma`` (..., K, K).

    ``max(1e-8, 64 K eps)`` with ``eps`` the machine epsilon of ``Sigma``'s floating dtype
    (float64 for non-float input): the exact map keeps Sigma PSD in exact arithmetic, and a
    float32 run drifts off by rounding, of order ``K eps`` times the matrix's scale (e.g. a
    smallest eigenvalue of -8.7e-7 at scale 10). Multiply by the scale ``max(1, max|Sigma|)``.
    """
    arr = np.asarray(Sigma)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    K = arr.shape[-1] if arr.ndim else 1
    return max(_PSD_TOL, 64.0 * K * float(np.finfo(dtype).eps))


def overlaps(X) -> np.ndarray:
    """Overlap matrix ``Sigma = X^T X / N`` of vectors ``X`` (N, K) -> (K, K).

    Also accepts a stack ``(..., N, K)`` -> ``(..., K, K)``.
    """
    X = np.asarray(X)
    if X.ndim < 2:
        raise InvalidParameterError(f"X must have shape (N, K), got {X.shape}")
    N = X.shape[-2]
    if N < 1:
        raise InvalidParameterError(f"X must have N >= 1 rows, got N = {N}")
    return np.swapaxes(X, -1, -2) @ X / N


def validate_sigma(arch: Architecture, Sigma, name: str = "Sigma") -> np.ndarray:
    """Check that ``Sigma`` is a (K, K) symmetric positive semi-definite matrix; return it symmetrised
    (float64).

    Both checks are relative to the matrix's scale and to the precision of its dtype
    (:func:`sigma_tolerance`): a float32 matrix that a float32 run ended with is accepted as the
    start of the next run. Raises :class:`InvalidOverlapError` naming the problem.
    """
    tol = sigma_tolerance(Sigma)
    S = np.asarray(Sigma, dtype=float)
    if S.shape != (arch.K, arch.K):
        raise InvalidOverlapError(
            f"{name} must have shape ({arch.K}, {arch.K}) for vectors {arch.vector_names}, got {S.shape}"
        )
    if not np.all(np.isfinite(S)):
        raise InvalidOverlapError(f"{name} has non-finite entries")
    scale = max(1.0, float(np.max(np.abs(S))))
    asym = float(np.max(np.abs(S - S.T)))
    if asym > max(_SYM_TOL, tol) * scale:
        raise InvalidOverlapError(f"{name} is not symmetric (max |S - S^T| = {asym:.3g})")
    S = 0.5 * (S + S.T)
    lo = float(np.linalg.eigvalsh(S)[0])
    if lo < -tol * scale:
        raise InvalidOverlapError(
            f"{name} is not positive semi-definite (smallest eigenvalue {lo:.3g}): "
            "no set of vectors has these overlaps"
        )
    return S


def sigma_from_named(arch: Architecture, values: Mapping[str, float], fill_identity: bool = False) -> np.ndarray:
    """Build Sigma (K, K) from ``{"zm": .., "mm": .., ...}``.

    Every overlap must be given unless ``fill_identity`` is True, in which case missing
    norms are 1 and missing cross overlaps 0. Either order of a name is accepted
    (``"mu"`` == ``"um"``). The result is validated (symmetric PSD).
    """
    S = np.eye(arch.K) if fill_identity else np.full((arch.K, arch.K), np.nan)
    seen = {}
    for key, v in values.items():
        i, j = arch.overlap_pair(key)
        if (i, j) in seen:
            raise InvalidParameterError(f"overlap {key!r} given twice (also as {seen[(i, j)]!r})")
        seen[(i, j)] = key
        S[i, j] = S[j, i] = float(v)
    missing = [n for n, p in zip(arch.overlap_names, arch.overlap_pairs) if np.isnan(S[p])]
    if missing:
        raise InvalidParameterError(f"missing overlaps {missing} (or pass fill_identity=True)")
    return validate_sigma(arch, S)


def named(arch: Architecture, Sigma) -> dict[str, np.ndarray | float]:
    """Dict overlap name -> value, for one Sigma (K, K) (floats) or a stack (..., K, K) (arrays)."""
    S = np.asarray(Sigma)
    if S.shape[-2:] != (arch.K, arch.K):
        raise InvalidOverlapError(f"Sigma must end in shape ({arch.K}, {arch.K}), got {S.shape}")
    out = {}
    for n, (i, j) in zip(arch.overlap_names, arch.overlap_pairs):
        v = S[..., i, j]
        out[n] = float(v) if S.ndim == 2 else np.asarray(v)
    return out


def flatten(arch: Architecture, Sigma) -> np.ndarray:
    """Distinct overlaps of Sigma (..., K, K) as a vector (..., K(K+1)/2) in ``arch.overlap_names`` order."""
    S = np.asarray(Sigma)
    i, j = np.array(arch.overlap_pairs).T
    return S[..., i, j]


def unflatten(arch: Architecture, sigma) -> np.ndarray:
    """Inverse of :func:`flatten`: (..., K(K+1)/2) -> symmetric (..., K, K).

    Raises :class:`~lowrank_learning.core.errors.InvalidParameterError` when the last axis of
    ``sigma`` is not ``K(K+1)/2`` long.
    """
    sigma = np.asarray(sigma)
    n = len(arch.overlap_pairs)
    if sigma.ndim == 0 or sigma.shape[-1] != n:
        raise InvalidParameterError(
            f"unflatten: sigma must have shape (..., {n}) (K(K+1)/2 overlaps for K = {arch.K}), "
            f"got shape {sigma.shape}")
    S = np.zeros(sigma.shape[:-1] + (arch.K, arch.K))
    i, j = np.array(arch.overlap_pairs).T
    S[..., i, j] = sigma
    S[..., j, i] = sigma
    return S


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    w, Q = np.linalg.eigh(S)
    return (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T


def sample_vectors(arch: Architecture, N: int, seed: int, sigma=None, exact: bool = False) -> np.ndarray:
    """Draw connectivity vectors ``X`` of shape (N, K) (float64).

    * ``sigma=None, exact=False``: i.i.d. standard Gaussian entries, each column rescaled so
      that ``|a|^2 = N`` (all norms 1; cross overlaps O(1/sqrt(N))), the paper's default.
    * ``sigma`` given, ``exact=False``: rows i.i.d. Gaussian with covariance ``sigma``; the Gram
      matrix equals ``sigma`` up to O(1/sqrt(N)) fluctuations.
    * ``exact=True``: the Gram matrix ``X^T X / N`` equals ``sigma`` (identity if None) to
      rounding; entries are still Gaussian-like (a random orthonormal frame times ``sigma^{1/2}``).
      Needs ``N >= K`` (or ``N >= rank(sigma)``).

    Every draw comes from ``numpy.random.default_rng(seed)``; ``seed`` is a non-negative integer.
    """
    N = check_int("N", N, 1)
    return draw_vectors(arch, N, np.random.default_rng(check_seed(seed)), sigma, exact)


def draw_vectors(arch: Architecture, N: int, rng: np.random.Generator, sigma=None,
                 exact: bool = False) -> np.ndarray:
    """:func:`sample_vectors` with the draws taken from the generator ``rng`` (``N`` unchecked)."""
    K = arch.K
    if sigma is None and not exact:
        X = rng.standard_normal((N, K))
        return X * np.sqrt(N) / np.linalg.norm(X, axis=0)
    S = np.eye(K) if sigma is None else validate_sigma(arch, sigma, "sigma")
    root = _psd_sqrt(S)
    if not exact:
        return rng.standard_normal((N, K)) @ root
    rank = int(np.sum(np.linalg.eigvalsh(S) > 1e-12 * max(1.0, np.max(np.abs(S)))))
    if N < K:
        if N < rank:
            raise InvalidParameterError(
                f"exact sampling needs N >= rank(sigma) = {rank}, got N = {N}"
            )
        w, Q = np.linalg.eigh(S)
        top = np.argsort(w)[::-1][:N]
        root = (Q[:, top] * np.sqrt(np.clip(w[top], 0, None))).T  # (N, K), root^T root = S
        frame, _ = np.linalg.qr(rng.standard_normal((N, N)))
        return np.sqrt(N) * frame @ root
    frame, r = np.linalg.qr(rng.standard_normal((N, K)))
    frame = frame * np.sign(np.diag(r))  # Haar-distributed orthonormal frame
    return np.sqrt(N) * frame @ root


def conserved_quantities(arch: Architecture, Sigma) -> np.ndarray:
    """Invariants of linear gradient flow (book/theory.md, section 6): the spectrum of ``J Sigma``.

    With ``A = [Z V]`` and ``B = [M U]`` the loss of a linear network depends on ``A^T B``
    only, and gradient flow with every vector plastic conserves ``A A^T - B B^T``. Its non-zero
    eigenvalues are those of ``J Sigma``, ``J = +1`` on the A columns and ``-1`` on the B columns.

    Parameters
    ----------
    Sigma : array (K, K) or (..., K, K)

    Returns
    -------
    array (K,) or (..., K): the eigenvalues, real, sorted ascending.
    """
    S = np.asarray(Sigma, dtype=float)
    if S.shape[-2:] != (arch.K, arch.K):
        raise InvalidOverlapError(f"Sigma must end in shape ({arch.K}, {arch.K}), got {S.shape}")
    sign = np.array([1.0 if g in ("V", "Z") else -1.0 for g in arch.vector_group])
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    w, Q = np.linalg.eigh(S)
    root = (Q * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(Q, -1, -2)
    # J Sigma is similar to Sigma^{1/2} J Sigma^{1/2}, which is symmetric: real spectrum.
    sym = root @ (sign[:, None] * root)
    return np.linalg.eigvalsh(0.5 * (sym + np.swapaxes(sym, -1, -2)))
