"""Tasks: batches of trials (inputs, targets, mask) and generators of fresh trials.

A task handed to a learner is either a fixed :class:`Batch` or a *sampler*: a callable
``key -> Batch`` taking a JAX PRNG key, vectorised over the batch (no Python loop over
trials) so that a whole training loop with fresh trials per epoch compiles. The samplers
here are frozen dataclasses, hashable, validated at construction.

Time convention (THEORY.md section 1): step ``t`` uses input ``x_t`` and its readout ``y_t``
is taken after the update, at time ``t * dt`` on the task's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .errors import InvalidParameterError

LOSSES = ("sum_time", "masked_mean")


def _is_concrete(x) -> bool:
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
        Weight of each scored output (0/1 in the built-in tasks).
    dt : float
        Euler time step.
    loss : {"sum_time", "masked_mean"}
        ``sum_time``: ``L = (1/B) sum_{b,t,o} mask (y - y*)^2 dt`` (impulse-response tasks);
        ``masked_mean``: ``L = sum(mask (y - y*)^2) / sum(mask)`` (trial-based tasks).
    """

    inputs: object
    targets: object
    mask: object = None
    dt: float = 0.05
    loss: str = "sum_time"

    def __post_init__(self):
        if self.mask is None:
            object.__setattr__(self, "mask", jnp.ones_like(jnp.asarray(self.targets)))
        if not all(_is_concrete(a) for a in (self.inputs, self.targets, self.mask)):
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
        if not (isinstance(self.dt, (float, int, np.floating)) and np.isfinite(self.dt) and self.dt > 0):
            raise InvalidParameterError(f"Batch.dt must be a positive number, got {self.dt!r}")
        if self.loss not in LOSSES:
            raise InvalidParameterError(f"Batch.loss must be one of {LOSSES}, got {self.loss!r}")

    @property
    def n_trials(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_steps(self) -> int:
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


def loss_value(outputs, batch: Batch):
    """Loss of ``outputs`` (B, T, Dout) on ``batch`` (scalar), following ``batch.loss``."""
    err = batch.mask * (outputs - batch.targets) ** 2
    if batch.loss == "sum_time":
        return jnp.sum(err) * batch.dt / outputs.shape[0]
    total = jnp.sum(batch.mask)
    # a batch in which nothing is scored has loss 0 (not 0/0)
    return jnp.where(total > 0, jnp.sum(err) / jnp.where(total > 0, total, 1.0), 0.0)


def _n_steps(T_max: float, dt: float, where: str) -> int:
    for name, v in (("dt", dt), ("T_max", T_max)):
        if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0):
            raise InvalidParameterError(f"{where}.{name} must be a positive number, got {v!r}")
    n = int(round(T_max / dt))
    if n < 1:
        raise InvalidParameterError(f"{where}: T_max/dt must give at least one step")
    return n


def _impulse(T: int, dt: float) -> np.ndarray:
    x = np.zeros((1, T, 1))
    x[0, 0, 0] = 1.0 / dt
    return x


def exponential_filter(c: float = 0.2, dt: float = 0.05, T_max: float = 20.0) -> Batch:
    """Impulse input ``x_0 = 1/dt``; target impulse response ``y*(t) = exp(-c t)``; ``sum_time`` loss.

    Returns a fixed :class:`Batch` with B = 1, T = T_max/dt, Din = Dout = 1 (E1).
    """
    T = _n_steps(T_max, dt, "exponential_filter")
    t = np.arange(T) * dt
    return Batch(_impulse(T, dt), np.exp(-c * t)[None, :, None], np.ones((1, T, 1)), dt, "sum_time")


def damped_oscillation(c: float = 0.3, omega: float = 2.0, dt: float = 0.05, T_max: float = 20.0) -> Batch:
    """Impulse input; target ``y*(t) = exp(-c t) cos(omega t)``; ``sum_time`` loss (E2, rank 2)."""
    T = _n_steps(T_max, dt, "damped_oscillation")
    t = np.arange(T) * dt
    y = np.exp(-c * t) * np.cos(omega * t)
    return Batch(_impulse(T, dt), y[None, :, None], np.ones((1, T, 1)), dt, "sum_time")


