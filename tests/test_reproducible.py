"""Same seed, bitwise the same trajectory; and the tasks' own invariants."""

import jax
import numpy as np

import lowrank_learning as ll


def test_same_seed_bitwise_identical():
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=3, dt=0.1, T_max=8.0, wait_min=1.0, wait_max=2.0, mask_after=0.5)
    X0 = ll.sample_vectors(arch, 40, seed=1)
    runs = [ll.learn_vectors(arch, X0, task, lr=5e-2, epochs=6, seed=3, progress=False) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].loss, runs[1].loss)
    np.testing.assert_array_equal(runs[0].sigma, runs[1].sigma)
    np.testing.assert_array_equal(runs[0].final_vectors, runs[1].final_vectors)
    ov = [ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=5e-2, epochs=6, seed=3, progress=False)
          for _ in range(2)]
    np.testing.assert_array_equal(ov[0].sigma, ov[1].sigma)
    adam = [ll.learn_vectors(arch, X0, task, lr=1e-2, epochs=4, optimizer="adam", seed=3, progress=False)
            for _ in range(2)]
    np.testing.assert_array_equal(adam[0].final_vectors, adam[1].final_vectors)


def test_flip_flop_trials():
    ff = ll.tasks.flip_flop(n_trials=64)
    b = ff(jax.random.PRNGKey(0))
    x, y, m = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    assert x.shape == (64, 800)
    t = b.times
    first = np.argmax(np.abs(x) > 0, axis=1)
    np.testing.assert_allclose(t[first], 0.5)  # first pulse at 0.5 s
    assert np.all(m[:, t < 0.5] == 0)  # masked before the first pulse
    # pulses last 0.5 s = 20 steps
    on = np.abs(x[0]) > 0
    starts = np.flatnonzero(np.diff(on.astype(int)) == 1) + 1
    ends = np.flatnonzero(np.diff(on.astype(int)) == -1) + 1
    n = min(len(starts), len(ends))
    assert starts[0] == first[0] and n >= 2
    assert np.all(ends[:n] - starts[:n] == 20)
    # the target is 0.5 times the sign of the last pulse wherever scored
    sign = np.zeros_like(x)
    for b_ in range(64):
        cur = 0.0
        for k in range(x.shape[1]):
            if x[b_, k] != 0:
                cur = np.sign(x[b_, k])
            sign[b_, k] = cur
    np.testing.assert_allclose(y, 0.5 * sign)
    # 2 s after each pulse ends is masked, then scored
    k_end = ends[0]
    assert np.all(m[0, k_end : k_end + 79] == 0) and m[0, k_end + 80] == 1
    assert ff(jax.random.PRNGKey(0)).inputs.tolist() == b.inputs.tolist()


def test_decision_making_trials():
    """Periods, mask and input statistics of the decision-making trials against their spec.

    Tolerances are the sampling spread of n Gaussian samples of std sigma = 0.05 at 4 standard
    errors (two-sided 6e-5 each): the sample mean is within 4 sigma / sqrt(n), the sample std
    within 4 sigma / sqrt(2 (n - 1)) (its standard error for Gaussian samples), and each trial's
    stimulus mean within 4.5 sigma / sqrt(n_stim) (32 trials: 32 x 7e-6 = 2e-4 in all)."""
    dm = ll.tasks.decision_making(n_trials=32)
    b = dm(jax.random.PRNGKey(1))
    x, y, m = (np.asarray(a)[..., 0] for a in (b.inputs, b.targets, b.mask))
    k = np.arange(dm.n_steps)
    mid = (k + 0.5) * dm.dt  # a step belongs to the period holding its midpoint
    fix, stim, resp = mid < 1.0, (mid >= 1.0) & (mid < 10.0), mid >= 11.0
    assert (fix.sum(), stim.sum(), resp.sum()) == (20, 180, 180)
    assert np.all(m[:, ~resp] == 0) and np.all(m[:, resp] == 1)
    coh = y[:, -1] * 16
    assert set(np.round(coh).astype(int)) <= {-16, -8, -2, 2, 8, 16}
    np.testing.assert_allclose(y[:, resp], np.broadcast_to(coh[:, None] / 16, y[:, resp].shape), rtol=1e-15)
    assert np.all(y[:, ~resp] == 0)
    # fixation: input noise of std 0.05 only (n = 32 x 20 = 640 samples)
    f = x[:, fix]
    n, sigma = f.size, 0.05
    assert abs(f.mean()) < 4 * sigma / np.sqrt(n), f.mean()
    assert abs(f.std(ddof=1) - sigma) < 4 * sigma / np.sqrt(2 * (n - 1)), f.std(ddof=1)
    # stimulus: mean c / 100 x 3.2 per trial, plus the same noise
    n_stim = int(stim.sum())
    np.testing.assert_allclose(x[:, stim].mean(axis=1), coh / 100 * 3.2, rtol=0,
                               atol=4.5 * sigma / np.sqrt(n_stim))
