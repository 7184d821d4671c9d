"""Statistics of trained networks and learning curves.

* :func:`excess_kurtosis` and :func:`gaussian_distance`: how far the entries of trained vectors
  (rows of X, one sample per neuron) are from the jointly Gaussian population the mean-field
  theory assumes.
* :func:`fit_error_scaling`: ``err(N) = a / sqrt(N) + b`` (finite-size part + systematic part)
  and the log-log slope.
* :func:`loss_drop_epoch`: the (fractional) epoch at which a loss curve drops.
* :func:`overlap_error_curve`: the largest overlap difference per epoch between two runs.
* :func:`mean_se`: mean and standard error of a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls
from scipy.special import ndtri
from scipy.stats import kurtosis

from ..core._checks import check_int, check_seed, finite_matrix
from ..core.errors import InvalidParameterError

__all__ = ["excess_kurtosis", "gaussian_distance", "ErrorScaling", "fit_error_scaling", "loss_drop_epoch",
           "overlap_error_curve", "mean_se"]


def excess_kurtosis(X) -> np.ndarray:
    """Excess kurtosis of each column of ``X`` (N, K) -> (K,) (0 for a Gaussian; Fisher's
    definition, biased estimator). For N Gaussian samples its standard error is ``sqrt(24/N)``."""

    return np.atleast_1d(kurtosis(finite_matrix(X, "excess_kurtosis: X", min_rows=4, shape="(N, K)"), axis=0, fisher=True, bias=True))


def gaussian_distance(X, n_projections: int = 64, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between the rows of ``X`` (N, K) and a Gaussian with the
    same mean and covariance, in units of each projection's standard deviation (scale-free).

    For each of ``n_projections`` random unit directions ``w`` (drawn from ``seed``), the
    projections ``X w`` are standardised and their sorted values compared with the standard
    normal quantiles at ``(i + 1/2) / N``; the mean absolute difference is the 1-d
    Wasserstein distance to the Gaussian (no Gaussian sample is drawn). Returns the average over
    directions: 0 for an exactly Gaussian population, ~0.8/sqrt(N) for an i.i.d. Gaussian sample,
    O(1) for strongly non-Gaussian rows (a +-1 coin gives 0.40 in one dimension).
    """

    X = finite_matrix(X, "gaussian_distance: X", min_rows=4, shape="(N, K)")
    n_projections = check_int("gaussian_distance: n_projections", n_projections, 1)
    seed = check_seed(seed, "gaussian_distance: seed")
    N, K = X.shape
    W = np.random.default_rng(seed).standard_normal((K, n_projections))
    W /= np.linalg.norm(W, axis=0)
    P = (X - X.mean(axis=0)) @ W  # (N, n_projections)
    sd = P.std(axis=0)
    if np.any(sd == 0):
        raise InvalidParameterError("gaussian_distance: a projection of X has zero variance")
    P = np.sort(P / sd, axis=0)
    q = ndtri((np.arange(N) + 0.5) / N)
    return float(np.mean(np.abs(P - q[:, None])))


@dataclass(frozen=True)
class ErrorScaling:
    """Fit of ``err(N) = a / sqrt(N) + b`` (``a, b >= 0``, relative least squares) and the log-log slope.

    Attributes
    ----------
    a : float  finite-size amplitude (error at N = 1 of the 1/sqrt(N) part)
    b : float  systematic, N-independent part
    slope : float  slope of log err against log N (-0.5 for pure finite-size error)
    crossover : float  N at which the two parts are equal, ``(a / b)^2`` (inf if b = 0)
    rms_residual : float  root-mean-square relative residual of the fit
    """

    a: float
    b: float
    slope: float
    crossover: float
    rms_residual: float

    def __call__(self, N):
        return self.a / np.sqrt(np.asarray(N, dtype=float)) + self.b


def fit_error_scaling(N, err) -> ErrorScaling:
    """Fit ``err = a / sqrt(N) + b`` with ``a, b >= 0`` to positive errors ``err`` at sizes ``N``
    (arrays of the same shape; repeated N = several seeds). Residuals are relative (errors span
    decades): minimise ``sum ((a/sqrt(N) + b - err) / err)^2`` by non-negative least squares."""

    N = np.asarray(N, dtype=float).ravel()
    err = np.asarray(err, dtype=float).ravel()
    if N.shape != err.shape or N.size < 2:
        raise InvalidParameterError(f"fit_error_scaling: N and err need the same length >= 2, got {N.size} and {err.size}")
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InvalidParameterError(f"fit_error_scaling: N must be positive, got {N}")
    if np.any(~np.isfinite(err)) or np.any(err <= 0):
        raise InvalidParameterError(f"fit_error_scaling: err must be positive and finite, got {err}")
    if np.unique(N).size < 2:
        raise InvalidParameterError("fit_error_scaling: need at least two distinct N")
    A = np.stack([1.0 / np.sqrt(N), np.ones_like(N)], axis=1) / err[:, None]
    (a, b), _ = nnls(A, np.ones_like(N))
    slope = float(np.polyfit(np.log(N), np.log(err), 1)[0])
    resid = (a / np.sqrt(N) + b - err) / err
    cross = float((a / b) ** 2) if b > 0 else float("inf")
    return ErrorScaling(float(a), float(b), slope, cross, float(np.sqrt(np.mean(resid ** 2))))


def loss_drop_epoch(loss, min_ratio: float = 10.0) -> float:
    """Fractional epoch at which ``log(loss)`` first falls halfway from its initial value to its
    minimum (linear interpolation between epochs); NaN if the loss never falls by ``min_ratio``."""
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 1 or loss.size < 2 or np.any(~np.isfinite(loss)) or np.any(loss <= 0):
        raise InvalidParameterError("loss_drop_epoch: loss must be a 1-d array of >= 2 positive finite values")
    lo = float(np.min(loss))
    if loss[0] / lo < min_ratio:
        return float("nan")
    level = 0.5 * (np.log(loss[0]) + np.log(lo))
    ll = np.log(loss)
    e = int(np.argmax(ll <= level))
    if e == 0:
        return 0.0
    return float(e - 1 + (ll[e - 1] - level) / (ll[e - 1] - ll[e]))


def overlap_error_curve(sigma_a, sigma_b) -> np.ndarray:
    """Largest absolute overlap difference per epoch: (epochs, K, K) x 2 -> (epochs,)."""
    a, b = np.asarray(sigma_a), np.asarray(sigma_b)
    if a.shape != b.shape or a.ndim != 3:
        raise InvalidParameterError(f"overlap_error_curve: two (epochs, K, K) stacks of one shape, got {a.shape}, {b.shape}")
    return np.max(np.abs(a - b), axis=(1, 2))


def mean_se(x) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``) of a sample ``x`` (any shape, flattened).

    Every value must be finite: a NaN or an infinity (a run that failed, an event that never
    happened within the budget) raises :class:`InvalidParameterError` saying how many there are,
    so that nothing is dropped silently; count and report them, or use a test that handles
    censored outcomes (:func:`~lowrank_learning.analysis.verdicts.sign_test`). Standard error
    ``nan`` with one value; an empty sample raises.
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        raise InvalidParameterError("mean_se: the sample is empty")
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise InvalidParameterError(f"mean_se: {bad} of {x.size} values are not finite "
                                    f"({int(np.sum(np.isnan(x)))} NaN); count and report them before averaging")
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(np.mean(x)), se
