"""E10 predictions: estimators against independent references (random walks with a known
diffusion coefficient, hand-computed savings, a plain loop of single runs, closed-form decoding)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_learning as ll

LIN = ll.Architecture(rank=1, activation="linear")
ERF = ll.Architecture(rank=1, activation="erf")


# --------------------------------------------------------------------------- diffusion
@pytest.mark.parametrize("D, d", [(0.01, 1), (0.25, 3), (2.0, 6)])
def test_diffusion_coefficient_recovers_a_random_walk(D, d):
    rng = np.random.default_rng(1)
    E, T, dt = 400, 200, 0.5
    steps = rng.normal(0.0, np.sqrt(2 * D * dt), (E, T - 1, d))
    x0 = rng.normal(size=(E, 1, d))  # the starting point must not matter
    paths = np.concatenate([x0, x0 + np.cumsum(steps, axis=1)], axis=1)
    times = 3.0 + dt * np.arange(T)  # nor the time origin
    est = ll.diffusion_coefficient(paths, times)
    assert abs(est["D"] - D) < 4 * est["se"]
    assert est["se"] < 0.1 * D
    # the MSD grows like 2 D t per coordinate
    assert est["msd"][0] == 0.0
    np.testing.assert_allclose(est["msd"][-1], D * (times[-1] - times[0]), rtol=0.15)


def test_diffusion_coefficient_of_a_straight_line_by_hand():
    # x(t) = v t in one coordinate: squared displacement v^2 t^2, LS slope through the origin
    # sum(t * v^2 t^2) / sum(t^2) = v^2 sum t^3 / sum t^2; D = slope / 2
    t = np.array([0.0, 1.0, 2.0])
    v = 3.0
    paths = (v * t)[None, :, None]
    est = ll.diffusion_coefficient(paths, t)
    assert est["D"] == pytest.approx(v ** 2 * (1 + 8) / (1 + 4) / 2)
    assert np.isnan(est["se"])  # one member


def test_overlap_drift_splits_visible_and_invisible():
    rng = np.random.default_rng(0)
    E, T = 200, 50
    base = ll.sigma_from_named(LIN, {"mm": 1, "uu": 1, "vv": 1, "zz": 1}, fill_identity=True)
    f0 = ll.flatten(LIN, base)
    vis = LIN.visible
    flat = np.broadcast_to(f0, (E, T, f0.size)).copy()
    # invisible coordinates random-walk with D = 1e-4, visible ones with D = 1e-6
    Dv = np.where(vis, 1e-6, 1e-4)
    flat += np.cumsum(rng.normal(size=(E, T, f0.size)) * np.sqrt(2 * Dv), axis=1)
    sigma = ll.unflatten(LIN, flat)
    out = ll.overlap_drift(LIN, sigma, np.arange(T, dtype=float))
    assert abs(out["visible"]["D"] - 1e-6) < 4 * out["visible"]["se"]
    assert abs(out["invisible"]["D"] - 1e-4) < 4 * out["invisible"]["se"]
    assert 70 < out["ratio"] < 140
    # a shared deterministic path (what noiseless learning does) is removed by the reference
    trend = np.linspace(0, 1, T)[None, :, None] * np.where(vis, 0.5, 0.0)
    ref = ll.unflatten(LIN, np.broadcast_to(f0, (E, T, f0.size)) + trend)
    moved = ll.unflatten(LIN, flat + trend)
    assert ll.overlap_drift(LIN, moved, np.arange(T, dtype=float))["visible"]["D"] > 100 * out["visible"]["D"]
    again = ll.overlap_drift(LIN, moved, np.arange(T, dtype=float), reference=ref)
    assert again["visible"]["D"] == pytest.approx(out["visible"]["D"], rel=1e-6)


@pytest.mark.parametrize("paths, times, match", [
    (np.zeros((3, 1, 2)), np.zeros(1), "paths must have shape"),
    (np.zeros((3, 4)), np.arange(4.0), "paths must have shape"),
    (np.zeros((3, 4, 2)), np.array([0.0, 1.0, 1.0, 2.0]), "times must be increasing"),
    (np.zeros((3, 4, 2)), np.arange(3.0), "times must be increasing"),
])
def test_diffusion_coefficient_rejects_bad_input(paths, times, match):
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.diffusion_coefficient(paths, times)


# --------------------------------------------------------------------------- savings
def test_savings_by_hand():
    first = np.array([[5, 4, 3, 2, 1, 0.5, 0.1, 0.05], [5, 4, 3, 2, 1, 1, 1, 1], [5, 0.1, 0, 0, 0, 0, 0, 0]])
    again = np.array([[1, 0.5, 0.1, 0, 0, 0, 0, 0], [0.1, 0, 0, 0, 0, 0, 0, 0], [9, 9, 9, 9, 9, 9, 9, 9]])
    s = ll.savings(first, again, level=0.1)
    np.testing.assert_array_equal(s["t_first"], [6, np.inf, 1])
    np.testing.assert_array_equal(s["t_again"], [2, 0, np.inf])
    assert s["savings"][0] == pytest.approx(1 - 2 / 6)
    assert np.isnan(s["savings"][1])           # the first visit never got there
    assert s["savings"][2] == -np.inf          # the return never got there
    with pytest.raises(ll.InvalidParameterError, match="level"):
        ll.savings(first, again, level=0.0)
    with pytest.raises(ll.InvalidParameterError, match="equal leading shapes"):
        ll.savings(first, again[:2], level=0.1)


def test_mean_se_refuses_what_it_would_drop():
    m, se = ll.mean_se([1.0, 2.0, 3.0])
    assert m == 2.0 and se == pytest.approx(1.0 / np.sqrt(3))
    with pytest.raises(ll.InvalidParameterError, match="2 of 5 values are not finite"):
        ll.mean_se([1.0, 2.0, 3.0, np.nan, np.inf])
    with pytest.raises(ll.InvalidParameterError, match="empty"):
        ll.mean_se([])


# --------------------------------------------------------------------------- degenerate ensembles
@pytest.mark.parametrize("arch", [LIN, ERF])
def test_degenerate_ensemble_keeps_the_visible_overlaps(arch):
    base = ll.random_overlaps(arch, 1, seed=3).sigma[0]
    ens = ll.degenerate_ensemble(arch, base, 30, seed=1)
    assert ens.sigma.shape == (30, 4, 4) and ens.invisible.shape == (30, len(arch.invisible_names))
    f = ll.flatten(arch, ens.sigma)
    np.testing.assert_allclose(f[:, arch.visible], np.broadcast_to(ll.flatten(arch, base)[arch.visible], (30, arch.visible.sum())),
                               atol=1e-14)
    np.testing.assert_array_equal(f[:, ~arch.visible], ens.invisible)
    assert np.all(np.linalg.eigvalsh(ens.sigma)[:, 0] > 1e-3)
    assert np.std(ens.invisible, axis=0).min() > 0.05  # they do differ
    # same behaviour: the same loss on any task, to rounding
    task = ll.tasks.exponential_filter(c=0.3, dt=0.1, T_max=5.0)
    losses = [float(ll.overlap_loss(arch, S, task)) for S in ens.sigma[:5]]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-12)
    # reproducible from the seed
    np.testing.assert_array_equal(ll.degenerate_ensemble(arch, base, 30, seed=1).sigma, ens.sigma)


def test_reset_invisible_puts_back_the_reference():
    S = ll.random_overlaps(LIN, 6, seed=2).sigma
    ref = ll.degenerate_ensemble(LIN, S[0], 6, seed=5).sigma
    ref[1::2] = 0.05 * S[1::2]  # tiny invisible norms: a full reset would not be a Gram matrix
    out, frac = ll.reset_invisible(LIN, S, ref)
    f, fs, fr = ll.flatten(LIN, out), ll.flatten(LIN, S), ll.flatten(LIN, ref)
    inv = ~LIN.visible
    for i in range(6):
        np.testing.assert_allclose(f[i, LIN.visible], fs[i, LIN.visible], atol=1e-15)  # visible kept
        # invisible on the segment from sigma's to the reference's, at the reported fraction
        np.testing.assert_allclose(f[i, inv], fs[i, inv] + frac[i] * (fr[i, inv] - fs[i, inv]), atol=1e-14)
        assert np.linalg.eigvalsh(out[i])[0] > -1e-10 * np.abs(out[i]).max()  # the package's PSD tolerance
        if frac[i] < 1:  # a little further would leave the PSD cone
            beyond = np.where(LIN.visible, fs[i], fs[i] + min(1.0, frac[i] + 1e-3) * (fr[i] - fs[i]))
            assert np.linalg.eigvalsh(ll.unflatten(LIN, beyond))[0] < 0
    assert (frac == 1).any() and (frac < 1).any()


# --------------------------------------------------------------------------- decoding
def test_decode_from_curves_reads_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    n = 120
    y = rng.normal(size=(n, 2))
    X = np.column_stack([y @ rng.normal(size=(2, 10)), rng.normal(size=(n, 5))])
    X[:, :10] += 0.1 * rng.normal(size=(n, 10))
    good = ll.decode_from_curves(X, y, n_permutations=20)
    assert good["r2"] > 0.95 and np.all(good["r2_per_target"] > 0.95)
    assert good["shuffled_mean"] < 0.05 and good["p_value"] < 0.06
    bad = ll.decode_from_curves(rng.normal(size=(n, 15)), y, n_permutations=20)
    assert bad["r2"] < 0.1
    with pytest.raises(ll.InvalidParameterError, match="share n"):
        ll.decode_from_curves(X, y[:-1])


def test_curve_features():
    # loss 10^(-e/10) at epoch e: the features are -e/10 at the sampled epochs, first and last included
    e = np.arange(100)
    f = ll.curve_features(10.0 ** (-e / 10)[None], n_points=20)
    assert f.shape[0] == 1 and 10 < f.shape[1] <= 20
    assert f[0, 0] == pytest.approx(0.0) and f[0, -1] == pytest.approx(-9.9)
    assert np.all(np.diff(f[0]) < 0)
    sampled = -10 * f[0]
    np.testing.assert_allclose(sampled, np.round(sampled))  # whole epochs
    assert np.all(np.diff(np.log(sampled[1:] + 1)) > 0.05)  # spread evenly on a log axis, not clumped


# --------------------------------------------------------------------------- experiments
@pytest.mark.slow
def test_probe_curves_equal_single_runs():
    base = ll.random_overlaps(LIN, 1, seed=0).sigma[0]
    ens = ll.degenerate_ensemble(LIN, base, 3, seed=0)
    task = ll.tasks.exponential_filter(c=0.3, dt=0.1, T_max=5.0)
    other = ll.tasks.damped_oscillation(c=0.5, omega=1.0, dt=0.1, T_max=5.0)
    curves = ll.probe_curves(LIN, ens.sigma, {"exp": task, "osc": other}, lr=0.02, epochs=30)
    for i in range(3):
        for name, t in (("exp", task), ("osc", other)):
            single = ll.learn_overlaps(LIN, ens.sigma[i], t, lr=0.02, epochs=30, progress=False)
            np.testing.assert_allclose(curves[name][i], single.loss, rtol=1e-10)
    assert curves["exp"][:, 0] == pytest.approx(curves["exp"][0, 0])  # same behaviour at the start
    assert np.ptp(curves["exp"][:, -1]) > 0                             # different learning


@pytest.mark.slow
def test_savings_experiment_against_a_loop_of_single_runs():
    S0 = ll.random_overlaps(ERF, 3, seed=1).sigma
    A = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=5.0)
    B = ll.tasks.exponential_filter(c=0.6, dt=0.1, T_max=5.0)
    out = ll.savings_experiment(ERF, S0, A, B, lr=0.05, epochs_a=40, epochs_b=20, level=0.05)
    for i in range(3):
        a1 = ll.learn_overlaps(ERF, S0[i], A, lr=0.05, epochs=40, progress=False)
        b = ll.learn_overlaps(ERF, a1.final_sigma, B, lr=0.05, epochs=20, progress=False)
        a2 = ll.learn_overlaps(ERF, b.final_sigma, A, lr=0.05, epochs=40, progress=False)
        np.testing.assert_allclose(out["loss_first"][i], a1.loss, rtol=1e-10)
        np.testing.assert_allclose(out["loss_again"][i], a2.loss, rtol=1e-10)
        t1, t2 = ll.epochs_to_reach(a1.loss, 0.05), ll.epochs_to_reach(a2.loss, 0.05)
        if t1 is not None and t2 is not None:
            assert out["savings"][i] == pytest.approx(1 - t2 / max(t1, 1))
        f = out["control_fraction"][i]
        a, r = ll.flatten(ERF, b.final_sigma)[~ERF.visible], ll.flatten(ERF, S0[i])[~ERF.visible]
        ctrl = ll.equivalent_overlaps(ERF, b.final_sigma, dict(zip(ERF.invisible_names, a + f * (r - a))))
        c = ll.learn_overlaps(ERF, ctrl, A, lr=0.05, epochs=40, progress=False)
        np.testing.assert_allclose(out["loss_control"][i], c.loss, rtol=1e-10)
        assert c.loss[0] == pytest.approx(a2.loss[0], rel=1e-10)  # same behaviour when relearning starts
        kept = ll.invisible_distance(ERF, a1.final_sigma, b.final_sigma) / ll.invisible_distance(ERF, a1.final_sigma, S0[i])
        assert out["kept"][i] == pytest.approx(kept)


@pytest.mark.slow
def test_drift_overlaps_shapes_and_noiseless_limit():
    S0 = ll.random_overlaps(LIN, 2, seed=4).sigma
    task = ll.tasks.exponential_filter(c=0.3, dt=0.1, T_max=5.0)
    out = ll.drift_overlaps(LIN, S0, task, [0.0, 0.1], lr=0.02, epochs_settle=50, epochs=20, record_every=5)
    assert out["sigma"].shape == (2, 2, 4, 4, 4) and out["loss"].shape == (2, 2, 20)
    np.testing.assert_array_equal(out["times"], [0, 5, 10, 15])
    # without noise, the noisy-phase loss is the clean loss of the recorded states
    np.testing.assert_allclose(out["clean_loss"][0], out["loss"][0][:, ::5], rtol=1e-10)
    with pytest.raises(ll.InvalidParameterError, match="fixed Batch"):
        ll.drift_overlaps(LIN, S0, ll.tasks.with_label_noise(task, 0.1), [0.1], 0.02, 5, 5)
