"""Learning-rate schedules evaluated inside the compiled training loop.

A schedule is a small frozen (hashable) dataclass. The learners call ``schedule.rate(state, e,
loss)`` at every epoch ``e`` with the loss measured before that epoch's update, and use the
returned rate for that update; ``state`` is an int32 scalar carried through the loop: the epoch
at which a loss-triggered drop happened, or -1. Everything is traced by JAX, so a schedule costs
nothing per epoch in Python and a loss-triggered drop happens inside the loop, not by restarting.

* :class:`Constant` ``(lr)``: the same rate every epoch (what a plain float means).
* :class:`Piecewise` ``(values, boundaries)``: ``values[i]`` for epochs in
  ``[boundaries[i-1], boundaries[i])``.
* :class:`DropBelow` ``(lr, threshold, factor)``: ``lr`` until the first epoch whose loss is
  below ``threshold``; from that epoch on (its own update included) ``lr / factor``. The epoch is
  recorded (``Trajectory.drop_epoch``). book/experiments.md, E8: ``DropBelow(0.01, 0.015, 5)``.

Every schedule is also a JAX pytree whose leaves are its numbers (the rates, the threshold) and
whose structure is its kind (and a piecewise schedule's boundaries). The learners pass it to
their compiled loop as an argument, not as a compile-time constant, so runs that differ only in
their rates share one compilation. The leaves hold the same Python floats the constants held
(``lr / factor`` is divided in Python), so the numbers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..core._checks import check_int, check_positive, is_number
from ..core.errors import InvalidParameterError


class Schedule:
    """Base class: ``rate(state, e, loss) -> (lr, state)``; ``initial`` is the state at epoch 0."""

    #: whether the schedule records a loss-triggered drop epoch
    drops = False

    @property
    def initial(self):
        return jnp.int32(-1)

    @property
    def first(self) -> float:
        """Rate of the first epoch."""
        raise NotImplementedError

    def rate(self, state, e, loss):  # pragma: no cover - abstract
        raise NotImplementedError

    def rates(self, epochs: int, drop_epoch: int = -1) -> np.ndarray:
        """The rate of every epoch (epochs,), given the recorded drop epoch (numpy, for checks)."""
        out = np.empty(epochs)
        for e in range(epochs):
            out[e] = float(self.rate(jnp.int32(drop_epoch), e, jnp.inf)[0])
        return out


@dataclass(frozen=True)
class Constant(Schedule):
    """The same learning rate ``lr`` at every epoch."""

    lr: float

    def __post_init__(self):
        object.__setattr__(self, "lr", check_positive("Constant.lr", self.lr))

    @property
    def first(self) -> float:
        return self.lr

    def rate(self, state, e, loss):
        return jnp.asarray(self.lr), state


@dataclass(frozen=True)
class Piecewise(Schedule):
    """Piecewise-constant rate: ``values[0]`` before ``boundaries[0]``, ``values[i]`` on
    ``[boundaries[i-1], boundaries[i])``, ``values[-1]`` from ``boundaries[-1]`` on.

    ``boundaries`` are strictly increasing epochs >= 1; ``len(values) == len(boundaries) + 1``.
    """

    values: tuple
    boundaries: tuple = ()

    def __post_init__(self):
        vals = tuple(check_positive("Piecewise.values", v) for v in self.values)
        bnds = tuple(self.boundaries)
        if len(vals) != len(bnds) + 1:
            raise InvalidParameterError(
                f"Piecewise.values must have one more entry than boundaries, got {len(vals)} values "
                f"and {len(bnds)} boundaries"
            )
        for b in bnds:
            check_int("Piecewise.boundaries", b, 1)
        if any(b2 <= b1 for b1, b2 in zip(bnds, bnds[1:])):
            raise InvalidParameterError(f"Piecewise.boundaries must increase strictly, got {bnds}")
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "boundaries", tuple(int(b) for b in bnds))

    @property
    def first(self) -> float:
        return self.values[0]

    def rate(self, state, e, loss):
        idx = jnp.searchsorted(jnp.asarray(self.boundaries, jnp.int32), e, side="right") if self.boundaries else 0
        return jnp.asarray(self.values)[idx], state


@dataclass(frozen=True)
class DropBelow(Schedule):
    """Rate ``lr`` until the first epoch whose loss is below ``threshold``, then ``lr / factor``.

    The drop applies to the update of the triggering epoch itself; the epoch is carried in the
    loop's state and recorded in the trajectory (``drop_epoch``).
    """

    lr: float
    threshold: float
    factor: float = 5.0
    drops = True

    def __post_init__(self):
        object.__setattr__(self, "lr", check_positive("DropBelow.lr", self.lr))
        object.__setattr__(self, "threshold", check_positive("DropBelow.threshold", self.threshold))
        object.__setattr__(self, "factor", check_positive("DropBelow.factor", self.factor))
        # the rate after the drop, divided once in Python (float64) as a constant would be
        object.__setattr__(self, "_low", self.lr / self.factor)

    @property
    def first(self) -> float:
        return self.lr

    def rate(self, state, e, loss):
        state = jnp.where((state < 0) & (loss < self.threshold), jnp.asarray(e, jnp.int32), state)
        lr = jnp.where(state >= 0, self._low, self.lr)
        return lr, state


# ----------------------------------------------------------------------------- pytrees
# (leaf names, static names) per schedule: the leaves are traced, the static part is hashed.
_PYTREE = {Constant: (("lr",), ()), Piecewise: (("values",), ("boundaries",)),
           DropBelow: (("lr", "threshold", "factor", "_low"), ())}


def _flatten(sched):
    leaves, static = _PYTREE[type(sched)]
    return tuple(getattr(sched, n) for n in leaves), tuple(getattr(sched, n) for n in static)


def _unflatten(cls, static, leaves):
    """Rebuild without ``__post_init__``: the leaves may be tracers (checked when first built)."""
    obj = object.__new__(cls)
    names_leaves, names_static = _PYTREE[cls]
    for n, v in zip(names_leaves, leaves):
        object.__setattr__(obj, n, v)
    for n, v in zip(names_static, static):
        object.__setattr__(obj, n, v)
    return obj


for _cls in _PYTREE:
    jax.tree_util.register_pytree_node(_cls, _flatten, lambda static, leaves, cls=_cls: _unflatten(cls, static, leaves))


def as_schedule(lr, where: str = "lr") -> Schedule:
    """A float becomes :class:`Constant`; a :class:`Schedule` passes through; anything else raises."""
    if isinstance(lr, Schedule):
        return lr
    if not is_number(lr) or lr <= 0:
        raise InvalidParameterError(f"{where} must be a positive finite number or a schedule, got {lr!r}")
    return Constant(float(lr))
