"""Exceptions raised by lowrank_learning.

Every error names the offending field or quantity so that a bad call fails loudly
at construction instead of producing silently wrong numbers.
"""

from __future__ import annotations

import numpy as np


class LowRankError(Exception):
    """Base class of the package's own errors."""


class InvalidParameterError(LowRankError, ValueError):
    """A parameter (a field of a config, an argument) has an invalid value or type."""


class InvalidOverlapError(InvalidParameterError):
    """An overlap matrix is not a valid Gram matrix (shape, symmetry, positive semi-definiteness)."""


class UnreachableOverlapError(InvalidParameterError):
    """Requested overlaps cannot be realised by any set of vectors (e.g. not positive semi-definite)."""


class DivergenceError(LowRankError, FloatingPointError):
    """A training run produced a non-finite loss or state.

    Attributes
    ----------
    epoch : int
        First epoch (0-based, counted from the start of the run) whose loss or state was NaN/inf.
    lr : float
        Learning rate of the run.
    """

    def __init__(self, epoch: int, lr: float, what: str = "loss"):
        self.epoch = int(epoch)
        self.lr = float(lr)
        super().__init__(
            f"training diverged: non-finite {what} at epoch {self.epoch} with learning rate "
            f"lr={self.lr:g}; try a smaller learning rate"
        )


def finite_matrix(values, name: str, min_rows: int = 1, shape: str = "(n_samples, n_features)") -> np.ndarray:
    """``values`` as a float array of shape ``shape`` (a 1-D array becomes one column), with at
    least ``min_rows`` rows and only finite entries; else :class:`InvalidParameterError` naming
    ``name``."""
    X = np.asarray(values, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] < 1 or X.shape[0] < min_rows:
        rows = f" with at least {min_rows} rows" if min_rows > 1 else ""
        raise InvalidParameterError(f"{name} must have shape {shape}{rows}, got {np.shape(values)}")
    if not np.all(np.isfinite(X)):
        raise InvalidParameterError(f"{name} has non-finite entries (NaN or inf)")
    return X
