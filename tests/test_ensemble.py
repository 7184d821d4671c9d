"""Fused adjoint, ensembles, learning-rate schedules and float32 chaining (issue: nonlinear results).

References: autodiff through ``run_latent`` for the hand-written adjoint; single
``learn_overlaps`` runs for the ensemble members; a plain Python loop over epochs for the
schedules evaluated inside the compiled loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll


def _random_sigma(arch, rng, N=60):
    X = rng.standard_normal((N, arch.K))
    return X.T @ X / N


NUMBA_SHAPES = {(1, 1, 1), (2, 2, 1), (3, 1, 2)}  # (rank, n_in, n_out)


# the reference: autodiff through run_latent, compiled as one program (run op by op, its scans
# and their transposes would each compile on their own)
_autodiff_reference = jax.jit(jax.value_and_grad(ll.overlap_loss, argnums=1), static_argnums=0)
# the adjoint under test, compiled whole too, as the learners run it
_adjoint = jax.jit(ll.overlap_value_and_grad, static_argnums=0, static_argnames="kernel")


@settings(max_examples=12, deadline=None)
@given(rank=st.integers(1, 3), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       act=st.sampled_from(["linear", "erf", "tanh"]), kind=st.sampled_from(["sum_time", "masked_mean"]),
       seed=st.integers(0, 2**16))
def test_adjoint_equals_autodiff(rank, n_in, n_out, act, kind, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    S = _random_sigma(arch, rng)
    B, T = 3, 25
    batch = ll.Batch(rng.standard_normal((B, T, n_in)), rng.standard_normal((B, T, n_out)),
                     (rng.random((B, T, n_out)) > 0.3) * 1.0, 0.1, kind)
    l_ref, G_ref = _autodiff_reference(arch, jnp.asarray(S), batch)
    # numba covers linear and erf units; each shape compiles once per machine (seconds), so the
    # default suite checks it on a fixed set of shapes (tests/test_kernels.py has the rest)
    kernels = ["xla"] + (["numba"] if act != "tanh" and (rank, n_in, n_out) in NUMBA_SHAPES else [])
    for kernel in kernels:
        l_adj, G_adj = _adjoint(arch, jnp.asarray(S), batch, kernel=kernel)
        assert abs(float(l_adj) - float(l_ref)) <= 1e-12 * abs(float(l_ref)), kernel
        np.testing.assert_allclose(np.asarray(G_adj), np.asarray(G_ref), rtol=0,
                                   atol=1e-11 * float(np.max(np.abs(G_ref))), err_msg=kernel)
        # the blocks the loss does not read have exactly zero gradient
        assert np.all(np.asarray(G_adj)[~arch.visible_matrix] == 0.0), kernel


def _short_tasks():
    ff = ll.tasks.flip_flop(n_trials=6, dt=0.1, T_max=4.0, first_pulse=0.2, mask_after=0.5,
                            wait_min=0.3, wait_max=0.6, input_amplitude=2.0, target_amplitude=1.0)
    dm = ll.tasks.decision_making(n_trials=6, dt=0.1, fixation=0.5, stimulus=1.5, delay=0.5, response=1.5)
    return ff, dm


@pytest.mark.parametrize("rule", ["exact", "naive", "flow"])
def test_ensemble_members_equal_single_runs(rule):
    arch = ll.Architecture(activation="erf")
    S0 = ll.random_overlaps(arch, 3, seed=1).sigma
    ff, dm = _short_tasks()
    tasks, seeds = [ff, dm, ff], [3, 4, 5]
    ens = ll.learn_overlaps_ensemble(arch, S0, tasks, 0.05, 12, rule=rule, seeds=seeds, progress=False)
    assert ens.loss.shape == (3, 12) and ens.sigma.shape == (3, 12, 4, 4)
    for i in range(3):
        single = ll.learn_overlaps(arch, S0[i], tasks[i], 0.05, 12, rule=rule, seed=seeds[i], progress=False)
        m = ens.member(i)
        np.testing.assert_allclose(m.loss, single.loss, rtol=1e-11, atol=0)
        np.testing.assert_allclose(m.sigma_all, single.sigma_all, rtol=0, atol=1e-11)


def test_ensemble_shared_trials_and_recording():
    """Members with the same task and seed share trials: equal starts give equal runs."""
    arch = ll.Architecture(activation="erf")
    S = ll.random_overlaps(arch, 1, seed=7).sigma[0]
    ff, _ = _short_tasks()
    ens = ll.learn_overlaps_ensemble(arch, np.stack([S, S]), ff, 0.05, 9, seeds=0, record_every=4,
                                     progress=False)
    np.testing.assert_array_equal(ens.loss[0], ens.loss[1])
    np.testing.assert_array_equal(ens.record_epochs, [0, 4, 8])
    single = ll.learn_overlaps(arch, S, ff, 0.05, 9, seed=0, progress=False)
    np.testing.assert_allclose(ens.sigma[0], single.sigma[[0, 4, 8]], atol=1e-12)
    with pytest.raises(ll.InvalidParameterError, match="every epoch"):
        ens.member(0)


def test_ensemble_bad_input():
    arch = ll.Architecture(activation="erf")
    S = np.stack([np.eye(4)] * 2)
    ff, dm = _short_tasks()
    long_dm = ll.tasks.decision_making(n_trials=6, dt=0.1)  # 200 steps, not 40
    with pytest.raises(ll.InvalidParameterError, match="same shape"):
        ll.learn_overlaps_ensemble(arch, S, [ff, long_dm], 0.05, 2, progress=False)
    with pytest.raises(ll.InvalidParameterError, match="one per member"):
        ll.learn_overlaps_ensemble(arch, S, [ff, dm, ff], 0.05, 2, progress=False)
    with pytest.raises(ll.InvalidParameterError, match=r"\(E, 4, 4\)"):
        ll.learn_overlaps_ensemble(arch, np.eye(4), ff, 0.05, 2, progress=False)
    with pytest.raises(ll.InvalidParameterError, match="seeds"):
        ll.learn_overlaps_ensemble(arch, S, ff, 0.05, 2, seeds=[1, 2, 3], progress=False)


def test_task_must_match_architecture():
    arch = ll.Architecture(activation="erf")
    rng = np.random.default_rng(0)
    two_out = ll.Batch(rng.standard_normal((2, 10, 1)), rng.standard_normal((2, 10, 2)), dt=0.1)
    three_in = ll.Batch(rng.standard_normal((2, 10, 3)), rng.standard_normal((2, 10, 1)), dt=0.1)
    X = ll.sample_vectors(arch, 20, seed=0)
    for task, what in ((two_out, r"targets have shape \(2, 10, 2\).*n_out = 1"),
                       (three_in, r"inputs have shape \(2, 10, 3\).*n_in = 1")):
        with pytest.raises(ll.InvalidParameterError, match=what):
            ll.learn_overlaps(arch, np.eye(4), task, 0.01, 2, progress=False)
        with pytest.raises(ll.InvalidParameterError, match=what):
            ll.learn_vectors(arch, X, task, 0.01, 2, progress=False)
    # a teacher with two outputs for a student with one
    teacher_arch = ll.Architecture(activation="erf", n_out=2)
    inputs = ll.tasks.noisy_pulses(n_trials=2, dt=0.1, T_max=2.0)
    teacher = ll.tasks.teacher(teacher_arch, inputs, sigma=np.eye(teacher_arch.K))
    with pytest.raises(ll.InvalidParameterError, match="n_out = 1"):
        ll.learn_overlaps(arch, np.eye(4), teacher, 0.01, 2, progress=False)


# ----------------------------------------------------------------------------- schedules
def _python_loop(arch, S0, batch, rate_of, epochs):
    """Reference: one learn_overlaps call per epoch, the rate chosen in Python."""
    S, losses, lrs, state = np.asarray(S0), [], [], -1
    for e in range(epochs):
        loss = float(ll.overlap_loss(arch, jnp.asarray(S), batch))
        lr, state = rate_of(e, loss, state)
        tr = ll.learn_overlaps(arch, S, batch, lr, 1, progress=False)
        losses.append(tr.loss[0])
        lrs.append(lr)
        S = tr.final_sigma
    return np.array(losses), np.array(lrs), S, state


def test_drop_below_matches_python_loop():
    arch = ll.Architecture(activation="erf")
    rng = np.random.default_rng(3)
    S0 = ll.random_overlaps(arch, 1, seed=3).sigma[0]
    batch = ll.Batch(rng.standard_normal((4, 30, 1)), 0.5 * rng.standard_normal((4, 30, 1)), dt=0.1,
                     loss="masked_mean")
    first = ll.learn_overlaps(arch, S0, batch, 0.05, 20, progress=False).loss
    threshold = float(np.quantile(first, 0.5))  # crossed about halfway
    sched = ll.DropBelow(0.05, threshold, factor=5.0)
    tr = ll.learn_overlaps(arch, S0, batch, sched, 20, progress=False)

    def rate_of(e, loss, state):
        if state < 0 and loss < threshold:
            state = e
        return (0.01 if state >= 0 else 0.05), state

    losses, lrs, S_end, drop = _python_loop(arch, S0, batch, rate_of, 20)
    assert 0 < drop < 19
    assert tr.drop_epoch == drop
    np.testing.assert_allclose(tr.lrs, lrs, rtol=1e-15)
    np.testing.assert_allclose(tr.loss, losses, rtol=1e-11)
    np.testing.assert_allclose(tr.final_sigma, S_end, atol=1e-12)


def test_piecewise_matches_python_loop_full_network():
    arch = ll.Architecture(activation="erf")
    rng = np.random.default_rng(4)
    X0 = ll.sample_vectors(arch, 40, seed=4)
    batch = ll.Batch(rng.standard_normal((3, 20, 1)), 0.5 * rng.standard_normal((3, 20, 1)), dt=0.1)
    sched = ll.Piecewise((0.02, 0.005, 0.01), boundaries=(3, 7))
    tr = ll.learn_vectors(arch, X0, batch, sched, 10, progress=False)
    X, lrs = X0, []
    for e in range(10):
        lr = 0.02 if e < 3 else (0.005 if e < 7 else 0.01)
        lrs.append(lr)
        X = ll.learn_vectors(arch, X, batch, lr, 1, progress=False).final_vectors
    np.testing.assert_allclose(tr.lrs, lrs)
    np.testing.assert_allclose(tr.final_vectors, X, atol=1e-12)
    with pytest.raises(ll.InvalidParameterError, match="no loss-triggered"):
        tr.drop_epoch


def test_schedule_that_never_triggers_has_no_drop_epoch():
    arch = ll.Architecture(activation="erf")
    ff, _ = _short_tasks()
    tr = ll.learn_overlaps(arch, np.eye(4), ff, ll.DropBelow(0.01, 1e-9, 5.0), 3, progress=False)
    np.testing.assert_array_equal(tr.lrs, [0.01] * 3)
    with pytest.raises(ll.InvalidParameterError, match="never triggered"):
        tr.drop_epoch
    for bad in (dict(lr=-1.0, threshold=0.1), dict(lr=0.1, threshold=0.0), dict(lr=0.1, threshold=1, factor=0)):
        with pytest.raises(ll.InvalidParameterError, match="DropBelow"):
            ll.DropBelow(**bad)
    with pytest.raises(ll.InvalidParameterError, match="one more entry"):
        ll.Piecewise((0.1, 0.2), boundaries=(3, 5))
    with pytest.raises(ll.InvalidParameterError, match="increase"):
        ll.Piecewise((0.1, 0.2, 0.3), boundaries=(5, 3))


def test_schedules_are_pytrees_and_rates_share_one_compilation():
    """A schedule's numbers are traced (leaves), its kind and boundaries are not: runs that differ
    only in their rates (or seeds) reuse one compiled loop, and a rebuilt schedule equals the original."""
    from lowrank_learning.learn import overlap_space, vectors

    for sched, leaves in ((ll.Constant(0.05), [0.05]), (ll.Piecewise((0.1, 0.2), (3,)), [0.1, 0.2]),
                          (ll.DropBelow(0.05, 0.1, 4.0), [0.05, 0.1, 4.0, 0.05 / 4.0])):
        flat, tree = jax.tree_util.tree_flatten(sched)
        assert flat == leaves
        assert jax.tree_util.tree_unflatten(tree, flat) == sched
    assert jax.tree_util.tree_structure(ll.Piecewise((0.1, 0.2), (3,))) != \
        jax.tree_util.tree_structure(ll.Piecewise((0.1, 0.2), (4,)))
    arch = ll.Architecture(activation="tanh")  # XLA kernel: the whole loop is one jit cache entry
    ff, _ = _short_tasks()
    X0 = ll.sample_vectors(arch, 30, seed=0)
    runs = {}
    for fn, run in ((overlap_space._overlap_chunk, lambda lr: ll.learn_overlaps(arch, ll.overlaps(X0), ff, lr, 5,
                                                                                 progress=False)),
                    (vectors._vector_chunk, lambda lr: ll.learn_vectors(arch, X0, ff, lr, 5, progress=False))):
        run(0.05)
        size = fn._cache_size()
        for lr in (0.03, ll.DropBelow(0.02, 0.5, 2.0), ll.DropBelow(0.04, 0.1, 3.0)):
            runs[fn, str(lr)] = run(lr)
        assert fn._cache_size() == size + 1  # the DropBelow kind compiled once, new rates none
        np.testing.assert_array_equal(runs[fn, "0.03"].lrs, 0.03)
    # the seeds of the overlap learners' trials are traced too: a new seed, new trials, no compilation
    size = overlap_space._overlap_chunk._cache_size()
    a, b = (ll.learn_overlaps(arch, ll.overlaps(X0), ff, 0.05, 5, seed=s, progress=False) for s in (7, 8))
    assert overlap_space._overlap_chunk._cache_size() == size and not np.array_equal(a.loss[1:], b.loss[1:])
    assert not np.array_equal(runs[vectors._vector_chunk, "0.03"].loss,
                              runs[vectors._vector_chunk, str(ll.DropBelow(0.02, 0.5, 2.0))].loss)


# ----------------------------------------------------------------------- float32 chaining
def test_psd_tolerance_follows_dtype():
    arch = ll.Architecture()
    w = np.array([10.0, 3.0, 1.0, -8.7e-7])
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    S = (Q * w) @ Q.T
    ll.validate_sigma(arch, S.astype(np.float32))  # float32 rounding: accepted
    with pytest.raises(ll.InvalidOverlapError, match="positive semi-definite"):
        ll.validate_sigma(arch, S)  # the same eigenvalue in float64 is a real violation
    w[-1] = -1e-3
    with pytest.raises(ll.InvalidOverlapError, match="positive semi-definite"):
        ll.validate_sigma(arch, ((Q * w) @ Q.T).astype(np.float32))


def _float32_start():
    """Rank-deficient start (v = z), scale ~ 3, in float32: the exact map keeps it PSD only up to rounding."""
    X = ll.sample_vectors(ll.Architecture(activation="erf"), 3, seed=0)
    X[:, 3] = X[:, 2]
    return (3.0 * X.T @ X / 3).astype(np.float32)


_FLOAT32_S0 = _float32_start()


def _float32_schedule_run():
    ff, dm = _short_tasks()
    phases = [ll.Phase(ff, 0.05, 25, label="ff"), ll.Phase(dm, 0.05, 25, label="dm"),
              ll.Phase(ff, ll.DropBelow(0.05, 1e-9), 25, label="ff again")]
    return ll.run_schedule(ll.Architecture(activation="erf"), _FLOAT32_S0, phases, space="overlaps")


def test_float32_phases_chain_through_run_schedule():
    """Each phase starts from the previous phase's float32 end state, near rank deficiency.

    Reference: the phases run one by one with learn_overlaps (phase i with seed i, from the
    float32 end state of phase i - 1), which run_schedule must reproduce bit for bit."""
    run = _float32_schedule_run()
    state, losses = _FLOAT32_S0, []
    for i, p in enumerate(run.phases):
        tr = ll.learn_overlaps(ll.Architecture(activation="erf"), state, p.task, p.lr, p.epochs, seed=i,
                               progress=False)
        assert tr.final_sigma.dtype == np.float32
        np.testing.assert_array_equal(run.parts[i].loss, tr.loss)
        np.testing.assert_array_equal(run.parts[i].final_sigma, tr.final_sigma)
        losses.append(tr.loss)
        state = tr.final_sigma
    assert run.trajectory.sigma.dtype == np.float32
    np.testing.assert_array_equal(run.boundaries, [0, 25, 50, 75])
    np.testing.assert_array_equal(run.trajectory.loss, np.concatenate(losses))
    np.testing.assert_array_equal(run.trajectory.final_sigma, state)
    np.testing.assert_array_equal(run.trajectory.lrs, np.float32(0.05))  # the drop below 1e-9 never triggers
    assert run.trajectory.loss[-1] < 0.05 * run.trajectory.loss[0]  # it learned: not a flat curve


@pytest.mark.slow
def test_float32_schedule_is_the_float64_schedule_to_float32_round_off():
    """The float32 schedule against the same schedule in float64 (slow: a second compilation).

    Tolerance: float32 rounds each operation to
    u32 = 6e-8 relative; an epoch's loss is a T-step recursion of K-length sums (T = 40,
    K = 4), at most T (K + 10) u32 = 3.4e-5 relative, and each epoch's update carries its
    round-off into the next; without amplification (gradient descent here only lowers the loss)
    the 75 epochs add up to 75 x 3.4e-5 = 2.5e-3 relative, the bound checked."""
    run = _float32_schedule_run()
    ref = ll.run_schedule(run.trajectory.arch, _FLOAT32_S0.astype(np.float64), run.phases, space="overlaps").trajectory
    u32 = np.finfo(np.float32).eps / 2
    np.testing.assert_allclose(run.trajectory.loss, ref.loss, rtol=75 * 40 * (4 + 10) * u32, atol=0)


@pytest.mark.parametrize("env,shown", [(None, True), ("1", False), ("true", False), ("0", True)])
def test_tqdm_disable_silences_the_learners_bars(env, shown, monkeypatch, capsys):
    """TQDM_DISABLE (set in the book's kernels) turns the learners' progress bars off even where
    ``progress=True`` asks for one; otherwise the bar is drawn on stderr."""
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    arch = ll.Architecture(activation="linear")
    task = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=2.0)
    S = np.asarray(_random_sigma(arch, np.random.default_rng(0)))
    capsys.readouterr()
    ll.learn_overlaps(arch, S, task, 0.01, 3, seed=0, progress=True)
    assert ("overlaps" in capsys.readouterr().err) == shown
