"""The compiled CPU kernel (numba) against the XLA adjoint: ensembles, shared trials, vmap,
float32, the learners, and the choice of kernel."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll
from lowrank_learning.core import _kernels


def _sigmas(arch, E, rng, dtype=np.float64):
    out = []
    for _ in range(E):
        X = rng.standard_normal((200, arch.K))
        out.append(X.T @ X / 200)
    return np.stack(out).astype(dtype)


def _data(E, B, T, n_in, n_out, rng, dtype=np.float64):
    x = rng.standard_normal((E, B, T, n_in)).astype(dtype)
    y = rng.standard_normal((E, B, T, n_out)).astype(dtype)
    m = (rng.random((E, B, T, n_out)) > 0.3).astype(dtype)
    return x, y, m


def _check_against_xla(rank, n_in, n_out, act, kind, E, B, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    S = _sigmas(arch, E, rng)
    x, y, m = _data(E, B, 17, n_in, n_out, rng)
    # both compiled whole (op by op, the XLA version's scans would each compile on their own)
    l1, G1 = jax.jit(lambda S_: ll.ensemble_value_and_grad(arch, S_, x, y, m, 0.1, kind, kernel="xla"))(S)
    l2, G2 = jax.jit(lambda S_: ll.ensemble_value_and_grad(arch, S_, x, y, m, 0.1, kind, kernel="numba"))(S)
    np.testing.assert_allclose(np.asarray(l2), np.asarray(l1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.asarray(G2), np.asarray(G1), rtol=0, atol=1e-12 * float(np.max(np.abs(G1))))


# Every (rank, n_in, n_out, activation) is its own compiled kernel (seconds to compile, then cached
# on disk), so the default suite draws from a few shapes and the exhaustive check is marked slow.
@settings(max_examples=10, deadline=None)
@given(shape=st.sampled_from([(1, 1, 1), (2, 2, 1), (3, 1, 2)]), act=st.sampled_from(["linear", "erf"]),
       kind=st.sampled_from(["sum_time", "masked_mean"]), E=st.integers(1, 4), B=st.integers(1, 40),
       seed=st.integers(0, 2**16))
def test_numba_equals_xla_on_ensembles(shape, act, kind, E, B, seed):
    """Any ensemble size and batch (blocks split a member's trials when there are few members)."""
    _check_against_xla(*shape, act, kind, E, B, seed)


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("n_in", [1, 2])
@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("act", ["linear", "erf"])
def test_numba_equals_xla_every_shape(rank, n_in, n_out, act):
    _check_against_xla(rank, n_in, n_out, act, "masked_mean", 3, 11, rank + 10 * n_in + 100 * n_out)


def test_shared_trials_vmap_and_float32():
    arch = ll.Architecture(rank=2, activation="erf")
    rng = np.random.default_rng(1)
    S = _sigmas(arch, 5, rng)
    x, y, m = _data(2, 9, 30, 1, 1, rng)
    row = np.array([1, 0, 1, 1, 0])
    # members reading distinct batches in place == the same batches copied per member
    l1, G1 = _kernels.value_and_grad(arch, S, x, y, m, 0.05, "masked_mean", row)
    l2, G2 = ll.ensemble_value_and_grad(arch, jnp.asarray(S), x[row], y[row], m[row], 0.05, "masked_mean", kernel="xla")
    np.testing.assert_allclose(np.asarray(G1), np.asarray(G2), rtol=0, atol=1e-12 * float(np.max(np.abs(G2))))
    np.testing.assert_allclose(np.asarray(l1), np.asarray(l2), rtol=1e-12)
    for kernel in ("xla", "numba"):  # the public entry point takes the same rows
        l5, G5 = ll.ensemble_value_and_grad(arch, jnp.asarray(S), x, y, m, 0.05, "masked_mean", kernel=kernel, row=row)
        np.testing.assert_allclose(np.asarray(G5), np.asarray(G2), rtol=0, atol=1e-12 * float(np.max(np.abs(G2))))
        np.testing.assert_allclose(np.asarray(l5), np.asarray(l2), rtol=1e-12)
    # vmap over a leading axis
    Sv = np.stack([S, 2 * S])
    lv, Gv = jax.vmap(lambda S_: ll.ensemble_value_and_grad(arch, S_, x[row], y[row], m[row], 0.05, "masked_mean",
                                                         kernel="numba"))(Sv)
    l3, G3 = ll.ensemble_value_and_grad(arch, jnp.asarray(2 * S), x[row], y[row], m[row], 0.05, "masked_mean", kernel="xla")
    np.testing.assert_allclose(np.asarray(Gv[0]), np.asarray(G2), rtol=0, atol=1e-12 * float(np.max(np.abs(G2))))
    np.testing.assert_allclose(np.asarray(Gv[1]), np.asarray(G3), rtol=0, atol=1e-12 * float(np.max(np.abs(G3))))
    # float32 stays float32 and agrees to its precision
    S32, x32, y32, m32 = (a.astype(np.float32) for a in (S, x[row], y[row], m[row]))
    l4, G4 = ll.ensemble_value_and_grad(arch, jnp.asarray(S32), x32, y32, m32, 0.05, "masked_mean", kernel="numba")
    assert l4.dtype == jnp.float32 and G4.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(G4), np.asarray(G2), rtol=0, atol=1e-5 * float(np.max(np.abs(G2))))


