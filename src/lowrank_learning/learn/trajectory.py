"""The record of a training run, in parameter space or overlap space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import cache
from ..core._atomic import atomic_open
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError
from ..core.overlaps import flatten, named


def _require_drop_epoch(drop, method) -> int:
    """The recorded drop epoch ``drop`` of a ``method`` run; raises when the run has none (no
    loss-triggered schedule, or one that never triggered)."""
    if drop is None:
        raise InvalidParameterError(
            f"this {method} run had no loss-triggered learning-rate schedule, so it has no drop epoch"
        )
    if int(drop) < 0:
        raise InvalidParameterError(
            "the learning-rate schedule never triggered (the loss never fell below its threshold): "
            "there is no drop epoch"
        )
    return int(drop)


def _save_record(record, path) -> None:
    """Write to an ``.npz`` file atomically (a temporary file renamed into place)."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in record.to_dict().items()})


def _load_record(cls, path):
    """Read a record written by ``save`` (plain arrays and scalars, no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return cls.from_dict({k: z[k] for k in z.files})


@cache.cacheable("trajectory")
@dataclass(frozen=True)
class Trajectory:
    """What a learner recorded, epoch by epoch.

    Attributes
    ----------
    arch : Architecture
    loss : ndarray (epochs,)
        Loss before each update (entry 0 is the initial state's loss).
    sigma : ndarray (epochs, K, K)
        Overlap matrix before each update (entry 0 is the initial state).
    final_sigma : ndarray (K, K)
        Overlap matrix after the last update.
    lr : float
        Learning rate (overlap-space rate eta for gd and the overlap rules; Adam's step size for adam).
    method : str
        ``"gd"``, ``"adam"`` (full network) or ``"exact"``, ``"flow"``, ``"naive"`` (overlap space).
    final_vectors : ndarray (N, K) or None
        The vectors after the last update (full-network learners only).
    lrs : ndarray (epochs,) or None
        The learning rate used by each epoch's update (a schedule's values; ``lr`` repeated for
        a constant rate).
    drop : int or None
        For a loss-triggered schedule (:class:`~lowrank_learning.schedules.DropBelow`): the epoch
        at which the rate dropped, -1 if it never did; None for schedules without a drop. Read
        it through :attr:`drop_epoch`.
    """

    arch: Architecture
    loss: np.ndarray
    sigma: np.ndarray
    final_sigma: np.ndarray
    lr: float
    method: str
    final_vectors: np.ndarray | None = None
    lrs: np.ndarray | None = None
    drop: int | None = None

    @property
    def epochs(self) -> int:
        """Number of epochs (updates)."""
        return int(self.loss.shape[0])

    @property
    def drop_epoch(self) -> int:
        """Epoch at which a loss-triggered schedule dropped the rate.

        Raises :class:`~lowrank_learning.InvalidParameterError` if the run had no such schedule
        or its threshold was never reached (there is no drop epoch to report).
        """
        return _require_drop_epoch(self.drop, self.method)

    @property
    def sigma_all(self) -> np.ndarray:
        """Overlaps at every epoch and after the last update: (epochs + 1, K, K)."""
        return np.concatenate([self.sigma, self.final_sigma[None]], axis=0)

    def overlaps(self) -> dict[str, np.ndarray]:
        """Dict overlap name -> (epochs,) series (before each update)."""
        return named(self.arch, self.sigma)

    def __getitem__(self, name: str) -> np.ndarray:
        """Series of overlap ``name`` (either vector order), shape (epochs,)."""
        i, j = self.arch.overlap_pair(name)
        return self.sigma[:, i, j]

    def flat(self) -> np.ndarray:
        """Distinct overlaps per epoch, (epochs, K(K+1)/2), in ``arch.overlap_names`` order."""
        return flatten(self.arch, self.sigma)

    # -------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        """Plain arrays and scalars (no pickles), for :meth:`from_dict` and the result cache."""
        d = {
            "rank": self.arch.rank, "n_in": self.arch.n_in, "n_out": self.arch.n_out,
            "activation": self.arch.activation, "loss": np.asarray(self.loss),
            "sigma": np.asarray(self.sigma), "final_sigma": np.asarray(self.final_sigma),
            "lr": float(self.lr), "method": self.method,
        }
        if self.final_vectors is not None:
            d["final_vectors"] = np.asarray(self.final_vectors)
        if self.lrs is not None:
            d["lrs"] = np.asarray(self.lrs)
        if self.drop is not None:
            d["drop"] = int(self.drop)
        return d

    @classmethod
    def from_dict(cls, d) -> "Trajectory":
        arch = Architecture(int(d["rank"]), int(d["n_in"]), int(d["n_out"]), str(d["activation"]))
        opt = {k: (d[k] if k in d else None) for k in ("final_vectors", "lrs", "drop")}
        return cls(arch, np.asarray(d["loss"]), np.asarray(d["sigma"]), np.asarray(d["final_sigma"]),
                   float(d["lr"]), str(d["method"]),
                   None if opt["final_vectors"] is None else np.asarray(opt["final_vectors"]),
                   None if opt["lrs"] is None else np.asarray(opt["lrs"]),
                   None if opt["drop"] is None else int(opt["drop"]))

    save = _save_record
    load = classmethod(_load_record)


@dataclass(frozen=True)
class EnsembleTrajectory:
    """What :func:`~lowrank_learning.learn_overlaps_ensemble` recorded for E members.

    Attributes
    ----------
    arch : Architecture
    loss : ndarray (E, epochs)
        Each member's loss before each update.
    sigma : ndarray (E, R, K, K)
        Overlaps before the update at the recorded epochs ``record_epochs`` (R of them).
    record_epochs : ndarray (R,)
        The epochs at which ``sigma`` was recorded (every ``record_every``-th, from 0).
    final_sigma : ndarray (E, K, K)
        Overlaps after the last update.
    lr : float
        The first epoch's learning rate.
    method : str
        The overlap rule.
    lrs : ndarray (E, epochs)
        The rate each member's update used.
    drops : ndarray (E,) of int, or None
        Per member, the epoch of a loss-triggered rate drop (-1: never); None without such a
        schedule.
    """

    arch: Architecture
    loss: np.ndarray
    sigma: np.ndarray
    record_epochs: np.ndarray
    final_sigma: np.ndarray
    lr: float
    method: str
    lrs: np.ndarray
    drops: np.ndarray | None = None

    @property
    def n_members(self) -> int:
        """Number of members E: the independent runs, along the first axis of every recorded
        array."""
        return int(self.loss.shape[0])

    @property
    def epochs(self) -> int:
        """Number of epochs (updates) of every member."""
        return int(self.loss.shape[1])

    def drop_epoch(self, member: int) -> int:
        """Epoch of member ``member``'s rate drop (raises if there was none; see Trajectory.drop_epoch)."""
        return _require_drop_epoch(None if self.drops is None else self.drops[member], self.method)

    def member(self, i: int) -> Trajectory:
        """Member ``i`` as a :class:`Trajectory` (needs the overlaps of every epoch: record_every=1)."""
        if not (-self.n_members <= i < self.n_members):
            raise InvalidParameterError(f"member must be in [0, {self.n_members}), got {i}")
        if len(self.record_epochs) != self.epochs:
            raise InvalidParameterError(
                "member() needs the overlaps of every epoch; this ensemble recorded every "
                f"{int(self.record_epochs[1] - self.record_epochs[0]) if len(self.record_epochs) > 1 else '?'}-th"
            )
        return Trajectory(self.arch, self.loss[i], self.sigma[i], self.final_sigma[i], self.lr, self.method,
                          lrs=self.lrs[i], drop=None if self.drops is None else int(self.drops[i]))

    def to_dict(self) -> dict:
        d = {"rank": self.arch.rank, "n_in": self.arch.n_in, "n_out": self.arch.n_out,
             "activation": self.arch.activation, "loss": self.loss, "sigma": self.sigma,
             "record_epochs": self.record_epochs, "final_sigma": self.final_sigma, "lr": float(self.lr),
             "method": self.method, "lrs": self.lrs}
        if self.drops is not None:
            d["drops"] = np.asarray(self.drops)
        return d

    @classmethod
    def from_dict(cls, d) -> "EnsembleTrajectory":
        arch = Architecture(int(d["rank"]), int(d["n_in"]), int(d["n_out"]), str(d["activation"]))
        return cls(arch, np.asarray(d["loss"]), np.asarray(d["sigma"]), np.asarray(d["record_epochs"]),
                   np.asarray(d["final_sigma"]), float(d["lr"]), str(d["method"]), np.asarray(d["lrs"]),
                   np.asarray(d["drops"]) if "drops" in d else None)

    save = _save_record
    load = classmethod(_load_record)
