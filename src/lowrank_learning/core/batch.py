"""A batch of trials and the loss it defines: the one place where the loss is weighted.

``Batch`` holds inputs (B, T, Din), targets and a mask (B, T, Dout), the Euler step and the
loss kind. :func:`loss_weight` is the factor that turns a sum of masked squared errors into
the loss; the full network (:func:`loss_value`), the latent model's adjoint and the compiled
kernel all use it, so the three cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_choice, check_positive
from .errors import InvalidParameterError

LOSSES = ("sum_time", "masked_mean")


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class Batch:
    """A batch of trials.

    Parameters
    ----------
    inputs : array (B, T, Din)
    targets : array (B, T, Dout)
    mask : array (B, T, Dout)
        Weight of each scored output (0/1 in the built-in tasks), non-negative; not all zero
        with the ``masked_mean`` loss. Default: all ones.
    dt : float
        Euler time step.
    loss : {"sum_time", "masked_mean"}
        ``sum_time``: ``L = (1/B) sum_{b,t,o} mask (y - y*)^2 dt`` (impulse-response tasks);
        ``masked_mean``: ``L = sum(mask (y - y*)^2) / sum(mask)`` (trial-based tasks).

    Notes
    -----
    Concrete arrays (not JAX tracers inside ``jit``) are validated at construction: shapes,
    finite inputs/targets/mask, a non-negative mask; each failure raises
    :class:`~lowrank_learning.core.errors.InvalidParameterError` naming the field.
    """

    inputs: object
    targets: object
    mask: object = None
    dt: float = 0.05
    loss: str = "sum_time"

    def __post_init__(self):
        if self.mask is None:
            object.__setattr__(self, "mask", jnp.ones_like(jnp.asarray(self.targets)))
        if not all(is_concrete(a) for a in (self.inputs, self.targets, self.mask)):
            return
        for name in ("inputs", "targets", "mask"):
            a = getattr(self, name)
            if not hasattr(a, "ndim"):
                a = np.asarray(a, dtype=float)
                object.__setattr__(self, name, a)
            if a.ndim != 3:
                raise InvalidParameterError(
                    f"Batch.{name} must have shape (B, T, dim), got shape {tuple(a.shape)}"
                )
        B, T, _ = self.inputs.shape
        if self.targets.shape[:2] != (B, T):
            raise InvalidParameterError(
                f"Batch.targets must have shape ({B}, {T}, Dout) to match inputs, got {tuple(self.targets.shape)}"
            )
        if tuple(self.mask.shape) != tuple(self.targets.shape):
            raise InvalidParameterError(
                f"Batch.mask must have the shape of targets {tuple(self.targets.shape)}, got {tuple(self.mask.shape)}"
            )
        check_positive("Batch.dt", self.dt)
        check_choice("Batch.loss", self.loss, LOSSES)
        for name in ("inputs", "targets", "mask"):
            if not np.all(np.isfinite(np.asarray(getattr(self, name)))):
                raise InvalidParameterError(f"Batch.{name} has non-finite entries (NaN or inf)")
        mask = np.asarray(self.mask)
        if np.any(mask < 0):
            raise InvalidParameterError(
                f"Batch.mask must be non-negative (weights of scored outputs), smallest entry {mask.min():g}"
            )
        if self.loss == "masked_mean" and not np.any(mask > 0):
            raise InvalidParameterError(
                "Batch.mask is zero everywhere: the masked_mean loss would score nothing"
            )

    @property
    def n_trials(self) -> int:
        """Number of trials B."""
        return int(self.inputs.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of time steps T."""
        return int(self.inputs.shape[1])

    @property
    def times(self) -> np.ndarray:
        """Time of each step's readout, ``t * dt`` (shape ``(T,)``)."""
        return np.arange(self.n_steps) * self.dt

    def tree_flatten(self):
        return (self.inputs, self.targets, self.mask), (self.dt, self.loss)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, value in zip(("inputs", "targets", "mask"), children):
            object.__setattr__(obj, name, value)
        object.__setattr__(obj, "dt", aux[0])
        object.__setattr__(obj, "loss", aux[1])
        return obj


def loss_weight(kind: str, dt: float, n_trials: int, mask_total, xp=jnp):
    """The factor ``w`` with ``L = w * sum(mask * (y - y*)^2)``.

    ``sum_time``: ``w = dt / B``; ``masked_mean``: ``w = 1 / sum(mask)``, and 0 for a batch in
    which nothing is scored (its loss is 0, not 0/0). ``mask_total`` is ``sum(mask)`` per batch
    (scalar or (E,) for an ensemble); ``w`` has its shape and dtype. ``xp`` is ``jax.numpy``
    (traced code) or ``numpy`` (the host kernel).
    """
    mask_total = xp.asarray(mask_total)
    if kind == "sum_time":
        return xp.full(mask_total.shape, dt / n_trials, mask_total.dtype)
    scored = mask_total > 0
    return xp.where(scored, 1.0 / xp.where(scored, mask_total, 1.0), 0.0)


def loss_value(outputs, batch: Batch):
    """Loss of ``outputs`` (B, T, Dout) on ``batch`` (scalar), following ``batch.loss``."""
    err = jnp.sum(batch.mask * (outputs - batch.targets) ** 2)
    return err * loss_weight(batch.loss, batch.dt, outputs.shape[0], jnp.sum(batch.mask))