def test_learners_same_trajectory_with_either_kernel(monkeypatch):
    """The ensemble learner (shared trials, drop schedule) gives the same run with both kernels."""
    arch = ll.Architecture(activation="erf")
    ff = ll.tasks.flip_flop(n_trials=6, dt=0.1, T_max=4.0, first_pulse=0.2, mask_after=0.5,
                            wait_min=0.3, wait_max=0.6, input_amplitude=2.0, target_amplitude=1.0)
    dm = ll.tasks.decision_making(n_trials=6, dt=0.1, fixation=0.5, stimulus=1.5, delay=0.5, response=1.5)
    S0 = np.stack([ll.overlaps(ll.sample_vectors(arch, 300, seed=i)) for i in range(4)])
    runs = {}
    for kernel in ("xla", "numba"):
        monkeypatch.setenv("LOWRANK_KERNEL", kernel)
        runs[kernel] = ll.learn_overlaps_ensemble(arch, S0, [ff, ff, dm, dm], ll.DropBelow(0.05, 0.2, 2.0), 30,
                                                  seeds=[0, 0, 1, 2], progress=False)
    a, b = runs["xla"], runs["numba"]
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-10, atol=0)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=0, atol=1e-10)


def test_choice_of_kernel(monkeypatch):
    erf, tanh = ll.Architecture(activation="erf"), ll.Architecture(activation="tanh")
    monkeypatch.delenv("LOWRANK_KERNEL", raising=False)
    assert _kernels.choose("auto", erf) == ("numba" if jax.default_backend() == "cpu" else "xla")
    assert _kernels.choose("auto", tanh) == "xla"
    lin = ll.Architecture()
    cpu = "numba" if jax.default_backend() == "cpu" else "xla"
    assert _kernels.choose("auto", erf, work=400) == cpu       # erf: XLA's step is slow at any size
    assert _kernels.choose("auto", lin, work=400) == "xla"     # linear: too small to pay for the host call
    assert _kernels.choose("auto", lin, work=128 * 400) == "xla"  # one network: XLA still wins
    assert _kernels.choose("auto", lin, work=4 * 128 * 400) == cpu  # an ensemble: numba wins
    assert _kernels.choose("numba", lin, work=400) == "numba"
    monkeypatch.setenv("LOWRANK_KERNEL", "xla")
    assert _kernels.choose("auto", erf) == "xla"
    monkeypatch.setenv("LOWRANK_KERNEL", "fast")
    with pytest.raises(ll.InvalidParameterError, match="LOWRANK_KERNEL"):
        _kernels.choose("auto", erf)
    with pytest.raises(ll.InvalidParameterError, match="kernel must be one of"):
        _kernels.choose("gpu", erf)
    with pytest.raises(ll.InvalidParameterError, match="tanh"):
        _kernels.choose("numba", tanh)


def test_kernel_source_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_KERNEL_CACHE", str(tmp_path))
    _kernels._compiled.cache_clear()
    arch = ll.Architecture(rank=1, activation="linear")
    fn = _kernels._compiled(arch, 1, "float64")
    files = list(tmp_path.glob("_lowrank_kernel_*.py"))
    assert len(files) == 1 and "def kern" in files[0].read_text()
    assert callable(fn)
    _kernels._compiled.cache_clear()


