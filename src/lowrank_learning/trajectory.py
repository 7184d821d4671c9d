"""The record of a training run, in parameter space or overlap space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .architecture import Architecture
from .overlaps import flatten, named


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
    """

    arch: Architecture
    loss: np.ndarray
    sigma: np.ndarray
    final_sigma: np.ndarray
    lr: float
    method: str
    final_vectors: np.ndarray | None = None

    @property
    def epochs(self) -> int:
        return int(self.loss.shape[0])

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
        return d

    @classmethod
    def from_dict(cls, d) -> "Trajectory":
        arch = Architecture(int(d["rank"]), int(d["n_in"]), int(d["n_out"]), str(d["activation"]))
        fv = d["final_vectors"] if "final_vectors" in d else None
        return cls(arch, np.asarray(d["loss"]), np.asarray(d["sigma"]), np.asarray(d["final_sigma"]),
                   float(d["lr"]), str(d["method"]), None if fv is None else np.asarray(fv))

    def save(self, path) -> None:
        """Write to an ``.npz`` file atomically (a temporary file renamed into place)."""
        import os
        import tempfile
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in self.to_dict().items()})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "Trajectory":
        with np.load(path, allow_pickle=False) as z:
            return cls.from_dict({k: z[k] for k in z.files})
