"""Twins (E8) and the conservation-law violation behind nonlinear memory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll


@settings(max_examples=8, deadline=None)
@given(rank=st.integers(1, 2), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       act=st.sampled_from(["linear", "erf", "tanh"]), seed=st.integers(0, 2**16))
def test_conservation_violation_matches_parameter_space(rank, n_in, n_out, act, seed):
    """The overlap formula equals ||C(X') - C(X)||_F / (N eta) for X' = X (I - eta S), built in
    N dimensions (C = A A^T - B B^T), to O(eta); zero for linear units."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    N = 50
    X = ll.sample_vectors(arch, N, seed=seed)
    batch = ll.Batch(rng.standard_normal((2, 20, n_in)), rng.standard_normal((2, 20, n_out)), dt=0.1)
    G = np.asarray(ll.overlap_value_and_grad(arch, ll.overlaps(X), batch)[1])
    S = G + G.T
    eta = 1e-7
    Xn = X @ (np.eye(arch.K) - eta * S)
    Amask = np.array([g in ("V", "Z") for g in arch.vector_group])

    def C(Y):
        return Y[:, Amask] @ Y[:, Amask].T - Y[:, ~Amask] @ Y[:, ~Amask].T

    ref = np.linalg.norm(C(Xn) - C(X)) / (N * eta)
    got = ll.conservation_violation(arch, ll.overlaps(X), G)
    scale = np.linalg.norm(S) * np.linalg.norm(ll.overlaps(X)) + 1e-300
    assert abs(got - ref) <= 1e-5 * scale
    if act == "linear":
        assert got == 0.0


def test_twin_gaps_and_decoding():
    rng = np.random.default_rng(0)
    n = 6
    base = ll.random_overlaps(ll.twins.ARCH, n, seed=1).sigma
    other = base.copy()
    # twin 2 differs from twin 1 only in zz, by +3: an invisible gap, no visible one
    i, j = ll.twins.ARCH.overlap_pair("zz")
    other[:, i, j] += 3.0
    S = np.concatenate([base, other])
    g = ll.twins.twin_gaps(S)
    np.testing.assert_allclose(g[:, ll.twins.ARCH.overlap_index("zz")], -3.0)
    norms = ll.twins.gap_norms(S)
    np.testing.assert_allclose(norms["invisible"], 3.0)
    np.testing.assert_allclose(norms["visible"], 0.0)
    dec = ll.twins.decode_history({"t": S}, n_splits=10)
    assert dec[("invisible", "t")].mean == 1.0
    # The twins' visible overlaps are identical, so a decoder gives both twins of a held-out pair
    # the same class: exactly one of the two is right, whatever it learned. The binomial spread of
    # the accuracy over the test trials is zero: every split scores exactly 1/2.
    np.testing.assert_array_equal(dec[("visible", "t")].accuracies, 0.5)
    with pytest.raises(ll.InvalidParameterError, match="2n, 4, 4"):
        ll.twins.twin_gaps(S[:5])
    del rng


def test_teacher_sigma_is_valid_and_has_the_e8_visible_overlaps():
    S = ll.twins.teacher_sigma()
    named = ll.named(ll.twins.ARCH, S)
    for k, v in ll.twins.TEACHER_VISIBLE.items():
        assert named[k] == v
    assert np.linalg.eigvalsh(S)[0] > 0


def test_run_twins_small():
    r = ll.twins.run_twins(n_pairs=3, epochs_phase1=6, epochs_phase2=4, n_trials=4, record_every=2, seed=5,
                           progress=False)
    np.testing.assert_array_equal(r["start"], ll.random_overlaps(ll.twins.ARCH, 3, seed=5).sigma)
    assert r["p1_loss"].shape == (6, 6) and r["p2_loss"].shape == (6, 4) and r["p1_drops"].shape == (6,)
    assert r["p1_sigma"].dtype == np.float32  # the float32 cast (x64 is on in the tests)
    start32 = r["start"].astype(np.float32)
    np.testing.assert_array_equal(r["p1_sigma"][:, 0], np.concatenate([start32, start32]))  # twins start equal
    # float32 throughout, whatever the x64 mode (x64 is on here): equal to a run with it off
    import jax
    with jax.enable_x64(False):
        r_off = ll.twins.run_twins(n_pairs=3, epochs_phase1=6, epochs_phase2=4, n_trials=4, record_every=2, seed=5,
                                   progress=False)
    for k in ("p1_loss", "p1_final", "p2_loss", "p2_final"):
        np.testing.assert_array_equal(r[k], r_off[k])


@pytest.mark.slow
def test_run_twins_members_equal_single_runs():
    """Values, not shapes: the starts are random_overlaps(seed); member i < n learns flip-flop and
    member n + i decision making from the same start, then both the teacher; each member equals a
    single learn_overlaps run with its task and seeds (phase 1: seed, phase 2: seed + 1) from the
    start cast to float32; float32=False runs in float64 from the same start."""
    n, E1, E2, seed = 2, 6, 4, 5
    kw = {"n_pairs": n, "epochs_phase1": E1, "epochs_phase2": E2, "n_trials": 4, "record_every": 2, "seed": seed,
          "progress": False}
    r = ll.twins.run_twins(**kw)
    r64 = ll.twins.run_twins(**kw, float32=False)
    arch = ll.twins.ARCH
    np.testing.assert_array_equal(r["start"], ll.random_overlaps(arch, n, seed=seed).sigma)
    assert r["p1_loss"].shape == (2 * n, E1) and r["p2_loss"].shape == (2 * n, E2) and r["p1_drops"].shape == (2 * n,)
    assert r["p1_sigma"].dtype == np.float32 and r64["p1_sigma"].dtype == np.float64
    start32 = r["start"].astype(np.float32)
    np.testing.assert_array_equal(r["p1_sigma"][:, 0], np.concatenate([start32, start32]))  # twins start equal
    sched = ll.DropBelow(0.01, 0.015, 5.0)
    checks = [(r, member, start32[member % n], 1e-5) for member in range(2 * n)]
    checks += [(r64, member, r["start"][0], 1e-12) for member in (0, n)]
    import contextlib

    import jax
    # a task keeps what it computed (e.g. the teacher's targets): one set of tasks per precision
    tasks = {id(r): ll.twins.twin_tasks(4), id(r64): ll.twins.twin_tasks(4)}
    for res, member, S0, tol in checks:
        ff, dm, tch = tasks[id(res)]
        task = ff if member < n else dm
        # float32 runs are float32 throughout (x64 off); the same computation batched or alone is
        # equal up to the float's rounding over a few epochs
        with jax.enable_x64(False) if res is r else contextlib.nullcontext():
            one = ll.learn_overlaps(arch, S0, task, sched, E1, seed=seed, progress=False)
            two = ll.learn_overlaps(arch, res["p1_final"][member], tch, 1e-3, E2, seed=seed + 1, progress=False)
        np.testing.assert_allclose(res["p1_loss"][member], one.loss, rtol=tol)
        np.testing.assert_allclose(res["p1_final"][member], one.final_sigma, rtol=tol, atol=tol)
        np.testing.assert_allclose(res["p2_loss"][member], two.loss, rtol=tol)
    ff, dm, _ = ll.twins.twin_tasks(4)
    for member, other in ((0, dm), (n, ff)):  # the task assignment matters
        wrong = ll.learn_overlaps(arch, start32[0], other, sched, E1, seed=seed, progress=False)
        assert not np.allclose(r["p1_loss"][member], wrong.loss, rtol=1e-3)
    # the float32 cast is real: the two precisions give different numbers (not only by rounding:
    # float32 mode also draws the trials' noise in float32, so the two runs see different trials;
    # each was checked above against its own single-network reference)
    assert not np.array_equal(r["p2_final"], r64["p2_final"])
    assert np.all(np.isfinite(r["p2_final"])) and np.all(np.isfinite(r64["p2_final"]))


def test_balance_is_conserved_by_gradient_flow_for_erf():
    """sigma_UU - sigma_VV (GL(R) charge) stays put under RK4 gradient flow with erf units while
    sigma_UU itself moves; the exact discrete map moves it only at second order in eta."""
    arch = ll.Architecture(rank=2, activation="erf")
    S0 = ll.overlaps(ll.sample_vectors(arch, 400, seed=3))
    task = ll.tasks.damped_oscillation(dt=0.1, T_max=6.0)
    flow = ll.learn_overlaps(arch, S0, task, 0.02, 40, rule="flow", substeps=4, progress=False)
    iu = [arch.vector_index("u1"), arch.vector_index("u2")]
    moved = np.max(np.abs(flow.final_sigma[np.ix_(iu, iu)] - S0[np.ix_(iu, iu)]))
    kept = np.max(np.abs(ll.balance(arch, flow.final_sigma) - ll.balance(arch, S0)))
    assert moved > 1e-3 and kept < 1e-6 * moved
    exact = [np.max(np.abs(ll.balance(arch, ll.learn_overlaps(arch, S0, task, eta, 10, progress=False).final_sigma)
                           - ll.balance(arch, S0))) for eta in (0.02, 0.01)]
    assert 3.0 < exact[0] / exact[1] < 5.0  # O(eta^2) per step


def test_violation_history_along_a_schedule():
    arch = ll.Architecture(activation="erf")
    A = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=5.0)
    B = ll.tasks.exponential_filter(c=0.4, dt=0.1, T_max=5.0)
    S0 = ll.overlaps(ll.sample_vectors(arch, 300, seed=0))
    run = ll.run_schedule(arch, S0, [ll.Phase(A, 0.05, 12, label="A"), ll.Phase(B, 0.05, 8, label="B")],
                          space="overlaps", progress=False)
    idx, rate = ll.violation_history(arch, run, every=3)
    np.testing.assert_array_equal(idx, np.arange(0, 20, 3))
    for i, e in enumerate(idx):  # independent reference: the XLA adjoint, one state at a time
        task = A if e < 12 else B
        G = ll.overlap_value_and_grad(arch, run.trajectory.sigma[e], task, kernel="xla")[1]
        assert abs(rate[i] - ll.conservation_violation(arch, run.trajectory.sigma[e], G)) <= 1e-10 * (1 + rate[i])
    assert np.all(rate > 0)
    lin = ll.Architecture()
    run_lin = ll.run_schedule(lin, ll.overlaps(ll.sample_vectors(lin, 300, seed=0)), [ll.Phase(A, 0.05, 5)],
                              space="overlaps", progress=False)
    assert np.all(ll.violation_history(lin, run_lin)[1] == 0.0)
    ff = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=3.0, first_pulse=0.2, wait_min=0.3, wait_max=0.6)
    run_ff = ll.run_schedule(arch, S0, [ll.Phase(ff, 0.05, 3, label="ff")], space="overlaps", progress=False)
    with pytest.raises(ll.InvalidParameterError, match="sampler"):
        ll.violation_history(arch, run_ff)
    with pytest.raises(ll.InvalidParameterError, match="every"):
        ll.violation_history(arch, run, every=0)


