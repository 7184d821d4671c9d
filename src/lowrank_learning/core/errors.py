"""Exceptions raised by lowrank_learning.

Every error names the offending field or quantity so that a bad call fails loudly
at construction instead of producing silently wrong numbers.
"""

from __future__ import annotations


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
