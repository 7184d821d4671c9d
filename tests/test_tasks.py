"""Task samplers: flip-flop timing, pulse inputs, decision making, teacher targets, Batch checks.

Each sampler is checked against a plain-numpy reference written here (loops over trials and
steps), not against its own vectorised code.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll
from lowrank_learning.learn._loop import _get_batch, _partition_task


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
    ff = ll.tasks.FlipFlop(**kw)
    key = jax.random.PRNGKey(3)
    b = jax.jit(ff)(key)  # one compiled program (eager dispatch compiles op by op: slower)
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


@settings(max_examples=15, deadline=None)
@given(dt=st.sampled_from([0.025, 0.05, 0.1]), pulse_duration=st.sampled_from([0.2, 0.5, 1.0]),
       mask_after=st.sampled_from([0.0, 0.5, 2.0]), wait_min=st.floats(0.0, 3.0),
       wait_span=st.floats(0.05, 5.0), seed=st.integers(0, 2**16))
def test_flip_flop_matches_reference_any_timing(dt, pulse_duration, mask_after, wait_min, wait_span, seed):
    """The pulse generator (one (B, T) pass per pulse) against the plain loops, over timings:
    short and long pulses, no unscored period, waits from 0 s."""
    ff = ll.tasks.FlipFlop(n_trials=6, dt=dt, T_max=12.0, pulse_duration=pulse_duration, mask_after=mask_after,
                  wait_min=wait_min, wait_max=wait_min + wait_span, input_amplitude=1.5, target_amplitude=0.5)
    key = jax.random.PRNGKey(seed)
    b = jax.jit(ff)(key)
    onsets, signs = (np.asarray(a) for a in ff.pulse_times(key))
    xs, ys, ms = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    for i in range(6):
        x, y, m = _reference_flip_flop(onsets[i], signs[i], ff.n_steps, dt, pulse_duration, mask_after,
                                       1.5, 0.5)
        np.testing.assert_array_equal(xs[i], x)
        np.testing.assert_array_equal(ys[i], y)
        np.testing.assert_array_equal(ms[i], m)


def test_flip_flop_pulse_lengths_and_gaps_from_inputs():
    ff = ll.tasks.FlipFlop(n_trials=32)
    b = jax.jit(ff)(jax.random.PRNGKey(0))
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
    ll.tasks.FlipFlop(wait_min=0.5, wait_max=1.0, mask_after=3.0)  # unscored period longer than a wait
    for field, value in [("n_trials", 0), ("dt", -0.1), ("T_max", float("nan")), ("first_pulse", -1.0),
                         ("wait_min", -1.0), ("wait_max", 0.0), ("pulse_duration", 0.0),
                         ("input_amplitude", float("inf")), ("target_amplitude", -1.0), ("mask_after", -0.5)]:
        with pytest.raises(ll.InvalidParameterError, match=f"FlipFlop.{field}"):
            ll.tasks.FlipFlop(**{field: value})
    with pytest.raises(ll.InvalidParameterError, match="FlipFlop.wait_min"):
        ll.tasks.FlipFlop(wait_min=3.0, wait_max=2.0)


def test_noisy_pulses_share_the_flip_flop_generator():
    timing = dict(n_trials=64, dt=0.05, T_max=20.0, wait_min=1.0, wait_max=2.0)
    key = jax.random.PRNGKey(5)
    proc = ll.tasks.NoisyPulses(**timing, noise_std=1.5, pulse_amplitude=2.0)
    x = np.asarray(jax.jit(proc)(key))
    assert x.shape == (64, 400, 1) and proc.n_in == 1
    k_pulse, k_noise = jax.random.split(key)
    # the same key gives the same pulses as the flip-flop sampler: the residual is pure noise
    pulses = np.asarray(jax.jit(ll.tasks.FlipFlop(**timing, input_amplitude=1.0))(key).inputs)
    noise = (x - 2.0 * pulses) / 1.5
    np.testing.assert_allclose(noise, np.asarray(jax.random.normal(k_noise, (64, 400)))[..., None], atol=1e-12)
    assert abs(noise.mean()) < 5 / np.sqrt(noise.size) and abs(noise.std() - 1) < 0.02
    with pytest.raises(ll.InvalidParameterError, match="NoisyPulses.noise_std"):
        ll.tasks.NoisyPulses(noise_std=-1.0)
    with pytest.raises(ll.InvalidParameterError, match="NoisyPulses.wait_min"):
        ll.tasks.NoisyPulses(wait_min=5.0, wait_max=4.0)


# ----------------------------------------------------------------------------- decision making
def test_decision_making_noise_at_every_step():
    dm = ll.tasks.DecisionMaking(n_trials=256)
    b = jax.jit(dm)(jax.random.PRNGKey(2))
    x, y, m = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    T = dm.n_steps
    assert x.shape == (256, 400) and b.loss == "masked_mean"
    k = np.arange(T)  # periods by step: 1 s, 9 s, 1 s, 9 s at dt 0.05
    fix, stim, delay, resp = k < 20, (k >= 20) & (k < 200), (k >= 200) & (k < 220), k >= 220
    coh = y[:, -1] * 16
    np.testing.assert_allclose(coh, np.round(coh), atol=1e-12)
    assert set(np.round(coh).astype(int)) == {-16, -8, -2, 2, 8, 16}
    # target c/16 in the response period, 0 elsewhere; mask = response period
    np.testing.assert_allclose(y[:, resp], np.broadcast_to(coh[:, None] / 16, y[:, resp].shape))
    assert np.all(y[:, ~resp] == 0)
    assert np.all(m[:, resp] == 1) and np.all(m[:, ~resp] == 0)
    # noise of std 0.05 in every period; mean coherence term c/100 * 3.2 in the stimulus only
    resid = x - stim[None, :] * coh[:, None] / 100 * 3.2
    for name, period in [("fixation", fix), ("stimulus", stim), ("delay", delay), ("response", resp)]:
        r = resid[:, period]
        n = r.size  # >= 5120 samples: std of the sample std ~ 0.05 / sqrt(2n) < 0.5 %
        assert abs(r.std() / 0.05 - 1) < 5 / np.sqrt(2 * n), (name, r.std())
        assert abs(r.mean()) < 5 * 0.05 / np.sqrt(n), (name, r.mean())
    # the stimulus mean per trial estimates the coherence term (180 steps: sd 0.05/sqrt(180))
    np.testing.assert_allclose(x[:, stim].mean(axis=1), coh / 100 * 3.2, atol=5 * 0.05 / np.sqrt(180))


def test_decision_making_validates():
    for field, value in [("n_trials", 0), ("dt", 0.0), ("stimulus", -1.0), ("response", 0.0),
                         ("fixation", -1.0), ("delay", float("nan")), ("noise_std", -0.1),
                         ("stimulus_scale", float("inf")), ("target_scale", None),
                         ("coherences", ()), ("coherences", (1.0, float("nan"))), ("coherences", ("a",))]:
        with pytest.raises(ll.InvalidParameterError, match=f"DecisionMaking.{field}"):
            ll.tasks.DecisionMaking(**{field: value})


# ----------------------------------------------------------------------------- teacher
_S_ERF = dict(zm=0.5, zu=1.2, vm=0.9, vu=1.1, mu=0.6, zv=0.2, mm=1.5, uu=1.8, vv=1.6, zz=1.4)


def _teacher_sigma(act="erf"):
    return ll.sigma_from_named(ll.Architecture(activation=act), _S_ERF)


def test_teacher_targets_equal_direct_runs():
    arch = ll.Architecture(activation="erf")
    proc = ll.tasks.NoisyPulses(n_trials=4, dt=0.05, T_max=5.0, wait_min=1.0, wait_max=2.0)
    sigma = _teacher_sigma()
    key = jax.random.PRNGKey(7)
    inputs = proc(key)
    b = ll.tasks.teacher(arch, proc, sigma=sigma)(key)
    assert b.loss == "sum_time" and b.dt == 0.05 and b.targets.shape == (4, 100, 1)
    np.testing.assert_array_equal(np.asarray(b.inputs), np.asarray(inputs))
    np.testing.assert_array_equal(np.asarray(b.mask), 1.0)
    np.testing.assert_allclose(np.asarray(b.targets), np.asarray(ll.run_latent(arch, sigma, inputs, 0.05)),
                               rtol=1e-12, atol=1e-14)
    X = ll.sample_vectors(arch, 50, seed=0, sigma=sigma)
    bv = ll.tasks.teacher(arch, proc, vectors=X)(key)
    np.testing.assert_allclose(np.asarray(bv.targets), np.asarray(ll.run_network(arch, X, inputs, 0.05)),
                               rtol=1e-12, atol=1e-14)


def test_teacher_vectors_and_overlaps_agree_for_linear_units():
    """Independent check: for linear units the overlap teacher is exact, so it equals the vector teacher."""
    arch = ll.Architecture(activation="linear")
    proc = ll.tasks.NoisyPulses(n_trials=3, dt=0.05, T_max=5.0, wait_min=1.0, wait_max=2.0)
    X = ll.sample_vectors(arch, 30, seed=1)
    key = jax.random.PRNGKey(0)
    by = ll.tasks.teacher(arch, proc, vectors=X)(key)
    bs = ll.tasks.teacher(arch, proc, sigma=ll.overlaps(X))(key)
    y = np.asarray(by.targets)
    np.testing.assert_allclose(np.asarray(bs.targets), y, atol=1e-10 * np.max(np.abs(y)))


def test_teacher_sum_time_loss_is_mse_times_duration():
    arch = ll.Architecture(activation="erf")
    proc = ll.tasks.NoisyPulses(n_trials=4, dt=0.05, T_max=5.0, wait_min=1.0, wait_max=2.0)
    b = ll.tasks.teacher(arch, proc, sigma=_teacher_sigma())(jax.random.PRNGKey(1))
    out = np.asarray(b.targets) + np.asarray(jax.random.normal(jax.random.PRNGKey(9), b.targets.shape))
    mse = np.mean((out - np.asarray(b.targets)) ** 2)
    np.testing.assert_allclose(float(ll.loss_value(out, b)), mse * b.n_steps * b.dt, rtol=1e-12)


@pytest.mark.slow
def test_teacher_in_compiled_training_loop():
    arch = ll.Architecture(activation="erf")
    proc = ll.tasks.NoisyPulses(n_trials=4, dt=0.05, T_max=3.0, wait_min=1.0, wait_max=2.0)
    task = ll.tasks.teacher(arch, proc, sigma=_teacher_sigma())
    # the teacher's array is a dynamic pytree child; the rest is static
    leaves, treedef = jax.tree_util.tree_flatten(task)
    assert len(leaves) == 1 and leaves[0].shape == (4, 4)
    hash(treedef)
    key = jax.random.PRNGKey(4)
    b1 = jax.jit(lambda t, k: t(k))(task, key)
    b2 = jax.jit(lambda t, k: t(k))(task, key)
    np.testing.assert_array_equal(np.asarray(b1.targets), np.asarray(b2.targets))
    np.testing.assert_allclose(np.asarray(b1.targets), np.asarray(task(key).targets), rtol=1e-12, atol=1e-14)
    # a student that starts at the teacher has zero loss; learning from elsewhere lowers it
    tr = ll.learn_overlaps(arch, _teacher_sigma(), task, lr=1e-3, epochs=2, seed=0, progress=False)
    np.testing.assert_allclose(tr.loss, 0.0, atol=1e-20)


@dataclass  # eq=True without frozen: __hash__ is None
class _UnhashableProcess:
    def __call__(self, key):
        return jnp.zeros((2, 3, 1))


def test_teacher_validates():
    arch = ll.Architecture(activation="erf")
    proc = ll.tasks.NoisyPulses(n_trials=2, dt=0.05, T_max=2.0)
    S = _teacher_sigma()
    with pytest.raises(ll.InvalidParameterError, match=r"Teacher.params \(overlaps\) must have shape"):
        ll.tasks.teacher(arch, proc, sigma=np.eye(5))
    bad = S.copy()
    bad[0, 1] += 0.1
    with pytest.raises(ll.InvalidParameterError, match=r"Teacher.params \(overlaps\) is not symmetric"):
        ll.tasks.teacher(arch, proc, sigma=bad)
    with pytest.raises(ll.InvalidParameterError, match=r"Teacher.params \(overlaps\) is not positive"):
        ll.tasks.teacher(arch, proc, sigma=S - 3 * np.eye(4))
    with pytest.raises(ll.InvalidParameterError, match=r"Teacher.params \(vectors\) must have shape"):
        ll.tasks.teacher(arch, proc, vectors=np.ones((10, 5)))
    with pytest.raises(ll.InvalidParameterError, match="Teacher.input_process .* n_in = 2"):
        ll.tasks.teacher(ll.Architecture(n_in=2, activation="erf"), proc, sigma=np.eye(5))
    with pytest.raises(ll.InvalidParameterError, match="Teacher.dt"):
        ll.tasks.teacher(arch, proc, sigma=S, dt=0.1)
    with pytest.raises(ll.InvalidParameterError, match="Teacher.input_process must be hashable"):
        ll.tasks.teacher(arch, _UnhashableProcess(), sigma=S, dt=0.05)
    with pytest.raises(ll.InvalidParameterError, match="exactly one"):
        ll.tasks.teacher(arch, proc)
    with pytest.raises(ll.InvalidParameterError, match="Teacher.arch"):
        ll.tasks.Teacher("erf", S, proc)


# ----------------------------------------------------------------------------- Batch checks
def test_batch_rejects_bad_values():
    ok = np.zeros((2, 5, 1))
    for field, args in [("inputs", (np.full((2, 5, 1), np.nan), ok)),
                        ("inputs", (np.full((2, 5, 1), np.inf), ok)),
                        ("targets", (ok, np.full((2, 5, 1), -np.inf))),
                        ("mask", (ok, ok, np.full((2, 5, 1), np.nan)))]:
        with pytest.raises(ll.InvalidParameterError, match=f"Batch.{field} has non-finite"):
            ll.Batch(*args)
    neg = np.ones((2, 5, 1))
    neg[1, 2] = -0.5
    with pytest.raises(ll.InvalidParameterError, match="Batch.mask must be non-negative"):
        ll.Batch(ok, ok, neg)
    with pytest.raises(ll.InvalidParameterError, match="Batch.mask is zero everywhere"):
        ll.Batch(ok, ok, np.zeros((2, 5, 1)), 0.1, "masked_mean")
    ll.Batch(ok, ok, np.zeros((2, 5, 1)), 0.1, "sum_time")  # nothing scored: loss 0, allowed
    # inside jit the arrays are tracers: no check (and no error)
    out = jax.jit(lambda x: ll.Batch(x, x, x * 0.0, 0.1, "masked_mean").inputs)(jnp.full((2, 5, 1), jnp.nan))
    assert np.all(np.isnan(np.asarray(out)))


def test_label_noise_validates():
    base = ll.tasks.exponential_filter()
    with pytest.raises(ll.InvalidParameterError, match="LabelNoise.std"):
        ll.tasks.with_label_noise(base, std=-0.1)
    with pytest.raises(ll.InvalidParameterError, match="LabelNoise.std"):
        ll.tasks.with_label_noise(base, std=float("nan"))
    with pytest.raises(ll.InvalidParameterError, match="LabelNoise.task"):
        ll.tasks.with_label_noise("flip_flop", std=0.1)


# ----------------------------------------------------------------------------- all samplers
@pytest.mark.parametrize("make", [
    lambda: ll.tasks.FlipFlop(n_trials=3, dt=0.05, T_max=10.0),
    lambda: ll.tasks.DecisionMaking(n_trials=3),
    lambda: ll.tasks.with_label_noise(ll.tasks.FlipFlop(n_trials=3, dt=0.05, T_max=10.0), 0.1),
    lambda: ll.tasks.teacher(ll.Architecture(activation="erf"),
                             ll.tasks.NoisyPulses(n_trials=3, dt=0.05, T_max=4.0), sigma=_teacher_sigma()),
], ids=["flip_flop", "decision_making", "label_noise", "teacher"])
def test_samplers_jit_and_reproducible(make):
    """Each sampler compiles the way the training loop compiles it (array leaves dynamic, the rest static)."""
    task = make()
    dynamic, static = _partition_task(task)
    hash(static)
    draw = jax.jit(_get_batch, static_argnums=0)
    key = jax.random.PRNGKey(11)
    b1 = draw(static, dynamic, key)
    b2 = draw(static, dynamic, key)
    b3 = draw(static, dynamic, jax.random.PRNGKey(12))
    for name in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(np.asarray(getattr(b1, name)), np.asarray(getattr(b2, name)))
    assert not np.array_equal(np.asarray(b1.inputs), np.asarray(b3.inputs))
    eager = task(key)  # eager call: same numbers (validated Batch)
    np.testing.assert_allclose(np.asarray(eager.inputs), np.asarray(b1.inputs), rtol=1e-12, atol=1e-14)