def test_confirm_pair_equals_direct_runs():
    """confirm_pair runs the two twins in two threads: each equals learn_vectors / learn_overlaps
    called here directly, one after the other."""
    start = ll.random_overlaps(ll.twins.ARCH, 1, seed=3).sigma[0]
    conf = ll.twins.confirm_pair(start, N=40, epochs_phase1=3, epochs_phase2=2, n_trials=4, seed=2)
    ff, dm, tch = ll.twins.twin_tasks(4)
    X0 = ll.sample_vectors(ll.twins.ARCH, 40, seed=0, sigma=start, exact=True)
    sched = ll.DropBelow(0.01, 0.015, 5.0)
    for twin, task in (("twin1", ff), ("twin2", dm)):
        f1 = ll.learn_vectors(ll.twins.ARCH, X0, task, sched, 3, seed=2, progress=False)
        f2 = ll.learn_vectors(ll.twins.ARCH, f1.final_vectors, tch, 1e-3, 2, seed=3, progress=False)
        t1 = ll.learn_overlaps(ll.twins.ARCH, start, task, sched, 3, seed=2, progress=False)
        t2 = ll.learn_overlaps(ll.twins.ARCH, t1.final_sigma, tch, 1e-3, 2, seed=3, progress=False)
        assert conf[f"{twin}_full_sigma"].shape == (6, 4, 4)
        np.testing.assert_array_equal(conf[f"{twin}_full_sigma"], np.concatenate([f1.sigma, f2.sigma_all]))
        np.testing.assert_array_equal(conf[f"{twin}_full_loss"], np.concatenate([f1.loss, f2.loss]))
        np.testing.assert_array_equal(conf[f"{twin}_theory_sigma"], np.concatenate([t1.sigma, t2.sigma_all]))
        np.testing.assert_array_equal(conf[f"{twin}_theory_loss"], np.concatenate([t1.loss, t2.loss]))