def _check_fields(obj, positive=(), nonneg=(), ints=()):
    name = type(obj).__name__
    for f in ints:
        v = getattr(obj, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidParameterError(f"{name}.{f} must be an integer >= 1, got {v!r}")
    for f in positive:
        v = getattr(obj, f)
        if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0):
            raise InvalidParameterError(f"{name}.{f} must be a positive number, got {v!r}")
    for f in nonneg:
        v = getattr(obj, f)
        if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v >= 0):
            raise InvalidParameterError(f"{name}.{f} must be a non-negative number, got {v!r}")


@dataclass(frozen=True)
class FlipFlop:
    """Sampler of flip-flop trials (E6, E8): ``key -> Batch`` with ``masked_mean`` loss.

    The first pulse starts at ``first_pulse``; each later one starts ``pulse_duration + wait``
    after the previous onset, ``wait ~ U(wait_min, wait_max)``. A pulse lasts ``pulse_duration``
    with sign +-1 and amplitude ``input_amplitude``. The target holds ``target_amplitude`` times
    the sign of the last pulse from its onset on (0 before the first pulse). The loss mask is 0
    before the first pulse and from one step before each pulse until ``mask_after`` seconds
    after it ends, 1 elsewhere.
    """

    n_trials: int = 10
    dt: float = 0.025
    T_max: float = 20.0
    first_pulse: float = 0.5
    wait_min: float = 4.0
    wait_max: float = 10.0
    pulse_duration: float = 0.5
    input_amplitude: float = 1.0
    target_amplitude: float = 0.5
    mask_after: float = 2.0

    def __post_init__(self):
        _check_fields(self, positive=("dt", "T_max", "pulse_duration", "wait_max"),
                      nonneg=("first_pulse", "wait_min", "input_amplitude", "target_amplitude", "mask_after"),
                      ints=("n_trials",))
        if self.wait_min > self.wait_max:
            raise InvalidParameterError(
                f"FlipFlop.wait_min ({self.wait_min}) must not exceed wait_max ({self.wait_max})"
            )
        _n_steps(self.T_max, self.dt, "FlipFlop")
        if self.wait_max <= self.mask_after + self.dt:
            raise InvalidParameterError(
                f"FlipFlop.mask_after ({self.mask_after}) must be shorter than wait_max - dt "
                f"({self.wait_max - self.dt:g}): otherwise no step between pulses is ever scored"
            )

    @property
    def n_steps(self) -> int:
        return int(round(self.T_max / self.dt))

    def __call__(self, key) -> Batch:
        B, T, dt = self.n_trials, self.n_steps, self.dt
        n_pulses = int(np.ceil(self.T_max / (self.pulse_duration + self.wait_min))) + 1
        k_wait, k_sign = jax.random.split(key)
        waits = jax.random.uniform(k_wait, (B, n_pulses - 1), minval=self.wait_min, maxval=self.wait_max)
        gaps = jnp.concatenate([jnp.zeros((B, 1)), self.pulse_duration + waits], axis=1)
        onsets = self.first_pulse + jnp.cumsum(gaps, axis=1)  # (B, P)
        signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (B, n_pulses)), 1.0, -1.0)
        t = jnp.arange(T) * dt  # (T,)
        # Step t is "in" a pulse when its time lies in [onset, onset + duration); half a step of
        # tolerance makes the discretisation independent of float rounding of t.
        eps = 0.5 * dt
        on = (t[None, :, None] >= onsets[:, None, :] - eps) & (
            t[None, :, None] < onsets[:, None, :] + self.pulse_duration - eps
        )  # (B, T, P)
        inputs = self.input_amplitude * jnp.sum(on * signs[:, None, :], axis=-1)
        started = t[None, :, None] >= onsets[:, None, :] - eps
        count = jnp.sum(started, axis=-1)  # pulses started so far
        last = jnp.take_along_axis(signs, jnp.clip(count - 1, 0, n_pulses - 1), axis=1)
        targets = jnp.where(count > 0, self.target_amplitude * last, 0.0)
        blank = (t[None, :, None] >= onsets[:, None, :] - dt - eps) & (
            t[None, :, None] < onsets[:, None, :] + self.pulse_duration + self.mask_after - eps
        )
        mask = jnp.where(jnp.any(blank, axis=-1) | (count == 0), 0.0, 1.0)
        return Batch(inputs[..., None], targets[..., None], mask[..., None], dt, "masked_mean")


