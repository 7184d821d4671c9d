"""A compiled CPU kernel (numba) for the loss and gradient of the full network.

The full network of book/theory.md, section 1, started at h_0 = 0 without noise, stays in the span
of M and U: h_t = M kappa_t + U lambda_t (section 3), with the input coordinate kappa_t (the input,
low-pass filtered) and the recurrent coordinate

    lambda_t = lambda_{t-1} + dt (r_{t-1} - lambda_{t-1}),   r_t = V^T phi(h_t) / N,
    y_t = Z^T phi(h_t) / N,                                  r_0 = 0 (phi(0) = 0).

Reverse mode then needs no N-dimensional adjoint. With ybar_t = dL/dy_t, the adjoint of the
recurrent coordinate a_t = dL/dlambda_t obeys

    a_t = (1 - dt) a_{t+1} + J^{UV}_t rbar_t + J^{UZ}_t ybar_t,   rbar_t = dt a_{t+1},

with J_t = sum_i phi'(h_{t,i}) u_i (v_i, z_i)^T / N, sums that the forward pass computes beside
r_t and y_t; and every neuron's gradient is a sum over time steps and trials of its own terms:

    dL/dV_i = sum phi(h) rbar / N,  dL/dZ_i = sum phi(h) ybar / N,
    dL/dU_i = sum g lambda,         dL/dM_i = sum g kappa,     g = phi'(h) (V_i rbar + Z_i ybar) / N.

So the gradient costs two passes over (time step, trial, neuron) and no stored N-dimensional
state: the forward pass (trials split between threads), the small latent adjoint, then the
accumulation pass (neurons split between threads). XLA runs the same computation as dozens of
small operations per time step (:func:`~lowrank_learning.core.network.scan_network` and autodiff),
and on a CPU their launch and memory traffic, not the arithmetic, set its speed.

The kernel computes in the vectors' float type with the activations written as polynomials
(:mod:`lowrank_learning.core._network_source`: erf to XLA's float32 accuracy, tanh and exp to
rounding). ``learn_vectors`` uses it on a CPU with numba for float32 networks, the statistical
runs (about 2.5 times less CPU time than float32 autodiff, and closer to the float64 gradient),
and for float64 networks of linear units, where it has no approximation at all; float64 erf and
tanh networks keep XLA's autodiff. Tested against float64
autodiff through :func:`~lowrank_learning.core.network.network_loss`.
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
from scipy.signal import lfilter

from . import _kernels
from ._network_source import network_kernel_source
from .activations import is_linear
from .architecture import Architecture
from .batch import loss_weight

_VERSION = "1"  # bump when the generator changes (part of the cache key)
_NEURON_BLOCK = 256  # neurons per task of the accumulation pass


def _exact(arch: Architecture, dtype) -> bool:
    """Whether the kernel computes exactly what autodiff does, to rounding: float32 for every
    activation (whose polynomials reach float32 rounding), float64 for linear units only."""
    return np.dtype(dtype) == np.float32 or (np.dtype(dtype) == np.float64 and is_linear(arch.activation))


# ``auto`` takes the kernel from this many neuron-steps per epoch (N x trials x steps): below it the
# host call (about 0.2 ms) and a kernel per shape to compile cost more than XLA's small steps
_MIN_WORK = 1 << 16


def usable(arch: Architecture, dtype, work: int | None = None) -> bool:
    """Whether ``kernel="auto"`` picks the compiled kernel: float32 vectors (any units) or float64
    vectors of linear units, numba installed, JAX on the CPU, and ``work`` (neuron-steps per
    epoch; None: not checked) at least ``_MIN_WORK``."""
    return (_exact(arch, dtype) and (work is None or work >= _MIN_WORK) and _kernels.numba_available()
            and jax.default_backend() == "cpu")


def choose(kernel: str, arch: Architecture, dtype, work: int | None = None) -> bool:
    """Whether ``kernel`` ("auto", "numba", "xla"; ``auto`` reads ``$LOWRANK_KERNEL``) runs the
    compiled kernel for vectors of ``dtype`` with ``work`` neuron-steps per epoch."""
    refusal = None if _exact(arch, dtype) else (
        f"kernel='numba' needs float32 vectors (or float64 with linear units), got "
        f"{np.dtype(dtype).name} with {arch.activation} units (use kernel='xla')")
    return _kernels.pick(kernel, lambda: usable(arch, dtype, work), refusal) == "numba"


@cache
def _kernels_for(arch: Architecture, dtype: str):
    """(fwd, back, acc) for this architecture and float type (compiled once, cached on disk)."""
    src = network_kernel_source(arch.rank, arch.n_in, arch.n_out, arch.activation, dtype)
    mod = _kernels.load_source(src, "_lowrank_network_", _VERSION)
    return mod["fwd"], mod["back"], mod["acc"]


def _kappas(inputs, dt: float, dtype):
    """kappa_1..kappa_T (T, B, Din) in ``dtype`` of inputs (B, T, Din): kappa_t = (1 - dt) kappa_{t-1} + dt x_{t-1}
    from kappa_0 = 0 (a first-order recursive filter along time, computed in float64)."""
    k = lfilter([dt], [1.0, -(1.0 - dt)], np.asarray(inputs, np.float64), axis=1)
    return np.ascontiguousarray(np.swapaxes(k, 0, 1), dtype=dtype)


def host_value_and_grad(arch: Architecture, X, inputs, targets, mask, dt: float, loss_kind: str, weights=None):
    """numpy side: loss (scalar) and gradient (N, K), both in X's dtype, for vectors ``X`` (N, K)
    on a batch (inputs (B, T, Din), targets and mask (B, T, Dout)).

    Without ``weights``: the network, averages ``(1/N) sum_i``, and the gradient is dL/dX. With
    ``weights`` (N,): averages ``sum_i w_i`` (the large-N limit's quadrature nodes,
    :mod:`lowrank_learning.learn.mean_field`), and row i of the gradient is ``dL/dx_i / w_i``
    (computed without dividing, so that every node moves whatever its weight)."""
    X = np.asarray(X)
    F = X.dtype
    N, K = X.shape
    XT = np.ascontiguousarray(X.T)
    if weights is None:
        wt, c = np.full(N, 1.0 / N, F), F.type(1.0 / N)
    else:
        wt, c = np.ascontiguousarray(weights, F), F.type(1.0)
    kap = _kappas(inputs, dt, F)
    T, B = kap.shape[:2]
    R, Do = arch.rank, arch.n_out
    fwd, back, acc = _kernels_for(arch, F.name)
    step = F.type(dt)
    lam = np.empty((T, B, R), F)
    J = np.empty((T, B, R, R + Do), F)
    Y = np.empty((T, B, Do), F)
    pool, n = _kernels._pool(), _kernels._threads()
    args = (XT, wt, kap, lam, J, Y)
    _kernels._ensure_compiled(fwd, args + (0, B, step))
    cuts = [B * i // n for i in range(n + 1)]
    if n <= 1 or B == 1:
        fwd(*args, 0, B, step)
    else:
        list(pool.map(lambda i: fwd(*args, cuts[i], cuts[i + 1], step), range(n)))
    tgt = np.swapaxes(np.asarray(targets, np.float64), 0, 1)
    msk = np.swapaxes(np.asarray(mask, np.float64), 0, 1)
    err = Y - tgt
    wgt = loss_weight(loss_kind, dt, B, float(np.sum(msk)), xp=np)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run: the learner reports it
        loss = wgt * float(np.sum(msk * err * err))
        ybar = (2.0 * wgt * msk * err).astype(F)
    rbar = np.empty((T, B, R), F)
    _kernels._ensure_compiled(back, (J, ybar, rbar, step))
    back(J, ybar, rbar, step)
    Q = np.ascontiguousarray(np.concatenate([kap, lam, rbar * c, ybar * c], axis=2).reshape(T * B, -1).T)
    G = np.empty((K, N), F)
    _kernels._ensure_compiled(acc, (XT, Q, G, 0, N))
    blocks = [(i, min(N, i + _NEURON_BLOCK)) for i in range(0, N, _NEURON_BLOCK)]
    if n <= 1 or len(blocks) == 1:
        acc(XT, Q, G, 0, N)
    else:
        list(pool.map(lambda ab: acc(XT, Q, G, ab[0], ab[1]), blocks))
    return np.asarray(loss, F), np.ascontiguousarray(G.T)


def value_and_grad(arch: Architecture, X, batch, weights=None):
    """Loss and gradient of :func:`host_value_and_grad` (dL/dX without ``weights``; the rows'
    gradients divided by their weights with them) for vectors ``X`` (N, K) on ``batch``, on the
    host through ``jax.pure_callback`` (usable inside ``jit``, ``scan`` and ``vmap``, which calls
    it member by member). The batch's ``dt`` and loss kind must be static (Python values)."""
    return arrays_value_and_grad(arch, X, batch.inputs, batch.targets, batch.mask, batch.dt, batch.loss, weights)


def arrays_value_and_grad(arch: Architecture, X, inputs, targets, mask, dt: float, loss_kind: str, weights=None):
    """:func:`value_and_grad` on a batch given as arrays (inputs (B, T, Din), targets and mask
    (B, T, Dout)) with a static ``dt`` and loss kind."""
    X = jnp.asarray(X)
    out = (jax.ShapeDtypeStruct(X.shape[:-2], X.dtype), jax.ShapeDtypeStruct(X.shape, X.dtype))
    dt = float(dt)
    operands = (X, inputs, targets, mask) + (() if weights is None else (jnp.asarray(weights, X.dtype),))

    def host(X_, x, y, m, *w_):
        return host_value_and_grad(arch, X_, x, y, m, dt, loss_kind, w_[0] if w_ else None)

    return jax.pure_callback(host, out, *operands, vmap_method="sequential")
