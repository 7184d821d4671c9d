"""The full network's compiled CPU kernel (numba) against float64 autodiff through the simulation,
its activations against scipy/numpy, and the learner's choice of kernel."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

import lowrank_learning as ll
from lowrank_learning import sweeps
from lowrank_learning.core import _network_kernel
from lowrank_learning.core._network_source import _constants, activation_lines

pytestmark = pytest.mark.skipif(not ll.core._kernels.numba_available(), reason="numba is not installed")


def _reference(arch, X, x, y, m, dt, kind):
    """Loss and gradient by float64 autodiff through the N-dimensional simulation."""
    b = ll.Batch(jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64), jnp.asarray(m, jnp.float64), dt, kind)
    return jax.jit(jax.value_and_grad(lambda X_: ll.network_loss(arch, X_, b)))(jnp.asarray(X, jnp.float64))


def _case(rank, n_in, n_out, act, N, B, T, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((N, arch.K)) * rng.uniform(0.5, 2.0, arch.K)).astype(np.float32)
    x = (2 * rng.standard_normal((B, T, n_in))).astype(np.float32)
    y = rng.standard_normal((B, T, n_out)).astype(np.float32)
    m = (rng.random((B, T, n_out)) > 0.3).astype(np.float32)
    return arch, X, x, y, m


def _check(rank, n_in, n_out, act, kind, N, B, T, seed):
    arch, X, x, y, m = _case(rank, n_in, n_out, act, N, B, T, seed)
    if act == "linear":  # float64: no approximation, the same numbers as autodiff to rounding
        L0, G0 = _reference(arch, X.astype(np.float64), x, y, m, 0.1, kind)
        L2, G2 = _network_kernel.host_value_and_grad(arch, X.astype(np.float64), x, y, m, 0.1, kind)
        assert G2.dtype == np.float64
        np.testing.assert_allclose(float(L2), float(L0), rtol=1e-12)
        np.testing.assert_allclose(G2, np.asarray(G0), rtol=0, atol=1e-12 * float(np.max(np.abs(G0))))
    L0, G0 = _reference(arch, X, x, y, m, 0.1, kind)
    L1, G1 = _network_kernel.host_value_and_grad(arch, X, x, y, m, 0.1, kind)
    assert L1.dtype == np.float32 and G1.dtype == np.float32 and G1.shape == X.shape
    # float32 sums over N neurons and T x B steps, activations to float32 rounding
    np.testing.assert_allclose(float(L1), float(L0), rtol=2e-6)
    np.testing.assert_allclose(G1, np.asarray(G0), rtol=0, atol=2e-5 * float(np.max(np.abs(G0))))


# Every (rank, n_in, n_out, activation) is its own compiled kernel (seconds to compile, then cached
# on disk), so the default suite draws from a few shapes.
@settings(max_examples=12, deadline=None)
@given(shape=st.sampled_from([(1, 1, 1), (2, 2, 1), (1, 3, 2)]), act=st.sampled_from(["linear", "erf", "tanh"]),
       kind=st.sampled_from(["sum_time", "masked_mean"]), N=st.integers(1, 700), B=st.integers(1, 9),
       T=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_kernel_equals_float64_autodiff(shape, act, kind, N, B, T, seed):
    """Any size, batch and length; rank, input and output dimensions above 1."""
    _check(*shape, act, kind, N, B, T, seed)


def test_kernel_at_a_large_size_with_threads(monkeypatch):
    """Neurons split into many blocks, trials between threads; the E9 shape."""
    monkeypatch.setenv("LOWRANK_KERNEL_THREADS", "3")
    _check(1, 1, 1, "erf", "masked_mean", 5000, 5, 200, 7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["linear", "erf", "tanh"])
def test_activations_against_scipy(dtype, act):
    """phi and phi' as the kernel writes them, on [-12, 12]: erf to its rational approximation's
    accuracy, tanh and exp to rounding; phi' to relative accuracy where it is not negligible."""
    src = ("import numba\nimport numpy as np\n" + "\n".join(_constants(dtype))
           + "\n@numba.njit(fastmath=True, error_model='numpy')\ndef f(H, P, D):\n    for i in range(H.size):\n"
           + "        h = H[i]\n" + "\n".join(activation_lines(act, " " * 8, dtype))
           + "\n        P[i] = p\n        D[i] = dp\n")
    scope: dict = {}
    exec(src, scope)  # noqa: S102
    h = np.linspace(-12, 12, 48001).astype(dtype)
    P, D = np.empty_like(h), np.empty_like(h)
    scope["f"](h, P, D)
    hd = h.astype(np.float64)
    if act == "erf":
        p, dp = erf(np.sqrt(np.pi) / 2 * hd), np.exp(-np.pi * hd**2 / 4)
    elif act == "tanh":
        p = np.tanh(hd)
        dp = 1 / np.cosh(hd) ** 2
    else:
        p, dp = hd, np.ones_like(hd)
    tol_p = {"float32": 4e-7, "float64": {"erf": 1e-7, "tanh": 1e-14, "linear": 0}[act]}[dtype]
    tol_d = {"float32": 2e-5, "float64": 1e-12}[dtype]
    assert np.max(np.abs(P - p)) <= tol_p
    big = dp > 1e-30
    assert np.max(np.abs(D - dp)[big] / dp[big]) <= tol_d
    assert np.all(np.abs(D[~big]) <= 1e-30)