def test_a_new_kernel_is_compiled_under_a_lock_and_loaded_by_the_others(tmp_path, monkeypatch):
    """Processes that need a new kernel at once (pytest-xdist or sweep workers) compile it once: a
    caller waits for the lock file beside the kernel's source and compiles nothing meanwhile; once
    the holder lets go it compiles and caches the kernel, and the next caller (a fresh dispatcher,
    as in another process) loads it from the cache. flock excludes other open files of the same
    process too, so a thread stands in for the other worker."""
    import fcntl
    import threading

    monkeypatch.setenv("LOWRANK_KERNEL_CACHE", str(tmp_path))
    _kernels._compiled.cache_clear()
    arch = ll.Architecture(rank=1, activation="linear")
    rng = np.random.default_rng(0)
    S = _sigmas(arch, 1, rng)
    x, y, m = (a.transpose(0, 3, 2, 1).copy() for a in _data(1, 8, 5, 1, 1, rng))
    run = lambda: _kernels._host(arch, 0.1, "sum_time", S, x, y, m, np.zeros(1, int))
    fn = _kernels._compiled(arch, 1, "float64")
    lock = Path(fn.py_func.__code__.co_filename).with_suffix(".lock")
    waiting, out = threading.Event(), {}
    real = fcntl.flock

    def flock(fh, op):
        waiting.set()
        return real(fh, op)

    monkeypatch.setattr(_kernels.fcntl, "flock", flock)
    with open(lock, "a") as held:
        real(held, fcntl.LOCK_EX)  # another worker compiling this kernel
        worker = threading.Thread(target=lambda: out.update(result=run()))
        worker.start()
        while worker.is_alive() and not waiting.wait(0.05):
            pass
        assert waiting.is_set()  # it asked for the lock
        worker.join(0.5)
        assert worker.is_alive() and not fn.overloads  # it waits, and has compiled nothing
        real(held, fcntl.LOCK_UN)
    worker.join(120)
    assert not worker.is_alive() and len(fn.overloads) == 1
    assert sum(fn.stats.cache_misses.values()) == 1  # compiled here, and cached
    _kernels._compiled.cache_clear()
    again = _kernels._compiled(arch, 1, "float64")
    assert again is not fn
    loss, G = run()
    assert sum(again.stats.cache_hits.values()) == 1 and not again.stats.cache_misses  # loaded, not compiled
    np.testing.assert_array_equal(loss, out["result"][0])
    np.testing.assert_array_equal(G, out["result"][1])
    _kernels._compiled.cache_clear()


@pytest.mark.parametrize("rule", ["exact", "flow"])
def test_trials_kept_on_the_host_equal_trials_drawn_in_the_loop(monkeypatch, rule):
    """With the numba kernel each chunk's trials are drawn in one XLA call and read on the host
    (hosted._chunk_batches, _kernels.HostedBatches); the run equals the one drawing them in the
    loop: bitwise for samplers of elementwise draws, to rounding for a teacher (its targets come
    from matrix products batched differently), and for fixed batches. 40 epochs: one chunk of 40
    drawn in 3 pieces of 16; 21 epochs: the last piece only partly used."""
    from lowrank_learning.learn import hosted

    arch = ll.Architecture(activation="erf")
    ff = ll.tasks.flip_flop(n_trials=5, dt=0.1, T_max=4.0, first_pulse=0.2, mask_after=0.5,
                            wait_min=0.3, wait_max=0.6, input_amplitude=2.0, target_amplitude=1.0)
    dm = ll.tasks.decision_making(n_trials=5, dt=0.1, fixation=0.5, stimulus=1.5, delay=0.5, response=1.5)
    noise = ll.tasks.noisy_pulses(n_trials=5, dt=0.1, T_max=4.0, first_pulse=0.2, wait_min=0.3, wait_max=0.6,
                                  mask_after=0.5)
    teacher = ll.tasks.teacher(arch, noise, sigma=ll.overlaps(ll.sample_vectors(arch, 500, seed=9)))
    fixed = ff(jax.random.PRNGKey(4))
    S0 = np.stack([ll.overlaps(ll.sample_vectors(arch, 300, seed=i)) for i in range(3)])
    monkeypatch.setenv("LOWRANK_KERNEL", "numba")
    cases = [([ff, dm, dm], [0, 0, 1], 40, 0), ([teacher] * 3, 2, 21, 1e-12), ([fixed, fixed, ff], 0, 21, 0)]
    for tasks, seeds, epochs, tol in cases:
        runs = {}
        for mode, limit in (("loop", 0), ("host", hosted._HOSTED_MAX_BYTES)):
            monkeypatch.setattr(hosted, "_HOSTED_MAX_BYTES", limit)
            runs[mode] = ll.learn_overlaps_ensemble(arch, S0, tasks, ll.DropBelow(0.05, 0.2, 2.0), epochs, rule=rule,
                                                    seeds=seeds, progress=False)
        a, b = runs["loop"], runs["host"]
        np.testing.assert_allclose(b.loss, a.loss, rtol=tol, atol=0)
        np.testing.assert_allclose(b.sigma, a.sigma, rtol=0, atol=tol)
        assert not _kernels._HOSTED  # every chunk's arrays were released


