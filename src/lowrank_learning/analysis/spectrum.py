"""The eigenvalues of the connectivity, read from the overlaps (E1, E2; book/theory.md, section 3).

The non-zero eigenvalues of ``W = U V^T / N`` are those of the ``R x R`` block
``Sigma_VU = V^T U / N`` (``AB`` and ``BA`` share their non-zero spectrum), so a trajectory of
overlaps gives the eigenvalues of ``W`` at every epoch without an ``N x N`` matrix.
:func:`eigenvalue_summary` collects what the rank-2 chapter reports about them: the paths, the
check against ``W`` itself, and the distance to the target of a linear filter task.
"""

from __future__ import annotations

import numpy as np

from ..core._checks import check_positive, check_vectors
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError

__all__ = ["connectivity_eigenvalues", "discrete_time_eigenvalue", "eigenvalue_summary"]


def _sort(z: np.ndarray) -> np.ndarray:
    """Sort the last axis by real part, then imaginary part (np.sort_complex on the last axis)."""
    z = np.asarray(z, dtype=complex)
    order = np.lexsort((z.imag, z.real), axis=-1)
    return np.take_along_axis(z, order, axis=-1)


def connectivity_eigenvalues(arch: Architecture, sigma) -> np.ndarray:
    """Non-zero eigenvalues of ``W = U V^T / N``: those of ``Sigma_VU``.

    ``sigma``: (..., K, K) overlaps. Returns (..., R) complex, sorted by real part then
    imaginary part (a conjugate pair: negative imaginary part first)."""
    S = np.asarray(sigma, dtype=float)
    if S.shape[-2:] != (arch.K, arch.K):
        raise InvalidParameterError(f"sigma: expected (..., {arch.K}, {arch.K}), got {S.shape}")
    V, U = arch.slices["V"], arch.slices["U"]
    return _sort(np.linalg.eigvals(S[..., V, U]))


def discrete_time_eigenvalue(rate, dt: float):
    """The eigenvalue ``1 + (exp(rate dt) - 1) / dt`` of ``W`` whose Euler step
    ``kappa' = kappa + dt (-kappa + W kappa)`` decays (and rotates) exactly like ``exp(rate t)``.

    ``rate``: complex or real (e.g. ``-c + i omega``); ``dt > 0``. Tends to ``1 + rate`` as
    ``dt -> 0``."""
    dt = check_positive("dt", dt)
    return 1.0 + (np.exp(np.asarray(rate) * dt) - 1.0) / dt


def eigenvalue_summary(arch: Architecture, sigma_full, sigma_theory, X_final, rate, dt: float) -> dict:
    """What the network learned, in eigenvalues of ``W`` (the rank-2 chapter's numbers).

    Parameters
    ----------
    sigma_full, sigma_theory : arrays (epochs + 1, K, K)
        Overlaps of the full network and of the overlap theory, before each update and at the end.
    X_final : array (N, K)
        The trained full network's vectors (for the check against the ``N x N`` matrix ``W``).
    rate : complex
        The target's continuous-time rate, e.g. ``-c + i omega`` for ``exp(-ct) cos(omega t)``:
        its eigenvalue is ``1 + rate`` (continuous time), :func:`discrete_time_eigenvalue` at step
        ``dt``.

    Returns
    -------
    dict with ``full`` and ``theory`` ((epochs + 1, R) complex, :func:`connectivity_eigenvalues`),
    ``W_top`` ((R,) the R largest-modulus eigenvalues of ``W``, sorted likewise), ``W_check`` (largest
    difference between ``W_top`` and the final ``full``), ``target_ct``, ``target_dt`` (complex),
    ``error`` (distance of the final eigenvalues from the nearest of ``target_dt`` and its
    conjugate), ``complex_from`` (the first epoch with a complex pair; None if never).
    """
    full = connectivity_eigenvalues(arch, sigma_full)
    theory = connectivity_eigenvalues(arch, sigma_theory)
    X = np.asarray(X_final, dtype=float)
    check_vectors(X, arch.K, arch.vector_names, name="X_final")
    N = X.shape[0]
    W = X[:, arch.slices["U"]] @ X[:, arch.slices["V"]].T / N
    eig_W = np.linalg.eigvals(W)
    top = _sort(eig_W[np.argsort(-np.abs(eig_W))[: arch.rank]])
    target_ct = complex(1.0 + rate)
    target_dt = complex(discrete_time_eigenvalue(complex(rate), dt))
    final = full[-1]
    error = float(np.min(np.abs(final[:, None] - np.array([target_dt, np.conj(target_dt)])[None, :])))
    has_complex = np.flatnonzero(np.any(full.imag != 0, axis=-1))
    return {"full": full, "theory": theory, "W_top": top, "W_check": float(np.max(np.abs(top - final))),
            "target_ct": target_ct, "target_dt": target_dt, "error": error,
            "complex_from": int(has_complex[0]) if has_complex.size else None}
