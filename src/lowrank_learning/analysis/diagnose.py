"""Diagnose a network's vectors through the paper's lens (book/experiments.md, "Your own network").

:func:`diagnose` reports, for vectors ``X`` (N, K) of any architecture:

* the overlaps and which of them the loss sees (visible) and which it does not (invisible);
* how far the rows of ``X`` (one per neuron) are from the jointly Gaussian population the
  nonlinear overlap theory assumes: the excess kurtosis of each vector with its sampling error
  ``sqrt(24 / N)``, and the sliced distance to the Gaussian with the same covariance
  (:func:`~lowrank_learning.gaussian_distance`, the measures of the validation chapter), tested
  against Gaussian rows of the same covariance at the same N (:func:`monte_carlo_verdict`);
* on a task, the loss of the network and the loss the overlap theory gives its overlaps (how far
  the theory describes the network's function now);
* the error the validation chapter's fit ``a / sqrt(N) + b`` gives at this N, when that fit is
  passed (``reference``; the theory is exact for linear units);
* with a starting point, how far training moved the conserved quantities: the spectrum of
  ``J Sigma`` (conserved by linear gradient flow, :func:`~lowrank_learning.conserved_drift`) and
  ``Sigma_UU - Sigma_VV`` (conserved by gradient flow for every activation,
  :func:`~lowrank_learning.balance`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import numpy as np

from ..core._checks import (
    check_instance,
    check_int,
    check_seed,
    check_vectors,
    finite_sample,
)
from ..core.activations import is_linear
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ..core.latent import overlap_loss
from ..core.network import network_loss
from ..core.overlaps import named, overlaps
from .memory import balance, conserved_drift
from .stats import excess_kurtosis, gaussian_distance
from .verdicts import Verdict, _alpha, decide

__all__ = ["Diagnosis", "diagnose", "gaussian_null", "monte_carlo_verdict"]


def monte_carlo_verdict(observed: float, null, *, claim: str, alpha: float = 0.05,
                        what: str = "draws without the effect") -> Verdict:
    """Monte Carlo test that ``observed`` is larger than values drawn without the effect.

    ``p = (1 + #{null >= observed}) / (1 + n)`` for ``n`` null values: exact (under the null the
    observed value and the ``n`` draws are exchangeable, so ``p <= alpha`` happens with
    probability at most ``alpha``), with smallest value ``1 / (n + 1)``: with fewer than
    ``1 / alpha - 1`` draws the verdict is "not testable at this profile".

    Parameters
    ----------
    observed : float
    null : array (n,)
        The same statistic on data without the effect (finite).

    Returns
    -------
    Verdict whose statistic is ``observed``; the note gives the null's median and 95% quantile.
    """
    alpha = _alpha(alpha)
    obs = float(observed)
    if not np.isfinite(obs):
        raise InvalidParameterError(f"monte_carlo_verdict: observed must be finite, got {observed!r}")
    nul = finite_sample("monte_carlo_verdict", null, what="null values")
    n = nul.size
    p = float((1 + np.sum(nul >= obs)) / (1 + n))
    return Verdict(claim=claim, verdict=decide(p, alpha, 1.0 / (n + 1)), statistic=obs, interval=None, p=p,
                   test=f"Monte Carlo test against {n} {what} (one-sided)", n=n, alpha=alpha,
                   note=f"null median {np.median(nul):.3g}, 95% quantile {np.quantile(nul, 0.95):.3g}")


def gaussian_null(X, n_null: int, seed: int = 0, n_projections: int = 64, rows: int | None = None) -> np.ndarray:
    """:func:`~lowrank_learning.gaussian_distance` of ``n_null`` draws of ``rows`` (default N)
    Gaussian rows with the mean and covariance of the rows of ``X`` (N, K): its values without
    non-Gaussianity at that number of rows.

    Draw ``i`` uses ``numpy.random.default_rng([seed, i])``; every draw is measured along the same
    projections as ``gaussian_distance(X, n_projections, seed)``.

    Returns
    -------
    array (n_null,)
    """
    X = np.asarray(X, dtype=float)
    n_null = check_int("gaussian_null: n_null", n_null, 1)
    seed = check_seed(seed, "gaussian_null: seed")
    K = X.shape[1]
    N = X.shape[0] if rows is None else check_int("gaussian_null: rows", rows, 4)
    mu = X.mean(axis=0)
    C = np.cov(X, rowvar=False, bias=True).reshape(K, K)
    w, Q = np.linalg.eigh(0.5 * (C + C.T))
    root = (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T
    return np.array([gaussian_distance(np.random.default_rng([seed, i]).standard_normal((N, K)) @ root + mu,
                                       n_projections, seed) for i in range(n_null)])


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes
    ----------
    arch : Architecture;  N : int
    sigma : ndarray (K, K)
        The overlaps ``X^T X / N``.
    overlaps : dict
        Overlap name -> value.
    visible, invisible : tuple of str
        The overlaps the loss reads and those it does not (for this activation).
    kurtosis : ndarray (K,)
        Excess kurtosis of each vector's entries (``arch.vector_names`` order).
    kurtosis_se : float
        Its standard error for Gaussian entries, ``sqrt(24 / N)``.
    gauss_distance : float
        Sliced distance of the rows to the Gaussian with the same covariance.
    gauss_null : ndarray (n_null,)
        The same distance for Gaussian rows with this covariance, ``min(N, test_rows)`` rows each.
    gaussian_verdict : Verdict
        "The rows are not Gaussian": :func:`monte_carlo_verdict` of the distance of
        ``min(N, test_rows)`` of the rows against ``gauss_null``.
    network_loss, theory_loss, loss_difference : float or None
        On the task: the network's loss, the overlap theory's loss at ``sigma`` and
        ``|network - theory| / theory`` (None without a task).
    expected_error : float or None
        ``a / sqrt(N) + b`` of ``reference`` (the validation chapter's error of the theory's
        end-of-training overlaps); 0 for linear units (exact at every N); None otherwise.
    reference : dict or None
        The fit quoted (``a``, ``b`` and ``source``).
    conserved_drift, balance_drift : float or None
        With a start: the change of the spectrum of ``J Sigma`` and the largest change of
        ``Sigma_UU - Sigma_VV`` (None without one).
    """

    arch: Architecture
    N: int
    sigma: np.ndarray
    overlaps: dict
    visible: tuple
    invisible: tuple
    kurtosis: np.ndarray
    kurtosis_se: float
    gauss_distance: float
    gauss_null: np.ndarray
    gaussian_verdict: Verdict
    network_loss: float | None = None
    theory_loss: float | None = None
    loss_difference: float | None = None
    expected_error: float | None = None
    reference: dict | None = None
    conserved_drift: float | None = None
    balance_drift: float | None = None

    def summary(self) -> dict:
        """Plain numbers (for a chapter's JSON): the scalar fields and the per-vector kurtosis."""
        out = {"N": self.N, "kurtosis": dict(zip(self.arch.vector_names, map(float, self.kurtosis))),
               "kurtosis_se": self.kurtosis_se, "gauss_distance": self.gauss_distance,
               "gauss_null_q95": float(np.quantile(self.gauss_null, 0.95)),
               "visible": list(self.visible), "invisible": list(self.invisible)}
        for k in ("network_loss", "theory_loss", "loss_difference", "expected_error", "conserved_drift",
                  "balance_drift"):
            out[k] = getattr(self, k)
        return out