def test_hosted_trials_released_when_a_run_fails(monkeypatch):
    """A run whose kernel fails mid-chunk leaves no registered trials behind."""
    arch = ll.Architecture(activation="erf")
    ff = ll.tasks.flip_flop(n_trials=4, dt=0.1, T_max=4.0, first_pulse=0.2, mask_after=0.5,
                            wait_min=0.3, wait_max=0.6, input_amplitude=2.0, target_amplitude=1.0)
    monkeypatch.setenv("LOWRANK_KERNEL", "numba")

    def broken(*args, **kwargs):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(_kernels, "_host", broken)
    S0 = ll.overlaps(ll.sample_vectors(arch, 300, seed=0))
    with pytest.raises(Exception, match="kernel failed"):
        ll.learn_overlaps(arch, S0, ff, 0.01, 20, progress=False)
    assert not _kernels._HOSTED


def test_concurrent_calls_do_not_share_scratch():
    """Two threads calling the kernel at once (confirm_pair runs its twins' theory that way)
    each get their own results: the stored states' scratch is per calling thread."""
    from concurrent.futures import ThreadPoolExecutor

    arch = ll.Architecture(activation="erf")
    rng = np.random.default_rng(5)
    jobs = []
    for _ in range(8):
        S = _sigmas(arch, 1, rng, np.float32)
        x, y, m = (a.transpose(0, 3, 2, 1).copy() for a in _data(1, 64, 300, 1, 1, rng, np.float32))
        jobs.append((S, x, y, m))
    run = lambda j: _kernels._host(arch, 0.05, "masked_mean", j[0], j[1], j[2], j[3], np.zeros(1, int))  # noqa: E731
    alone = [run(j) for j in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            together = list(pool.map(run, jobs))
        for (l1, G1), (l2, G2) in zip(alone, together):
            np.testing.assert_array_equal(l2, l1)
            np.testing.assert_array_equal(G2, G1)


def test_jax_compilation_cache_settings_and_pruning(tmp_path, monkeypatch):
    """The shared compilation cache lives beside the kernels unless JAX_COMPILATION_CACHE_DIR is set,
    and keeps every program unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS is set; pruning drops the least recently used files first, down to the size limit."""
    monkeypatch.setenv("LOWRANK_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv(_kernels.JAX_CACHE_ENV, raising=False)
    monkeypatch.delenv(_kernels._JAX_MIN_ENV, raising=False)
    env = _kernels.jax_cache_settings()
    assert env[_kernels.JAX_CACHE_ENV] == str(tmp_path / "jax")
    assert float(env[_kernels._JAX_MIN_ENV]) == 0.0  # every program is kept
    monkeypatch.setenv(_kernels._JAX_MIN_ENV, "0.25")  # unless the user sets a threshold
    assert float(_kernels.jax_cache_settings()[_kernels._JAX_MIN_ENV]) == 0.25
    monkeypatch.setenv(_kernels.JAX_CACHE_ENV, "")  # the user's choice (here: no cache) is kept
    assert _kernels.jax_cache_settings() == {}
    folder = tmp_path / "jax"
    folder.mkdir()
    for i in range(5):  # 100 bytes each, file i last used at time i
        f = folder / f"entry{i}"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1000 + i, 1000 + i))
    _kernels._prune(folder, 250)
    assert sorted(p.name for p in folder.iterdir()) == ["entry3", "entry4"]
    _kernels._prune(tmp_path / "missing", 0)  # nothing to prune: no error
