"""Training through a sequence of phases (task, learning rate, epochs, optimizer, noise).

:func:`run_schedule` runs :class:`Phase` objects one after the other, each starting where the
last ended, on the full network or in overlap space, and returns one concatenated record with
the phase boundaries (:class:`ScheduleRun`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core._checks import check_choice, check_int, check_nonnegative, check_seed
from ..core.architecture import Architecture
from ..core.cache import memo
from ..core.errors import InvalidParameterError
from .overlap_space import RULES, learn_overlaps
from .schedules import as_schedule
from .trajectory import Trajectory
from .vectors import OPTIMIZERS, learn_vectors


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
        check_int("Phase.epochs", self.epochs, 1)
        check_choice("Phase.optimizer", self.optimizer, OPTIMIZERS)
        check_nonnegative("Phase.update_noise", self.update_noise)
        if not isinstance(self.label, str):
            raise InvalidParameterError(f"Phase.label must be a string, got {self.label!r}")
        if self.seed is not None:
            check_seed(self.seed, "Phase.seed")
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
        overlaps; book/theory.md, section 6): such phases raise.
    rule : {"exact", "flow", "naive"}
        Overlap-space rule (ignored on the full network).
    seed : int
        Phase ``i`` without its own seed uses ``seed + i`` (trials and noise). A full-network and
        an overlap-space schedule with the same seeds see the same trials.
    progress : bool or None
    cache_name : str, optional
        If given, each phase is computed through :func:`lowrank_learning.memo` under the
        name ``f"{cache_name}-{i}"``, keyed by its start state, phase and seed.

    Returns
    -------
    ScheduleRun
    """
    check_choice("space", space, ("vectors", "overlaps"))
    check_choice("rule", rule, RULES)
    check_seed(seed)
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
