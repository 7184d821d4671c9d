"""Task samplers: flip-flop timing, pulse inputs, decision making, teacher targets, Batch checks.

Each sampler is checked against a plain-numpy reference written here (loops over trials and
steps), not against its own vectorised code.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning.tasks import FlipFlop, NoisyPulses


def _reference_flip_flop(onsets, signs, T, dt, pulse_duration, mask_after, amp, target_amp):
    """One trial by plain loops: interval ends rounded to the nearest step."""
    x, y, m = np.zeros(T), np.zeros(T), np.ones(T)
    n_pulse = int(round(pulse_duration / dt))
    n_blank = int(round((pulse_duration + mask_after) / dt))
    first = int(round(onsets[0] / dt))
    m[: min(first, T)] = 0.0
    for onset, sign in zip(onsets, signs):
        k0 = int(round(onset / dt))
        for k in range(k0, min(k0 + n_pulse, T)):
            x[k] = amp * sign
        for k in range(k0, T):
            y[k] = target_amp * sign
        for k in range(max(k0 - 1, 0), min(k0 + n_blank, T)):
            m[k] = 0.0
    return x, y, m


@pytest.mark.parametrize("kw", [
    {},  # E6 defaults
    dict(n_trials=16, dt=0.05, wait_min=1.0, wait_max=2.0, input_amplitude=2.0, target_amplitude=1.0),  # E8
])
def test_flip_flop_matches_reference(kw):
    kw = {"n_trials": 16, **kw}
    ff = FlipFlop(**kw)
    key = jax.random.PRNGKey(3)
    b = ff(key)
    onsets, signs = (np.asarray(a) for a in ff.pulse_times(key))
    T, dt = ff.n_steps, ff.dt
    assert b.inputs.shape == b.targets.shape == b.mask.shape == (16, T, 1)
    assert b.loss == "masked_mean" and b.dt == dt
    # timing of the authors' generator: first onset 0.5 s, gaps pulse + 2 s + U(wait_min, wait_max)
    np.testing.assert_allclose(onsets[:, 0], 0.5)
    waits = np.diff(onsets, axis=1) - ff.pulse_duration - ff.mask_after
    assert np.all(waits >= ff.wait_min) and np.all(waits <= ff.wait_max)
    assert np.all(onsets[:, -1] > ff.T_max)  # enough pulses to cover the trial
    assert set(np.unique(signs)) <= {-1.0, 1.0}
    xs, ys, ms = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    for i in range(16):
        x, y, m = _reference_flip_flop(onsets[i], signs[i], T, dt, ff.pulse_duration, ff.mask_after,
                                       ff.input_amplitude, ff.target_amplitude)
        np.testing.assert_array_equal(xs[i], x)
        np.testing.assert_array_equal(ys[i], y)
        np.testing.assert_array_equal(ms[i], m)


def test_flip_flop_pulse_lengths_and_gaps_from_inputs():
    ff = FlipFlop(n_trials=32)
    b = ff(jax.random.PRNGKey(0))
    x, ys = np.asarray(b.inputs[..., 0]), np.asarray(b.targets[..., 0])
    for i in range(32):
        on = (x[i] != 0).astype(int)
        starts = np.flatnonzero(np.diff(np.r_[0, on]) == 1)
        ends = np.flatnonzero(np.diff(np.r_[on, 0]) == -1) + 1
        assert starts[0] == 20  # 0.5 s / 0.025
        full = ends < len(on)
        assert np.all((ends - starts)[full] == 20)  # 0.5 s pulses
        gaps = np.diff(starts) * ff.dt
        # 0.5 + 2 + U(4, 10), onsets rounded to the step
        assert np.all(gaps >= 6.5 - ff.dt) and np.all(gaps <= 12.5 + ff.dt)
        # the target holds the sign of the last pulse; 0 before the first
        y = ys[i]
        assert np.all(y[:20] == 0)
        for s, e in zip(starts, np.r_[starts[1:], len(on)]):
            assert np.all(y[s:e] == 0.5 * np.sign(x[i, s]))


def test_flip_flop_accepts_long_unscored_period_and_validates():
    FlipFlop(wait_min=0.5, wait_max=1.0, mask_after=3.0)  # constraint of the old generator is gone
    for field, value in [("n_trials", 0), ("dt", -0.1), ("T_max", float("nan")), ("first_pulse", -1.0),
                         ("wait_min", -1.0), ("wait_max", 0.0), ("pulse_duration", 0.0),
                         ("input_amplitude", float("inf")), ("target_amplitude", -1.0), ("mask_after", -0.5)]:
        with pytest.raises(ll.InvalidParameterError, match=f"FlipFlop.{field}"):
            FlipFlop(**{field: value})
    with pytest.raises(ll.InvalidParameterError, match="FlipFlop.wait_min"):
        FlipFlop(wait_min=3.0, wait_max=2.0)


def test_noisy_pulses_share_the_flip_flop_generator():
    timing = dict(n_trials=64, dt=0.05, T_max=20.0, wait_min=1.0, wait_max=2.0)
    key = jax.random.PRNGKey(5)
    proc = NoisyPulses(**timing, noise_std=1.5, pulse_amplitude=2.0)
    x = np.asarray(proc(key))
    assert x.shape == (64, 400, 1) and proc.n_in == 1
    k_pulse, k_noise = jax.random.split(key)
    # the same key gives the same pulses as the flip-flop sampler: the residual is pure noise
    pulses = np.asarray(FlipFlop(**timing, input_amplitude=1.0)(key).inputs)
    noise = (x - 2.0 * pulses) / 1.5
    np.testing.assert_allclose(noise, np.asarray(jax.random.normal(k_noise, (64, 400)))[..., None], atol=1e-12)
    assert abs(noise.mean()) < 5 / np.sqrt(noise.size) and abs(noise.std() - 1) < 0.02
    assert np.asarray(NoisyPulses(**timing, noise_std=0.0)(key)).tolist() == (2.0 * pulses).tolist()
    with pytest.raises(ll.InvalidParameterError, match="NoisyPulses.noise_std"):
        NoisyPulses(noise_std=-1.0)
    with pytest.raises(ll.InvalidParameterError, match="NoisyPulses.wait_min"):
        NoisyPulses(wait_min=5.0, wait_max=4.0)