def test_learner_same_run_with_either_kernel():
    """learn_vectors: the kernel and XLA give the same trajectory to float32 precision (SGD on
    fresh flip-flop trials, all vectors plastic)."""
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=4, dt=0.1, T_max=6.0)
    X0 = ll.sample_vectors(arch, 400, seed=3).astype(np.float32)
    a = ll.learn_vectors(arch, X0, task, 0.2, 40, seed=1, progress=False, kernel="xla")
    b = ll.learn_vectors(arch, X0, task, 0.2, 40, seed=1, progress=False, kernel="numba")
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-4)
    np.testing.assert_allclose(b.sigma_all, a.sigma_all, rtol=0, atol=1e-5)


def test_choice_of_kernel(monkeypatch):
    arch = ll.Architecture(activation="tanh")
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=2.0)
    X64 = ll.sample_vectors(arch, 50, seed=0)
    monkeypatch.delenv("LOWRANK_KERNEL", raising=False)
    cpu = jax.default_backend() == "cpu"
    assert _network_kernel.usable(arch, np.float32) == cpu
    assert not _network_kernel.usable(arch, np.float64)  # float64 tanh/erf (exactness) keeps autodiff
    assert _network_kernel.usable(ll.Architecture(), np.float64) == cpu  # linear units: no approximation
    small, big = _network_kernel._MIN_WORK - 1, _network_kernel._MIN_WORK
    assert not _network_kernel.usable(arch, np.float32, work=small)  # too small to pay for the host call
    assert _network_kernel.usable(arch, np.float32, work=big) == cpu
    with pytest.raises(ll.InvalidParameterError, match="kernel='numba' needs float32"):
        ll.learn_vectors(arch, X64, task, 0.1, 2, kernel="numba", progress=False)
    with pytest.raises(ll.InvalidParameterError, match="kernel must be one of"):
        ll.learn_vectors(arch, X64.astype(np.float32), task, 0.1, 2, kernel="gpu", progress=False)
    monkeypatch.setenv("LOWRANK_KERNEL", "fast")
    with pytest.raises(ll.InvalidParameterError, match="LOWRANK_KERNEL"):
        ll.learn_vectors(arch, X64.astype(np.float32), task, 0.1, 2, progress=False)


def test_sweep_workers_share_the_cores(monkeypatch):
    monkeypatch.setenv("LOWRANK_KERNEL_THREADS", "1")  # recorded, so that the end of the test restores it
    monkeypatch.delenv("LOWRANK_KERNEL_THREADS")
    sweeps._share_cores(2)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert os.environ["LOWRANK_KERNEL_THREADS"] == str(max(1, cpus // 2))
    monkeypatch.setenv("LOWRANK_KERNEL_THREADS", "5")
    sweeps._share_cores(2)
    assert os.environ["LOWRANK_KERNEL_THREADS"] == "5"  # a setting of the user's is kept


@pytest.mark.parametrize("act", ["linear", "erf", "tanh"])
def test_weighted_nodes_equal_the_mean_field_gradient(act):
    """With weights (any sign, not summing to 1) the kernel is the large-N limit's per-node map
    (``mean_field_gradient``, XLA, float64): the gradient of each node divided by its weight."""
    arch, X, x, y, m = _case(2, 1, 2, act, 300, 3, 40, 11)
    w = np.random.default_rng(2).normal(1.0 / 300, 2.0 / 300, 300)
    b = ll.Batch(x.astype(np.float64), y.astype(np.float64), m.astype(np.float64), 0.1, "masked_mean")
    L0, f0 = ll.mean_field_gradient(arch, X.astype(np.float64), w, b)
    L1, f1 = _network_kernel.host_value_and_grad(arch, X, x, y, m, 0.1, "masked_mean", w.astype(np.float32))
    np.testing.assert_allclose(float(L1), float(L0), rtol=2e-6)
    np.testing.assert_allclose(f1, np.asarray(f0), rtol=0, atol=2e-5 * float(np.max(np.abs(f0))))


def test_mean_field_learner_same_run_with_either_kernel():
    """learn_mean_field_ensemble on a float32 cloud: the kernel (members one by one) and XLA (vmap)."""
    arch = ll.Architecture(activation="erf")
    task = ll.tasks.flip_flop(n_trials=3, dt=0.1, T_max=5.0)
    S0 = np.stack([ll.overlaps(ll.sample_vectors(arch, 300, seed=i)) for i in range(2)]).astype(np.float32)
    runs = {k: ll.learn_mean_field_ensemble(arch, S0, task, 0.2, 25, nodes=(4, 4, 3, 3), seeds=[0, 1],
                                            progress=False, kernel=k) for k in ("xla", "numba")}
    a, b = runs["xla"], runs["numba"]
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-4)
    np.testing.assert_allclose(b.final_sigma, a.final_sigma, rtol=0, atol=1e-5)


def test_wide_vectors_setting(monkeypatch):
    """NUMBA_CPU_FEATURES: the host's features plus -prefer-256-bit on AVX-512 CPUs, unless the
    user set it or LOWRANK_KERNEL_WIDE=0."""
    from lowrank_learning.core import _kernels

    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+sse2")
    assert _kernels._use_wide_vectors() is None and os.environ["NUMBA_CPU_FEATURES"] == "+sse2"
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setenv("LOWRANK_KERNEL_WIDE", "0")
    assert _kernels._use_wide_vectors() is None and "NUMBA_CPU_FEATURES" not in os.environ
    monkeypatch.delenv("LOWRANK_KERNEL_WIDE")
    import llvmlite.binding as llb

    host = llb.get_host_cpu_features().flatten()
    got = _kernels._use_wide_vectors()
    if "+avx512f" in host.split(","):
        assert got == host + ",-prefer-256-bit" == os.environ["NUMBA_CPU_FEATURES"]
    else:
        assert got is None and "NUMBA_CPU_FEATURES" not in os.environ
