"""Memory: what the invisible overlaps keep of a network's training history (THEORY.md 6, E5).

Two states with the same loss-visible overlaps compute the same function; whatever else differs
between them lives in the invisible overlaps. :func:`compare_visits` compares two states (two networks, or
two visits of the same task) by both distances, with the drift of the conserved quantities of
linear gradient flow (:func:`~lowrank_learning.conserved_quantities`) alongside: under plain
gradient flow those do not move, and they tie the invisible overlaps to the visible ones.

:func:`run_schedule` trains through a sequence of :class:`Phase` objects (task, learning rate,
epochs, optimizer, noise) and returns one concatenated record with the phase boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .architecture import Architecture
from .errors import InvalidParameterError
from .learning import OPTIMIZERS, RULES, learn_overlaps, learn_vectors
from .overlaps import conserved_quantities, flatten
from .schedules import as_schedule
from .trajectory import Trajectory

__all__ = ["overlap_distance", "invisible_distance", "conserved_drift", "compare_visits", "Phase", "conservation_violation",
           "ScheduleRun", "run_schedule", "violation_history", "balance"]


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

    Euclidean norm of the difference of the spectra of ``J Sigma`` (THEORY.md section 6,
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


# --------------------------------------------------------------------------- schedules
def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)


@dataclass(frozen=True)
class Phase:
    """One phase of a training schedule.

    Parameters
    ----------
    task : Batch or sampler
        What is learned (e.g. ``tasks.exponential_filter(c=0.2)``, or
        ``tasks.with_label_noise(...)`` for fresh label noise each epoch).
    lr : float or Schedule
        Learning rate (overlap-space eta for ``gd``, Adam's step size for ``adam``), or a
        :mod:`~lowrank_learning.schedules` schedule (restarted at each phase).
    epochs : int
    optimizer : {"gd", "adam"}
    update_noise : float
        Noisy gradient descent: N(0, update_noise^2) added to every vector entry after each
        update (full network only).
    label : str
        A name for the phase (``"A"``, ``"B"``), used in figures.
    seed : int or None
        Seed of this phase's trials and noise; None: the schedule's seed plus the phase index,
        so that phases never replay each other's noise.
    """

    task: object
    lr: float
    epochs: int
    optimizer: str = "gd"
    update_noise: float = 0.0
    label: str = ""
    seed: int | None = None

    def __post_init__(self):
        as_schedule(self.lr, "Phase.lr")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise InvalidParameterError(f"Phase.epochs must be an integer >= 1, got {self.epochs!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError(f"Phase.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not _is_number(self.update_noise) or self.update_noise < 0:
            raise InvalidParameterError(
                f"Phase.update_noise must be a non-negative number, got {self.update_noise!r}"
            )
        if not isinstance(self.label, str):
            raise InvalidParameterError(f"Phase.label must be a string, got {self.label!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise InvalidParameterError(f"Phase.seed must be an integer or None, got {self.seed!r}")
        if not callable(self.task) and not hasattr(self.task, "inputs"):
            raise InvalidParameterError(
                f"Phase.task must be a Batch or a sampler key -> Batch, got {type(self.task).__name__}"
            )


@dataclass(frozen=True)
class ScheduleRun:
    """The record of a schedule.

    Attributes
    ----------
    trajectory : Trajectory
        The phases concatenated: ``loss`` (E,), ``sigma`` (E, K, K) before each update,
        ``final_sigma`` (and ``final_vectors`` on the full network) after the last one, with
        E the total number of epochs; ``lr`` and ``method`` are the first phase's.
    phases : tuple of Phase
    boundaries : ndarray (n_phases + 1,)
        Epoch at which each phase starts, then E: phase ``i`` is epochs
        ``boundaries[i]:boundaries[i+1]`` of ``trajectory``.
    parts : tuple of Trajectory
        Each phase's own record.
    """

    trajectory: Trajectory
    phases: tuple
    boundaries: np.ndarray
    parts: tuple = field(repr=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.phases)

    def end_sigma(self, i: int) -> np.ndarray:
        """Overlaps (K, K) after the last update of phase ``i``."""
        return self.parts[i].final_sigma

    def start_sigma(self, i: int) -> np.ndarray:
        """Overlaps (K, K) before the first update of phase ``i``."""
        return self.parts[i].sigma[0]

    @property
    def lr_per_epoch(self) -> np.ndarray:
        """Learning rate of each epoch's update, (E,) (a schedule's values where a phase has one)."""
        return np.concatenate([t.lrs if t.lrs is not None else np.full(p.epochs, p.lr)
                               for t, p in zip(self.parts, self.phases)])


def _run_phase(arch, start, phase: Phase, seed: int, space: str, rule: str, progress):
    if space == "vectors":
        return learn_vectors(arch, start, phase.task, lr=phase.lr, epochs=phase.epochs,
                             optimizer=phase.optimizer, seed=seed, update_noise=phase.update_noise,
                             progress=progress)
    return learn_overlaps(arch, start, phase.task, lr=phase.lr, epochs=phase.epochs, rule=rule,
                          seed=seed, progress=progress)


def run_schedule(arch: Architecture, start, phases: Sequence[Phase], space: str = "vectors",
                 rule: str = "exact", seed: int = 0, progress: bool | None = False,
                 cache_name: str | None = None) -> ScheduleRun:
    """Train through ``phases`` one after the other, each starting where the last one ended.

    Parameters
    ----------
    arch : Architecture
    start : array (N, K) for ``space="vectors"``, (K, K) for ``space="overlaps"``
        Initial vectors (full network, :func:`learn_vectors`) or overlaps (:func:`learn_overlaps`
        with ``rule``).
    phases : sequence of Phase
    space : {"vectors", "overlaps"}
        Overlap space has no Adam and no update noise (neither is a closed dynamics of the
        overlaps; THEORY.md section 6): such phases raise.
    rule : {"exact", "flow", "naive"}
        Overlap-space rule (ignored on the full network).
    seed : int
        Phase ``i`` without its own seed uses ``seed + i`` (trials and noise). A full-network and
        an overlap-space schedule with the same seeds see the same trials.
    progress : bool or None
    cache_name : str, optional
        If given, each phase is computed through :func:`lowrank_learning.cache.memo` under the
        name ``f"{cache_name}-{i}"``, keyed by its start state, phase and seed.

    Returns
    -------
    ScheduleRun
    """
    if space not in ("vectors", "overlaps"):
        raise InvalidParameterError(f"space must be 'vectors' or 'overlaps', got {space!r}")
    if rule not in RULES:
        raise InvalidParameterError(f"rule must be one of {RULES}, got {rule!r}")
    phases = tuple(phases)
    if not phases or not all(isinstance(p, Phase) for p in phases):
        raise InvalidParameterError("phases must be a non-empty sequence of Phase")
    if space == "overlaps":
        for i, p in enumerate(phases):
            if p.optimizer != "gd" or p.update_noise > 0:
                raise InvalidParameterError(
                    f"phase {i} ({p.label or 'unlabelled'}) uses "
                    f"{'Adam' if p.optimizer != 'gd' else 'update noise'}, which has no overlap-space "
                    "dynamics; run the schedule on the full network (space='vectors')"
                )
    state = np.asarray(start)
    parts = []
    for i, p in enumerate(phases):
        s = int(seed + i if p.seed is None else p.seed)
        if cache_name is None:
            tr = _run_phase(arch, state, p, s, space, rule, progress)
        else:
            from .cache import memo

            tr = memo(f"{cache_name}-{i}", _run_phase, arch, state, p, s, space, rule, progress)
        parts.append(tr)
        state = tr.final_vectors if space == "vectors" else tr.final_sigma
    first, last = parts[0], parts[-1]
    lrs = None if any(t.lrs is None for t in parts) else np.concatenate([t.lrs for t in parts])
    traj = Trajectory(arch, np.concatenate([t.loss for t in parts]),
                      np.concatenate([t.sigma for t in parts]), last.final_sigma,
                      first.lr, first.method, last.final_vectors, lrs=lrs)
    bounds = np.concatenate([[0], np.cumsum([p.epochs for p in phases])]).astype(int)
    return ScheduleRun(traj, phases, bounds, tuple(parts))


# --------------------------------------------------------------------------- why the law breaks
def conservation_violation(arch: Architecture, sigma, grad):
    """Rate at which gradient flow moves the conserved matrix ``C = A A^T - B B^T`` (THEORY.md 6).

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
    import jax.numpy as jnp

    from .reduced import ensemble_value_and_grad
    from .tasks import Batch

    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise InvalidParameterError(f"every must be an integer >= 1, got {every!r}")
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