def flip_flop(**kwargs) -> FlipFlop:
    """Flip-flop trial sampler; see :class:`FlipFlop` for the parameters (paper E6 defaults)."""
    return FlipFlop(**kwargs)


@dataclass(frozen=True)
class DecisionMaking:
    """Sampler of perceptual decision-making trials (E8): ``key -> Batch``, ``masked_mean`` loss.

    Fixation ``fixation`` s (input 0), stimulus ``stimulus`` s with input
    ``coherence/100 * stimulus_scale`` plus Gaussian noise (std ``noise_std`` per step),
    delay ``delay`` s, response ``response`` s with target ``coherence * target_scale``.
    The mask is 1 in the response period only. ``T_max`` is the sum of the four periods.
    """

    n_trials: int = 128
    dt: float = 0.05
    fixation: float = 1.0
    stimulus: float = 9.0
    delay: float = 1.0
    response: float = 9.0
    coherences: tuple = (-16.0, -8.0, -2.0, 2.0, 8.0, 16.0)
    stimulus_scale: float = 3.2
    noise_std: float = 0.05
    target_scale: float = 1.0 / 16.0

    def __post_init__(self):
        _check_fields(self, positive=("dt", "stimulus", "response"),
                      nonneg=("fixation", "delay", "noise_std"), ints=("n_trials",))
        object.__setattr__(self, "coherences", tuple(float(c) for c in self.coherences))
        if not self.coherences:
            raise InvalidParameterError("DecisionMaking.coherences must not be empty")

    @property
    def T_max(self) -> float:
        return self.fixation + self.stimulus + self.delay + self.response

    @property
    def n_steps(self) -> int:
        return int(round(self.T_max / self.dt))

    def __call__(self, key) -> Batch:
        B, T, dt = self.n_trials, self.n_steps, self.dt
        k_c, k_n = jax.random.split(key)
        coh = jnp.asarray(self.coherences)[jax.random.randint(k_c, (B,), 0, len(self.coherences))]
        t = jnp.arange(T) * dt + 0.5 * dt
        s0 = self.fixation
        s1 = s0 + self.stimulus
        r0 = s1 + self.delay
        stim = ((t >= s0) & (t < s1)).astype(float)
        resp = (t >= r0).astype(float)
        noise = self.noise_std * jax.random.normal(k_n, (B, T))
        inputs = stim[None, :] * (coh[:, None] / 100.0 * self.stimulus_scale + noise)
        targets = resp[None, :] * coh[:, None] * self.target_scale
        mask = jnp.broadcast_to(resp[None, :], (B, T))
        return Batch(inputs[..., None], targets[..., None], mask[..., None], dt, "masked_mean")


def decision_making(**kwargs) -> DecisionMaking:
    """Perceptual decision-making trial sampler; see :class:`DecisionMaking`."""
    return DecisionMaking(**kwargs)


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class LabelNoise:
    """Sampler adding fresh Gaussian noise of std ``std`` to the targets of ``task`` each epoch.

    ``task`` is a fixed :class:`Batch` or another sampler.
    """

    task: object
    std: float = 0.1

    def __post_init__(self):
        if _is_concrete(self.std):
            _check_fields(self, nonneg=("std",))

    def __call__(self, key) -> Batch:
        k_task, k_noise = jax.random.split(key)
        base = self.task(k_task) if callable(self.task) else self.task
        noise = self.std * jax.random.normal(k_noise, jnp.shape(base.targets))
        return Batch(base.inputs, base.targets + noise, base.mask, base.dt, base.loss)

    def tree_flatten(self):
        return (self.task,), (self.std,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "task", children[0])
        object.__setattr__(obj, "std", aux[0])
        return obj


def with_label_noise(task, std: float = 0.1) -> LabelNoise:
    """Wrap ``task`` (Batch or sampler) so that each epoch's targets carry N(0, std^2) noise."""
    return LabelNoise(task, std)
