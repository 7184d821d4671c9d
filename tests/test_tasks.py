"""Task samplers: flip-flop timing, pulse inputs, decision making, teacher targets, Batch checks.

Each sampler is checked against plain-numpy references written here (loops over trials and
steps), never against its own code: flip-flop targets and masks are rebuilt from the pulses read
off the inputs, the pulse timing is checked against its stated distribution, and teacher
targets are the network of book/theory.md (eq-network, eq-readout) and its reduced model
(eq-reduced) run as numpy loops.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import lowrank_learning as ll
from lowrank_learning.learn._loop import _get_batch, _partition_task

EPS = np.finfo(np.float64).eps


def _pulses_from_inputs(x, n_pulse):
    """Onset steps and signs of the pulses of one trial, read off its input ``x`` (T,) by a loop.

    A pulse is a run of ``n_pulse`` equal non-zero steps; a longer run of one sign is several
    pulses back to back (a zero wait), and a run cut by the end of the trial is one last pulse."""
    starts, signs, k, T = [], [], 0, len(x)
    while k < T:
        if x[k] == 0:
            k += 1
            continue
        end = k
        while end < T and x[end] == x[k]:
            end += 1
        for s in range(k, end, n_pulse):
            starts.append(s)
            signs.append(float(np.sign(x[k])))
        k = end
    return starts, signs


def _reference_trial(starts, signs, T, n_pulse, n_blank, amp, target_amp):
    """One flip-flop trial by plain loops from its pulse onset steps (the spec of FlipFlop): input
    ``amp * sign`` for ``n_pulse`` steps from each onset; target ``target_amp`` times the sign of
    the last pulse started (0 before the first); mask 0 before the first onset and from one step
    before each onset for ``n_blank + 1`` steps, 1 elsewhere."""
    x, y, m = np.zeros(T), np.zeros(T), np.ones(T)
    m[: starts[0] if starts else T] = 0.0
    for k0, sign in zip(starts, signs):
        for k in range(k0, min(k0 + n_pulse, T)):
            x[k] = amp * sign
        for k in range(k0, T):
            y[k] = target_amp * sign
        for k in range(max(k0 - 1, 0), min(k0 + n_blank, T)):
            m[k] = 0.0
    return x, y, m


def _check_against_reference(ff, key, n_trials):
    """Rebuild every trial of ``ff(key)`` from the pulses in its inputs and compare exactly.

    ``pulse_times`` (the sampler's continuous onsets) is checked, not used: each pulse seen in
    the inputs starts at its onset rounded to the nearest step, and no onset rounds into the
    trial unseen. The one thing the inputs cannot show is a pulse starting just after the trial
    (onset step T): its unscored step before the onset is step T - 1, which the check takes from
    ``pulse_times``."""
    b = jax.jit(ff)(key)
    T, dt = ff.n_steps, ff.dt
    assert b.inputs.shape == b.targets.shape == b.mask.shape == (n_trials, T, 1)
    assert b.loss == "masked_mean" and b.dt == dt
    # durations in these tests are whole numbers of steps, so a pulse lasts n_pulse steps and the
    # unscored period ends n_blank steps after the onset whatever the rounding of the onset
    n_pulse = round(ff.pulse_duration / dt)
    n_blank = round((ff.pulse_duration + ff.mask_after) / dt)
    assert abs(n_pulse * dt - ff.pulse_duration) < 1e-9
    assert abs(n_blank * dt - ff.pulse_duration - ff.mask_after) < 1e-9
    xs, ys, ms = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    onsets, psigns = (np.asarray(a) for a in ff.pulse_times(key))
    for i in range(n_trials):
        starts, signs = _pulses_from_inputs(xs[i] / ff.input_amplitude, n_pulse)
        assert set(np.abs(xs[i][xs[i] != 0])) <= {ff.input_amplitude}
        x, y, m = _reference_trial(starts, signs, T, n_pulse, n_blank, ff.input_amplitude, ff.target_amplitude)
        steps = onsets[i] / dt  # continuous onsets in steps; rounding to the nearest step
        inside = steps < T - 0.5
        assert len(starts) == int(np.sum(inside))
        assert np.all(np.abs(np.array(starts) - steps[inside]) <= 0.5 + 1e-9)
        np.testing.assert_array_equal(signs, psigns[i][inside])
        if np.any(np.abs(steps - T) <= 0.5 + 1e-9):  # a pulse at step T: step T - 1 unscored
            m[T - 1] = 0.0
        np.testing.assert_array_equal(xs[i], x)
        np.testing.assert_array_equal(ys[i], y)
        np.testing.assert_array_equal(ms[i], m)


@pytest.mark.parametrize("kw", [
    {},  # E6 defaults
    dict(dt=0.05, wait_min=1.0, wait_max=2.0, input_amplitude=2.0, target_amplitude=1.0),  # E8
])
def test_flip_flop_matches_reference(kw):
    _check_against_reference(ll.tasks.FlipFlop(n_trials=16, **kw), jax.random.PRNGKey(3), 16)


# each example compiles the sampler for its own timing (~2.5 s of CPU): 4 examples by default,
# more under the nightly random profile
@settings(max_examples=4, deadline=None)
@given(dt=st.sampled_from([0.025, 0.05, 0.1]), pulse_duration=st.sampled_from([0.2, 0.5, 1.0]),
       mask_after=st.sampled_from([0.0, 0.5, 2.0]), wait_min=st.floats(0.0, 3.0),
       wait_span=st.floats(0.05, 5.0), seed=st.integers(0, 2**16))
def test_flip_flop_matches_reference_any_timing(dt, pulse_duration, mask_after, wait_min, wait_span, seed):
    """The pulse generator against the plain loops, over timings: short and long pulses, no
    unscored period, waits from 0 s (pulses back to back)."""
    ff = ll.tasks.FlipFlop(n_trials=6, dt=dt, T_max=12.0, pulse_duration=pulse_duration, mask_after=mask_after,
                           wait_min=wait_min, wait_max=wait_min + wait_span, input_amplitude=1.5,
                           target_amplitude=0.5)
    _check_against_reference(ff, jax.random.PRNGKey(seed), 6)


def test_flip_flop_timing_has_the_stated_distribution():
    """Onsets read off the inputs of 1000 trials against the stated law: first pulse at 0.5 s,
    consecutive onsets pulse + unscored period + U(wait_min, wait_max) apart, signs +-1 with
    probability 1/2, pulses until the end of the trial.

    Only the first 4 gaps of each trial are used: 0.5 + 4 x 4.5 s < T_max = 20 s, so they are
    seen whatever the waits are (later gaps are seen only if the earlier ones were short, a
    length bias). The waits are read to within one step: an onset rounded to the nearest step
    is off by at most dt/2, a gap by at most dt, so the empirical CDF of the read waits is
    within dt / (wait_max - wait_min) of the one of the true waits, which a Kolmogorov-Smirnov
    test at level 1e-3 bounds by 1.95 / sqrt(n) (n = 4000). Signs: exact binomial test, 1e-3."""
    ff = ll.tasks.FlipFlop(n_trials=1000, dt=0.01, T_max=20.0, wait_min=1.0, wait_max=2.0,
                           pulse_duration=0.5, mask_after=2.0)
    x = np.asarray(jax.jit(ff)(jax.random.PRNGKey(0)).inputs[..., 0])
    n_pulse = 50
    waits, signs = [], []
    max_gap = int(round((0.5 + 2.0 + 2.0) / 0.01))
    for i in range(1000):
        starts, s = _pulses_from_inputs(x[i], n_pulse)
        assert starts[0] == 50  # first pulse at 0.5 s
        gaps = np.diff(starts)
        assert np.all(gaps >= 350 - 1) and np.all(gaps <= max_gap + 1)
        assert ff.n_steps - starts[-1] <= max_gap + 1  # no gap longer than the longest wait at the end
        waits.extend(gaps[:4] * 0.01 - 2.5)
        signs.extend(s)
    waits = np.asarray(waits)
    assert waits.size == 4000
    D = stats.kstest(waits, stats.uniform(loc=1.0, scale=1.0).cdf).statistic
    assert D < stats.kstwo.ppf(1 - 1e-3, waits.size) + 0.01 / 1.0, D
    n_plus = int(np.sum(np.asarray(signs) > 0))
    assert stats.binomtest(n_plus, len(signs), 0.5).pvalue > 1e-3, (n_plus, len(signs))


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


def _phi_erf(x):
    return special.erf(np.sqrt(np.pi) * x / 2)


def _network_loop(X, inputs, dt):
    """eq-network and eq-readout (book/theory.md, section 1) for rank 1, erf units, by loops over
    trials and steps: h_{t+1} = h_t + dt (-h_t + u (v . phi(h_t)) / N + m x_t), y_t = z . phi(h_{t+1}) / N."""
    N = X.shape[0]
    m, u, v, z = X.T
    B, T, _ = inputs.shape
    y = np.zeros((B, T, 1))
    for b in range(B):
        h = np.zeros(N)
        for t in range(T):
            h = h + dt * (-h + u * (v @ _phi_erf(h)) / N + m * inputs[b, t, 0])
            y[b, t, 0] = z @ _phi_erf(h) / N
    return y


def _reduced_loop(S, inputs, dt):
    """eq-latent, eq-delta, eq-gain (erf closed form) and eq-reduced (book/theory.md, section 3)
    for rank 1, by loops over trials and steps. ``S`` is the named overlaps."""
    gain = lambda d: 1.0 / np.sqrt(1.0 + np.pi * d / 2)
    delta = lambda k, l: S["mm"] * k * k + 2 * S["mu"] * k * l + S["uu"] * l * l
    B, T, _ = inputs.shape
    y = np.zeros((B, T, 1))
    for b in range(B):
        k = lam = 0.0
        for t in range(T):
            k_new = k + dt * (-k + inputs[b, t, 0])
            lam_new = lam + dt * (-lam + (S["vm"] * k + S["vu"] * lam) * gain(delta(k, lam)))
            k, lam = k_new, lam_new
            y[b, t, 0] = (S["zm"] * k + S["zu"] * lam) * gain(delta(k, lam))
    return y


def test_teacher_targets_equal_plain_loop_simulations():
    """Overlap teacher = the reduced model, vector teacher = the network, each run here as a numpy loop.

    Tolerance: both sides compute the same float64 recursion in a different order. Each step
    adds at most the round-off of a length-N dot product (N u, u = 2.2e-16, Higham's bound) and
    a few ulps of erf, relative to the size of the terms; the recursion amplifies earlier errors
    at most by (1 + dt max(0, sigma_vu - 1))^T < 2. Over T = 100 steps that is at most
    2 T (N + 10) u = 2.6e-12 relative for N = 50.
    The check allows 1e-10 of max |y|."""
    arch = ll.Architecture(activation="erf")
    proc = ll.tasks.NoisyPulses(n_trials=4, dt=0.05, T_max=5.0, wait_min=1.0, wait_max=2.0)
    sigma = _teacher_sigma()
    key = jax.random.PRNGKey(7)
    inputs = np.asarray(proc(key))
    b = ll.tasks.teacher(arch, proc, sigma=sigma)(key)
    assert b.loss == "sum_time" and b.dt == 0.05 and b.targets.shape == (4, 100, 1)
    np.testing.assert_array_equal(np.asarray(b.inputs), inputs)
    np.testing.assert_array_equal(np.asarray(b.mask), 1.0)
    y_ref = _reduced_loop(_S_ERF, inputs, 0.05)
    tol = 1e-10 * np.max(np.abs(y_ref))
    np.testing.assert_allclose(np.asarray(b.targets), y_ref, rtol=0, atol=tol)
    X = ll.sample_vectors(arch, 50, seed=0, sigma=sigma)
    bv = ll.tasks.teacher(arch, proc, vectors=X)(key)
    y_net = _network_loop(X, inputs, 0.05)
    np.testing.assert_allclose(np.asarray(bv.targets), y_net, rtol=0, atol=1e-10 * np.max(np.abs(y_net)))
    # the two teachers differ: at N = 50 the network is not its large-N limit
    assert np.max(np.abs(y_net - y_ref)) > 1e3 * tol


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