def _reference(reference, activation: str, N: int):
    if reference is None:
        return (0.0 if is_linear(activation) else None), None
    if not isinstance(reference, Mapping) or not {"a", "b"} <= set(reference):
        raise InvalidParameterError("reference must be a dict with the fit's 'a' and 'b' (and a 'source')")
    a, b = float(reference["a"]), float(reference["b"])
    if not (np.isfinite(a) and np.isfinite(b)):
        raise InvalidParameterError(f"reference: a and b must be finite, got a={a!r}, b={b!r}")
    ref = {"a": a, "b": b, "source": str(reference.get("source", ""))}
    return (0.0 if is_linear(activation) else a / np.sqrt(N) + b), ref


def diagnose(arch: Architecture, X, task=None, *, X_start=None, reference=None, n_null: int = 39,
             test_rows: int = 4096, alpha: float = 0.05, seed: int = 0) -> Diagnosis:
    """The overlaps of a network, their visibility, its non-Gaussianity and what they imply.

    Parameters
    ----------
    arch : Architecture
    X : array (N, K)
        The network's vectors (e.g. ``ImportedNetwork.X``), N >= 4.
    task : Batch or callable ``key -> Batch``, optional
        A sampler is called once with ``jax.random.PRNGKey(seed)``.
    X_start : array (N, K), optional
        The vectors training started from (conserved quantities).
    reference : dict, optional
        The validation chapter's fit of the theory's error, ``{"a": .., "b": .., "source": ..}``.
    n_null : int
        Gaussian draws for the non-Gaussianity test (its smallest p-value is ``1 / (n_null + 1)``).
    test_rows : int
        The test compares ``min(N, test_rows)`` rows of ``X`` (drawn without replacement from
        ``seed``) with as many Gaussian rows per draw, so that its cost does not grow with N;
        ``gauss_distance`` uses all N rows.
    alpha : float
        Level of that test.
    seed : int
        Seeds the projections, the Gaussian draws and a task sampler.

    Returns
    -------
    Diagnosis
    """
    check_instance("arch", arch, Architecture)
    check_vectors(X, arch.K, arch.vector_names, "X")
    X = np.asarray(X, dtype=float)
    N = X.shape[0]
    if N < 4:
        raise InvalidParameterError(f"diagnose needs N >= 4 neurons, got N = {N}")
    seed = check_seed(seed)
    alpha = _alpha(alpha)
    n_null = check_int("n_null", n_null, 1)
    S = overlaps(X)
    expected, ref = _reference(reference, arch.activation, N)
    test_rows = check_int("test_rows", test_rows, 4)
    dist = gaussian_distance(X, seed=seed)
    n_test = min(N, test_rows)
    sub = X if n_test == N else X[np.sort(np.random.default_rng([seed, 1 << 20]).choice(N, n_test, replace=False))]
    null = gaussian_null(X, n_null, seed, rows=n_test)
    verdict = monte_carlo_verdict(gaussian_distance(sub, seed=seed), null, claim="The rows of the vectors (one per neuron) are not jointly "
                                  "Gaussian (sliced distance to the Gaussian with their covariance)", alpha=alpha,
                                  what=f"draws of {n_test} Gaussian rows with the same covariance"
                                  + (f" ({n_test} of the {N} rows tested)" if n_test < N else ""))
    losses = (None, None, None)
    if task is not None:
        batch = task if isinstance(task, Batch) else (task(jax.random.PRNGKey(seed)) if callable(task) else None)
        if not isinstance(batch, Batch):
            raise InvalidParameterError(f"task must be a Batch or a callable key -> Batch, got {type(task).__name__}")
        Ln = float(network_loss(arch, X, batch))
        Lt = float(overlap_loss(arch, S, batch))
        losses = (Ln, Lt, abs(Ln - Lt) / Lt if Lt > 0 else float("inf"))
    drift = (None, None)
    if X_start is not None:
        check_vectors(X_start, arch.K, arch.vector_names, "X_start")
        if np.shape(X_start)[0] != N:
            raise InvalidParameterError(f"X_start must have N = {N} rows like X, got {np.shape(X_start)[0]}")
        S0 = overlaps(np.asarray(X_start, dtype=float))
        drift = (float(conserved_drift(arch, S, S0)), float(np.max(np.abs(balance(arch, S) - balance(arch, S0)))))
    return Diagnosis(arch=arch, N=N, sigma=S, overlaps=named(arch, S), visible=arch.visible_names,
                     invisible=arch.invisible_names, kurtosis=excess_kurtosis(X), kurtosis_se=float(np.sqrt(24.0 / N)),
                     gauss_distance=dist, gauss_null=null, gaussian_verdict=verdict, network_loss=losses[0],
                     theory_loss=losses[1], loss_difference=losses[2], expected_error=expected, reference=ref,
                     conserved_drift=drift[0], balance_drift=drift[1])
