"""Memory: what the invisible overlaps keep of a network's training history (book/theory.md, section 6, E5).

Two states with the same loss-visible overlaps compute the same function; whatever else differs
between them lives in the invisible overlaps. :func:`compare_visits` compares two states (two networks, or
two visits of the same task) by both distances, with the drift of the conserved quantities of
linear gradient flow (:func:`~lowrank_learning.conserved_quantities`) alongside: under plain
gradient flow those do not move, and they tie the invisible overlaps to the visible ones.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..core._checks import check_int
from ..core.adjoint import ensemble_value_and_grad
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ..core.overlaps import conserved_quantities, flatten
from ..learn.phases import ScheduleRun

__all__ = ["overlap_distance", "invisible_distance", "conserved_drift", "compare_visits", "conservation_violation",
           "violation_history", "balance", "schedule_memory"]


# --------------------------------------------------------------------------- distances
def _sigma(arch: Architecture, S, name: str) -> np.ndarray:
    S = np.asarray(S, dtype=float)
    if S.shape[-2:] != (arch.K, arch.K):
        raise InvalidParameterError(f"{name} must end in shape ({arch.K}, {arch.K}), got {S.shape}")
    return S


def overlap_distance(arch: Architecture, sigma_a, sigma_b) -> dict:
    """Euclidean distances between two states over the visible and over the invisible overlaps.

    Parameters
    ----------
    sigma_a, sigma_b : arrays (..., K, K)
        Overlap matrices (broadcast against each other).

    Returns
    -------
    dict with ``"visible"`` and ``"invisible"``: the norm of the difference of the distinct
    overlaps (``arch.overlap_names``) of each kind, floats or arrays of the broadcast shape.
    """
    d = flatten(arch, _sigma(arch, sigma_b, "sigma_b") - _sigma(arch, sigma_a, "sigma_a"))
    out = {"visible": np.linalg.norm(d[..., arch.visible], axis=-1),
           "invisible": np.linalg.norm(d[..., ~arch.visible], axis=-1)}
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def invisible_distance(arch: Architecture, sigma_a, sigma_b):
    """Euclidean distance over the invisible overlaps (float, or array for stacks);
    see :func:`overlap_distance` for the visible one alongside."""
    return overlap_distance(arch, sigma_a, sigma_b)["invisible"]


def conserved_drift(arch: Architecture, sigma, reference):
    """How far the conserved quantities of ``sigma`` (..., K, K) are from those of ``reference``.

    Euclidean norm of the difference of the spectra of ``J Sigma`` (book/theory.md, section 6,
    :func:`~lowrank_learning.conserved_quantities`): 0 along linear gradient flow with every vector
    plastic. Float, or an array of the broadcast shape (e.g. ``(epochs,)`` for a trajectory).
    """
    c = conserved_quantities(arch, _sigma(arch, sigma, "sigma"))
    c0 = conserved_quantities(arch, _sigma(arch, reference, "reference"))
    d = np.linalg.norm(c - c0, axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def compare_visits(arch: Architecture, first, again, between=None) -> dict:
    """Compare two visits of the same task: what the invisible overlaps keep of the history.

    Parameters
    ----------
    first, again : arrays (K, K)
        Overlaps at the end of the first visit and at the end of the return (or of two networks).
    between : array (K, K), optional
        Overlaps at the end of what came in between (e.g. the other task).

    Returns
    -------
    dict of floats:

    ``visible``, ``invisible``
        Distances from ``first`` to ``again`` (:func:`overlap_distance`). Equal function and
        unequal invisible overlaps mean the second visit carries a trace of the history.
    ``conserved_drift``
        :func:`conserved_drift` from ``first`` to ``again``.
    ``excursion``, ``trace`` (only with ``between``)
        Invisible distance from ``first`` to ``between``, and ``invisible / excursion``: 0 if the
        invisible overlaps came all the way back, 1 if they are as far as the intervening task
        took them.
    """
    d = overlap_distance(arch, first, again)
    out = {"visible": d["visible"], "invisible": d["invisible"],
           "conserved_drift": conserved_drift(arch, again, first)}
    if between is not None:
        exc = invisible_distance(arch, first, between)
        out["excursion"] = exc
        out["trace"] = d["invisible"] / exc if exc > 0 else float("nan")
    return out


# --------------------------------------------------------------------------- why the law breaks
def conservation_violation(arch: Architecture, sigma, grad):
    """Rate at which gradient flow moves the conserved matrix ``C = A A^T - B B^T`` (book/theory.md, section 6).

    With every vector plastic, ``dX/dtau = -X S`` (``S = G + G^T``, ``G = dL/dSigma``) gives
    ``dC/dtau = -X (S J + J S) X^T`` with ``J = +1`` on ``A = [Z V]`` and ``-1`` on ``B = [M U]``.
    ``S J + J S`` vanishes on every block that couples A to B, which are all the blocks a linear
    network's loss reads, so for linear units ``C`` is conserved. What is left are the blocks
    within B, ``S_BB`` (the gain's ``M^T M``, ``U^T U``, ``M^T U``), and within A (never read):
    ``dC/dtau = 2 X_B S_BB X_B^T - 2 X_A S_AA X_A^T``. This returns its size per neuron pair,

        || dC/dtau ||_F / N = 2 sqrt(tr(S_BB Sigma_BB S_BB Sigma_BB))     (S_AA = 0),

    computed from overlaps alone. The spectrum of ``J Sigma`` (:func:`conserved_quantities`) can
    move no faster than this (Hoffman-Wielandt).

    Parameters
    ----------
    sigma : array (..., K, K)
    grad : array (..., K, K)
        ``dL/dSigma`` at ``sigma`` (e.g. from :func:`~lowrank_learning.overlap_value_and_grad`).

    Returns
    -------
    float or array (...): 0 for linear units.
    """
    S = np.asarray(_sigma(arch, sigma, "sigma"))
    G = np.asarray(_sigma(arch, grad, "grad"))
    Sg = G + np.swapaxes(G, -1, -2)
    b = np.array([g in ("M", "U") for g in arch.vector_group])
    a = ~b
    SBB, XBB = Sg[..., b, :][..., :, b], S[..., b, :][..., :, b]
    SAA, XAA = Sg[..., a, :][..., :, a], S[..., a, :][..., :, a]
    # ||X_B S_BB X_B^T - X_A S_AA X_A^T||_F^2 / N^2 expanded with X^T X / N = Sigma
    SAB = S[..., a, :][..., :, b]
    tr = lambda M: np.trace(M, axis1=-2, axis2=-1)  # noqa: E731
    val = (tr(SBB @ XBB @ SBB @ XBB) + tr(SAA @ XAA @ SAA @ XAA)
           - 2.0 * tr(SBB @ np.swapaxes(SAB, -1, -2) @ SAA @ SAB))
    out = 2.0 * np.sqrt(np.maximum(val, 0.0))
    return float(out) if np.ndim(out) == 0 else out


def violation_history(arch: Architecture, run: ScheduleRun, every: int = 10):
    """:func:`conservation_violation` along a schedule, at every ``every``-th epoch.

    Each recorded state is paired with the gradient of the task its phase trained on (phases
    with a fixed :class:`~lowrank_learning.Batch`; a sampler's trials differ per epoch).

    Returns
    -------
    epochs : ndarray (n,) int, the epochs evaluated; rate : ndarray (n,), as in
    :func:`conservation_violation` (0 for linear units).
    """
    every = check_int("every", every, 1)
    sigma = np.asarray(run.trajectory.sigma)
    idx = np.arange(0, len(sigma), every)
    G = np.zeros((len(idx), arch.K, arch.K), sigma.dtype)
    for i, phase in enumerate(run.phases):
        if not isinstance(phase.task, Batch):
            raise InvalidParameterError(
                f"violation_history needs fixed-batch phases; phase {i} ({phase.label!r}) has a sampler")
        sel = (idx >= run.boundaries[i]) & (idx < run.boundaries[i + 1])
        if not np.any(sel):
            continue
        b = phase.task  # one batch shared by every state of the phase
        arrs = [np.asarray(a, sigma.dtype)[None] for a in (b.inputs, b.targets, b.mask)]
        _, g = ensemble_value_and_grad(arch, jnp.asarray(sigma[idx[sel]]), *arrs, b.dt, b.loss,
                                       row=np.zeros(int(np.sum(sel)), int))
        G[sel] = np.asarray(g)
    return idx, conservation_violation(arch, sigma[idx], G)


def balance(arch: Architecture, sigma):
    """``Sigma_UU - Sigma_VV`` (..., R, R): conserved by gradient flow for every activation.

    ``U -> U A``, ``V -> V A^{-T}`` (any invertible R x R ``A``) leaves the network unchanged
    whatever the activation: the latent state maps to ``A^{-1} lambda`` and ``h = M kappa +
    U lambda`` is untouched. The conserved charge of this GL(R) symmetry under gradient flow
    (both ``U`` and ``V`` plastic) is ``U^T U - V^T V`` per neuron, which this returns. Unlike
    the spectrum of ``J Sigma`` (:func:`conserved_drift`), which the gain's nonlinearity moves,
    it is fixed by the start, so it cannot record the order of the tasks (under gradient flow;
    discrete steps move it at second order in the learning rate).
    """
    S = np.asarray(_sigma(arch, sigma, "sigma"))
    names = arch.vector_names
    u = [i for i, n in enumerate(names) if n.startswith("u")]
    v = [i for i, n in enumerate(names) if n.startswith("v")]
    return S[..., u, :][..., :, u] - S[..., v, :][..., :, v]


def schedule_memory(arch: Architecture, run: ScheduleRun, start=None, flow=None, every: int = 10) -> dict:
    """What an A, B, A schedule leaves in the overlaps, and which conservation laws held along it
    (the linear-versus-nonlinear chapter, one activation at a time).

    Parameters
    ----------
    run : ScheduleRun
        At least three phases: the first visit to A, the other task, the return to A.
    start : array (K, K), optional
        The reference of the conserved quantities (default: the run's first overlaps).
    flow : Trajectory, optional
        A gradient-flow run from its own start (its drifts are measured from its first overlaps).
    every : int
        :func:`violation_history` at every ``every``-th epoch.

    Returns
    -------
    dict with ``visits`` (:func:`compare_visits` of the ends of phases 1 and 3, with phase 2 in
    between), ``drift`` ((epochs + 1,) :func:`conserved_drift` from ``start``), ``violation``
    (``(epochs, rate)`` of :func:`violation_history`), ``balance_change`` (largest change of
    :func:`balance` from ``start`` over the run), ``final_losses`` (the last loss of each phase);
    with ``flow``: ``flow_drift`` (the conserved drift at its end) and ``flow_balance_change``.
    """
    if len(run.phases) < 3:
        raise InvalidParameterError(f"run has {len(run.phases)} phases; schedule_memory needs A, B, A (3 or more)")
    sig = np.asarray(run.trajectory.sigma_all)
    ref = sig[0] if start is None else _sigma(arch, start, "start")
    change = lambda s, r: float(np.max(np.abs(balance(arch, s) - balance(arch, r))))  # noqa: E731
    out = {"visits": compare_visits(arch, run.end_sigma(0), run.end_sigma(2), run.end_sigma(1)),
           "drift": conserved_drift(arch, sig, ref),
           "violation": violation_history(arch, run, every=every),
           "balance_change": change(sig, ref),
           "final_losses": [float(p.loss[-1]) for p in run.parts]}
    if flow is not None:
        fs = np.asarray(flow.sigma_all)
        out["flow_drift"] = float(np.atleast_1d(conserved_drift(arch, fs, fs[0]))[-1])
        out["flow_balance_change"] = change(fs, fs[0])
    return out