# --------------------------------------------------------------------------- decoding verdicts
def _twin_states(seed, n=10, inv_shift=0.0, vis_shift=0.0):
    """Twins whose overlaps are independent random draws (no history) plus a planted difference:
    twin 2's zz (invisible) up by ``inv_shift``, its mm (visible) up by ``vis_shift``."""
    arch = ll.twins.ARCH
    S = ll.random_overlaps(arch, 2 * n, seed=seed).sigma
    for o, shift in (("zz", inv_shift), ("mm", vis_shift)):
        i, _ = arch.overlap_pair(o)
        S[n:, i, i] += shift
    return {"after phase 2": S}


def test_memory_verdict_on_null_twins_does_not_hold():
    """No history in the overlaps: neither part's test should reject. Each part rejects with
    probability <= 5% (exact permutation test; sign test over pairs), so "holds" or "holds in
    part" has probability <= 10% (union bound) and ``does not hold`` >= 90%; over 200 seeds the
    count of other verdicts is at most Binomial(200, 0.1) (mean 20, P(X >= 31) = 0.01) if the
    levels are right. We require >= 160 (P(X >= 41) < 1e-5 under the bound). Fast: one feature
    per kind, 3 splits of 4 held-out pairs."""
    names = {"visible": ("mm",), "invisible": ("zz",)}
    words, parts = [], []
    for seed in range(200):
        tests = ll.twins.decode_history_tests(_twin_states(seed), n_splits=3, n_test_groups=4, seed=seed, names=names)
        v = ll.twins.memory_verdict(tests)
        words.append(v.verdict)
        parts.append(v.parts["invisible decode"].verdict)
    assert words.count("holds") <= 20, words.count("holds")
    assert words.count("does not hold") >= 160, words.count("does not hold")
    assert parts.count("does not hold") >= 180  # the permutation test alone: <= 5% (see test_decoding)


