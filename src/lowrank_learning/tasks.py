"""Tasks: batches of trials (inputs, targets, mask) and generators of fresh trials.

A task handed to a learner is either a fixed :class:`Batch` or a *sampler*: a callable
``key -> Batch`` taking a JAX PRNG key, vectorised over the batch (no Python loop over
trials) so that a whole training loop with fresh trials per epoch compiles. The samplers
here are frozen dataclasses, hashable, validated at construction.

Time convention (book/theory.md, section 1): step ``t`` uses input ``x_t`` and its readout ``y_t``
is taken after the update, at time ``t * dt`` on the task's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .core._checks import (
    check_choice,
    check_finite,
    check_instance,
    check_int,
    check_nonnegative,
    check_positive,
    check_vectors,
)
from .core.architecture import Architecture
from .core.batch import LOSSES, Batch, is_concrete
from .core.errors import InvalidParameterError
from .core.latent import run_latent
from .core.network import run_network
from .core.overlaps import validate_sigma


def _n_steps(T_max: float, dt: float, where: str) -> int:
    """Number of steps ``round(T_max / dt)``, at least 1 (``dt`` and ``T_max`` positive)."""
    check_positive(f"{where}.dt", dt)
    check_positive(f"{where}.T_max", T_max)
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


def _check_fields(obj, positive=(), nonneg=(), ints=(), finite=()):
    """Check the named fields of ``obj``: integers >= 1, positive, non-negative and finite
    numbers; each message names ``Class.field``."""
    name = type(obj).__name__
    for f in ints:
        check_int(f"{name}.{f}", getattr(obj, f), 1)
    for f in positive:
        check_positive(f"{name}.{f}", getattr(obj, f))
    for f in nonneg:
        check_nonnegative(f"{name}.{f}", getattr(obj, f))
    for f in finite:
        check_finite(f"{name}.{f}", getattr(obj, f))


@dataclass(frozen=True)
class _Trials:
    """The fields every trial sampler starts with: ``n_trials`` trials with Euler step ``dt``.

    A subclass gives the trial duration ``T_max`` (a field or a property).
    """

    n_trials: int = 128
    dt: float = 0.05

    @property
    def n_steps(self) -> int:
        """Number of time steps of a trial, ``round(T_max / dt)``."""
        return int(round(self.T_max / self.dt))


@dataclass(frozen=True)
class _PulseTiming(_Trials):
    """The flip-flop timing shared by :class:`FlipFlop` and :class:`NoisyPulses` (one generator,
    :func:`_pulse_train`).

    Each subclass declares ``mask_after`` and its amplitudes after these fields, in its own
    order, and names the amplitudes (non-negative numbers) in ``_AMPLITUDES``.
    """

    T_max: float = 20.0
    first_pulse: float = 0.5
    wait_min: float = 4.0
    wait_max: float = 10.0
    pulse_duration: float = 0.5

    _AMPLITUDES = ()

    def __post_init__(self):
        name = type(self).__name__
        _check_fields(self, positive=("dt", "T_max", "pulse_duration", "wait_max"),
                      nonneg=("first_pulse", "wait_min", "mask_after"), ints=("n_trials",))
        if self.wait_min > self.wait_max:
            raise InvalidParameterError(
                f"{name}.wait_min ({self.wait_min}) must not exceed wait_max ({self.wait_max})"
            )
        _n_steps(self.T_max, self.dt, name)
        _check_fields(self, nonneg=self._AMPLITUDES)


def _pulse_times(obj, key):
    """Onsets (s) and signs of the pulses of ``obj``'s flip-flop timing, both of shape (B, P).

    The first onset is ``first_pulse``; consecutive onsets are
    ``pulse_duration + mask_after + wait`` apart with ``wait ~ U(wait_min, wait_max)``; each
    sign is +-1 with probability 1/2. P is enough pulses to cover ``[0, T_max]``.
    """
    B = obj.n_trials
    min_gap = obj.pulse_duration + obj.mask_after + obj.wait_min
    n_pulses = max(int(np.ceil(max(obj.T_max - obj.first_pulse, 0.0) / min_gap)), 0) + 1
    k_wait, k_sign = jax.random.split(key)
    waits = jax.random.uniform(k_wait, (B, n_pulses - 1), minval=obj.wait_min, maxval=obj.wait_max)
    gaps = jnp.concatenate([jnp.zeros((B, 1)), obj.pulse_duration + obj.mask_after + waits], axis=1)
    onsets = obj.first_pulse + jnp.cumsum(gaps, axis=1)
    signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (B, n_pulses)), 1.0, -1.0)
    return onsets, signs


def _pulse_train(obj, key):
    """The one pulse generator (vectorised over trials), used by :class:`FlipFlop` and :class:`NoisyPulses`.

    Returns ``pulses`` (B, T) (the sign of the current pulse, 0 between pulses), ``count``
    (B, T) (pulses started so far), ``last`` (B, T) (sign of the last pulse started, 0 before
    the first) and ``blank`` (B, T) (True from one step before each onset until
    ``mask_after`` s after the pulse ends).

    Discretisation: step ``k`` (time ``k dt``) belongs to ``[a, b)`` when
    ``a - dt/2 <= k dt < b - dt/2``, i.e. interval ends are rounded to the nearest step, so a
    pulse lasts ``round(pulse_duration/dt)`` steps whatever the float rounding of its onset.
    """
    onsets, signs = _pulse_times(obj, key)
    dt = obj.dt
    t = (jnp.arange(obj.n_steps) * dt)[None, :]  # (1, T)
    eps = 0.5 * dt
    n_pulses = onsets.shape[1]
    # One (B, T) pass per pulse (P is a handful) rather than (B, T, P) arrays reduced over P, to
    # keep the arrays small; every sum is of small integers, exact in any order.
    pulses = jnp.zeros(t.shape[1:], signs.dtype)
    count = jnp.zeros(t.shape[1:], int)
    blank = jnp.zeros(t.shape[1:], bool)
    for p in range(n_pulses):
        on_, sign = onsets[:, p:p + 1], signs[:, p:p + 1]  # (B, 1)
        started = t >= on_ - eps
        pulses = pulses + jnp.where(started & (t < on_ + obj.pulse_duration - eps), sign, 0.0)
        count = count + started
        blank = blank | ((t >= on_ - dt - eps) & (t < on_ + obj.pulse_duration + obj.mask_after - eps))
    last = jnp.take_along_axis(signs, jnp.clip(count - 1, 0, n_pulses - 1), axis=1)
    last = jnp.where(count > 0, last, 0.0)
    return pulses, count, last, blank


@dataclass(frozen=True)
class FlipFlop(_PulseTiming):
    """Sampler of flip-flop trials (E6, E8; the authors' generator): ``key -> Batch``, ``masked_mean`` loss.

    Timing: the first pulse starts at ``first_pulse``; each pulse lasts ``pulse_duration`` with
    sign +-1 and amplitude ``input_amplitude``; after each pulse comes a period of
    ``mask_after`` s that is not scored, then a wait ``~ U(wait_min, wait_max)``, then the next
    pulse, so consecutive onsets are ``pulse_duration + mask_after + wait`` apart.
    The target holds ``target_amplitude`` times the sign of the last pulse from its onset on (0
    before the first pulse). The loss mask is 0 before the first pulse and from one step before
    each pulse until the end of its unscored period, 1 elsewhere. Interval ends are rounded to
    the nearest step (see :meth:`pulse_times` for the continuous onsets).

    Defaults are E6's (dt 0.025, T_max 20, waits U(4, 10), amplitude 1, target 0.5). E8's
    flip-flop: ``FlipFlop(n_trials=128, dt=0.05, wait_min=1.0, wait_max=2.0,
    input_amplitude=2.0, target_amplitude=1.0)``.

    Calling it returns a :class:`Batch` with inputs, targets and mask of shape (n_trials, T, 1),
    ``T = round(T_max/dt)``.
    """

    n_trials: int = 10
    dt: float = 0.025
    input_amplitude: float = 1.0
    target_amplitude: float = 0.5
    mask_after: float = 2.0

    _AMPLITUDES = ("input_amplitude", "target_amplitude")

    def pulse_times(self, key):
        """Onsets in seconds and signs (+-1) of the pulses drawn by ``self(key)``, both (n_trials, P)."""
        return _pulse_times(self, jax.random.split(key)[0])

    def __call__(self, key) -> Batch:
        pulses, count, last, blank = _pulse_train(self, jax.random.split(key)[0])
        inputs = self.input_amplitude * pulses
        targets = self.target_amplitude * last
        mask = jnp.where(blank | (count == 0), 0.0, 1.0)
        return Batch(inputs[..., None], targets[..., None], mask[..., None], self.dt, "masked_mean")


def flip_flop(**kwargs) -> FlipFlop:
    """Flip-flop trial sampler; see :class:`FlipFlop` for the parameters (paper E6 defaults)."""
    return FlipFlop(**kwargs)


@dataclass(frozen=True)
class NoisyPulses(_PulseTiming):
    """Input process ``key -> inputs`` (n_trials, T, 1): white noise plus flip-flop pulses (E8 phase 2).

    ``x_t = noise_std * xi_t + pulse_amplitude * p_t`` with ``xi_t ~ N(0, 1)`` i.i.d. per step
    and trial, and ``p_t`` the +-1 pulses of the :class:`FlipFlop` generator with the same
    timing fields (the same code draws them: ``p`` equals ``FlipFlop(...)(key).inputs /
    input_amplitude`` for the same timing and key). Defaults: E8 phase 2 (noise std 1.5, pulse
    amplitude 2, dt 0.05, T_max 20, 128 trials) with the E6 generator's timing (first pulse
    0.5 s, pulses 0.5 s, 2 s unscored period, waits U(4, 10)).
    """

    mask_after: float = 2.0
    noise_std: float = 1.5
    pulse_amplitude: float = 2.0

    _AMPLITUDES = ("noise_std", "pulse_amplitude")

    @property
    def n_in(self) -> int:
        """Input dimension (1)."""
        return 1

    def __call__(self, key):
        k_pulse, k_noise = jax.random.split(key)
        pulses, _, _, _ = _pulse_train(self, k_pulse)
        noise = jax.random.normal(k_noise, pulses.shape)
        return (self.noise_std * noise + self.pulse_amplitude * pulses)[..., None]


def noisy_pulses(**kwargs) -> NoisyPulses:
    """White noise plus flip-flop pulses, ``key -> inputs (B, T, 1)``; see :class:`NoisyPulses`."""
    return NoisyPulses(**kwargs)


@dataclass(frozen=True)
class DecisionMaking(_Trials):
    """Sampler of perceptual decision-making trials (E8): ``key -> Batch``, ``masked_mean`` loss.

    Periods: fixation ``fixation`` s, stimulus ``stimulus`` s, delay ``delay`` s, response
    ``response`` s (E8: 1, 9, 1, 9). Each trial draws a coherence ``c`` uniformly from
    ``coherences``. Input at every step of the trial: Gaussian noise of std ``noise_std``
    (fresh per step and trial), plus ``c/100 * stimulus_scale`` during the stimulus. Target
    ``c * target_scale`` (E8: ``c/16``) in the response period, 0 elsewhere; the mask is 1 in the
    response period only. ``T_max`` is the sum of the four periods; step ``k`` belongs to the
    period containing its midpoint ``(k + 1/2) dt``.

    Calling it returns a :class:`Batch` with arrays of shape (n_trials, T, 1), ``T = round(T_max/dt)``.
    """

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
                      nonneg=("fixation", "delay", "noise_std"), ints=("n_trials",),
                      finite=("stimulus_scale", "target_scale"))
        try:
            coh = tuple(float(c) for c in self.coherences)
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"DecisionMaking.coherences must be a sequence of numbers, got {self.coherences!r}"
            ) from None
        if not coh or not all(np.isfinite(coh)):
            raise InvalidParameterError(
                f"DecisionMaking.coherences must be a non-empty sequence of finite numbers, got {self.coherences!r}"
            )
        object.__setattr__(self, "coherences", coh)
        _n_steps(self.T_max, self.dt, "DecisionMaking")

    @property
    def T_max(self) -> float:
        return self.fixation + self.stimulus + self.delay + self.response

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
        inputs = stim[None, :] * coh[:, None] / 100.0 * self.stimulus_scale + noise
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
        if not (isinstance(self.task, Batch) or callable(self.task)):
            raise InvalidParameterError(
                f"LabelNoise.task must be a Batch or a callable key -> Batch, got {type(self.task).__name__}"
            )
        if is_concrete(self.std):
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


TEACHER_KINDS = ("overlaps", "vectors")


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, eq=False)
class Teacher:
    """Sampler whose targets are a teacher network's outputs on a given input process (E8 phase 2).

    ``key -> Batch``: ``inputs = input_process(key)`` (B, T, n_in), ``targets`` the teacher's
    outputs on them (B, T, n_out), mask all ones.

    Parameters
    ----------
    arch : Architecture
        The teacher's architecture.
    params : array
        ``kind="overlaps"``: the teacher's overlap matrix (K, K), symmetric positive
        semi-definite; targets from :func:`lowrank_learning.run_latent` (exact for
        linear units, the mean-field N -> infinity limit for erf/tanh).
        ``kind="vectors"``: the teacher's vectors X (N, K); targets from the full network,
        :func:`lowrank_learning.run_network`.
    input_process : callable ``key -> array (B, T, n_in)``
        Hashable (e.g. a frozen dataclass such as :class:`NoisyPulses`); drawn fresh per key.
    dt : float
        Euler step of the teacher and of the batch; defaults to ``input_process.dt``.
    kind : {"overlaps", "vectors"}
    loss : {"sum_time", "masked_mean"}
        Default ``sum_time``. With the all-ones mask it equals E8's "mean squared error over
        trials and steps times T*dt": ``(1/B) sum_{b,t} (y - y*)^2 dt
        = [sum_{b,t} (y - y*)^2 / (B T)] * T dt``.

    The teacher's array is the pytree child (passed dynamically into the compiled training
    loop); ``arch``, ``input_process``, ``dt``, ``kind`` and ``loss`` are static (hashable)
    auxiliary data. The targets carry no gradient (``stop_gradient``).
    """

    arch: object
    params: object
    input_process: object
    dt: float | None = None
    kind: str = "overlaps"
    loss: str = "sum_time"

    def __post_init__(self):
        check_instance("Teacher.arch", self.arch, Architecture)
        check_choice("Teacher.kind", self.kind, TEACHER_KINDS)
        check_choice("Teacher.loss", self.loss, LOSSES)
        if not callable(self.input_process):
            raise InvalidParameterError(
                f"Teacher.input_process must be a callable key -> inputs (B, T, n_in), "
                f"got {type(self.input_process).__name__}"
            )
        try:
            hash(self.input_process)
        except TypeError:
            raise InvalidParameterError(
                "Teacher.input_process must be hashable (e.g. a frozen dataclass such as NoisyPulses), "
                f"got an unhashable {type(self.input_process).__name__}"
            ) from None
        own_dt = getattr(self.input_process, "dt", None)
        if self.dt is None:
            if own_dt is None:
                raise InvalidParameterError("Teacher.dt must be given (the input process has no dt)")
            object.__setattr__(self, "dt", own_dt)
        elif own_dt is not None and own_dt != self.dt:
            raise InvalidParameterError(
                f"Teacher.dt ({self.dt!r}) differs from the input process's dt ({own_dt!r})"
            )
        _check_fields(self, positive=("dt",))
        shape = jax.eval_shape(self.input_process, jax.random.PRNGKey(0)).shape
        if len(shape) != 3 or shape[-1] != self.arch.n_in:
            raise InvalidParameterError(
                f"Teacher.input_process must return inputs of shape (B, T, {self.arch.n_in}) to match the "
                f"teacher's n_in = {self.arch.n_in}, got shape {tuple(shape)}"
            )
        if not is_concrete(self.params):
            return
        if self.kind == "overlaps":
            params = validate_sigma(self.arch, self.params, name="Teacher.params (overlaps)")
        else:
            params = np.asarray(self.params, dtype=float)
            check_vectors(params, self.arch.K, self.arch.vector_names, "Teacher.params (vectors)")
        object.__setattr__(self, "params", params)

    @property
    def n_in(self) -> int:
        return self.arch.n_in

    def __call__(self, key) -> Batch:
        inputs = jnp.asarray(self.input_process(key))
        if self.kind == "overlaps":
            y = run_latent(self.arch, self.params, inputs, self.dt)
        else:
            y = run_network(self.arch, self.params, inputs, self.dt)
        y = jax.lax.stop_gradient(y)
        return Batch(inputs, y, jnp.ones_like(y), self.dt, self.loss)

    def tree_flatten(self):
        return (self.params,), (self.arch, self.input_process, self.dt, self.kind, self.loss)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "params", children[0])
        for name, value in zip(("arch", "input_process", "dt", "kind", "loss"), aux):
            object.__setattr__(obj, name, value)
        return obj


def teacher(arch, input_process, *, sigma=None, vectors=None, dt: float | None = None,
            loss: str = "sum_time") -> Teacher:
    """Teacher task: targets are the outputs of a teacher network on ``input_process(key)``.

    Give exactly one of ``sigma`` (overlaps (K, K): mean-field/exact targets from
    :func:`~lowrank_learning.run_latent`) or ``vectors`` (X (N, K): targets from the
    full network :func:`~lowrank_learning.run_network`). See :class:`Teacher`.

    Example (E8 phase 2)::

        teacher(arch, noisy_pulses(), sigma=Sigma_teacher)   # key -> Batch (128, 400, 1)
    """
    if (sigma is None) == (vectors is None):
        raise InvalidParameterError("teacher: give exactly one of sigma (overlaps) or vectors")
    if sigma is not None:
        return Teacher(arch, sigma, input_process, dt, "overlaps", loss)
    return Teacher(arch, vectors, input_process, dt, "vectors", loss)