def test_memory_verdict_planted_signal():
    """History planted only in the invisible zz: holds; planted in both kinds equally: the
    invisible overlaps decode but not better than the visible ones, so "holds in part"."""
    tests = ll.twins.decode_history_tests(_twin_states(1, inv_shift=3.0))
    v = ll.twins.memory_verdict(tests)
    assert v.verdict == "holds", v
    assert set(v.parts) == {"invisible decode", "invisible better than visible"}
    assert "visible overlaps alone: does not hold" in v.note
    both = ll.twins.memory_verdict(ll.twins.decode_history_tests(_twin_states(1, inv_shift=3.0, vis_shift=3.0)))
    assert both.verdict == "holds in part" and both.parts["invisible decode"].holds
    assert ll.twins.both_decode_verdict(ll.twins.decode_history_tests(
        _twin_states(1, inv_shift=3.0, vis_shift=3.0)), stage="after phase 2").verdict == "holds"
    # shorter than the protocol: not testable, parts kept
    short = ll.twins.memory_verdict(tests, epochs_phase1=3000, epochs_phase2=3000)
    assert short.verdict == "not testable at this profile" and short.parts == v.parts
    assert "10% of the protocol's 30000" in short.note
    assert ll.twins.memory_verdict(tests, epochs_phase1=30000, epochs_phase2=30000).verdict == "holds"
    with pytest.raises(ll.InvalidParameterError, match="tests has no entry"):
        ll.twins.memory_verdict(tests, stage="after phase 1")


def test_decode_history_tests_agree_with_decode_history():
    states = _twin_states(2, inv_shift=0.8)
    dec = ll.twins.decode_history(states, n_splits=20, seed=4)
    tests = ll.twins.decode_history_tests(states, n_splits=20, seed=4)
    assert list(tests) == list(dec)
    for k in dec:
        assert tests[k].observed == dec[k].mean
    vd = ll.twins.decoding_verdicts(tests)
    assert list(vd) == ["visible, after phase 2", "invisible, after phase 2"]
    assert vd["invisible, after phase 2"].p == tests[("invisible", "after phase 2")].p


def test_activation_memory_verdict():
    erf = ll.twins.decode_history_tests(_twin_states(3, inv_shift=3.0))
    lin = ll.twins.decode_history_tests(_twin_states(4))
    v = ll.twins.activation_memory_verdict(erf, lin, epochs_phase1=30000, epochs_phase2=30000)
    assert v.verdict == "holds" and set(v.parts) == {"erf invisible decode", "erf better than linear"}
    assert ll.twins.activation_memory_verdict(lin, erf).verdict == "does not hold"
    assert ll.twins.activation_memory_verdict(erf, lin, epochs_phase1=3000,
                                              epochs_phase2=3000).verdict == "not testable at this profile"
