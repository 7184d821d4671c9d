"""The loss of the reduced model and its gradient with respect to Sigma, by a hand-written adjoint.

:func:`ensemble_value_and_grad` is the engine of the overlap learners: for a stack of overlap
matrices it returns each member's loss and ``dL/dSigma``, from the compiled host kernel
(:mod:`lowrank_learning.core._kernels`) or from the XLA version below.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels
from .activations import gain, is_linear
from .architecture import Architecture
from .batch import Batch, loss_weight
from .latent import _UNROLL, loss_blocks, sigma_blocks

# ------------------------------------------------------------------ fused loss with its adjoint
# The loss of the reduced model and its gradient with respect to Sigma, written out by hand.
# Autodiff through ``run_latent`` differentiates the whole recurrence step by step; here only
# the nonlinear forward recurrence of lambda runs as a sequential scan, everything else
# (outputs, the loss, the per-step coefficients of the backward pass and the sums over time and
# trials that make dL/dSigma) is vectorised over all time steps at once. The adjoint of lambda
# obeys a *linear* recurrence, a_s = u_s + M_s^T a_{s+1}, which is a cheap reverse scan.
#
# Notation (book/theory.md, section 3), states s = 0..T (lambda_0 = kappa_0 = 0):
#   Delta_s = k_s^T MM k_s + 2 k_s^T MU l_s + l_s^T UU l_s,    g_s = Gain(Delta_s)
#   q_s     = VM k_s + VU l_s,      l_{s+1} = (1 - dt) l_s + dt q_s g_s
#   o_s     = ZM k_s + ZU l_s,      y_{s-1} = o_s g_s       (readout after the update)
# With e_{s-1} = dL/dy_{s-1}, G'_s = Gain'(Delta_s), D_s = dDelta_s/dl_s = 2 MU^T k_s + (UU + UU^T) l_s:
#   u_s = g_s ZU^T e_{s-1} + (e_{s-1} . o_s) G'_s D_s
#   M_s = dl_{s+1}/dl_s = (1 - dt) I + dt (g_s VU + q_s (G'_s D_s)^T)
#   a_s = dL/dl_s = u_s + M_s^T a_{s+1},   a_{T+1} = 0
#   gamma_s = (e_{s-1} . o_s) G'_s [s >= 1] + dt (a_{s+1} . q_s) G'_s [s <= T-1]
# and the block gradients are sums over s and trials:
#   dZM = g_s e_{s-1} k_s^T, dZU = g_s e_{s-1} l_s^T, dVM = dt g_s a_{s+1} k_s^T,
#   dVU = dt g_s a_{s+1} l_s^T, dMM = gamma_s k_s k_s^T, dMU = 2 gamma_s k_s l_s^T,
#   dUU = gamma_s l_s l_s^T.


def _rsqrt(v):
    """``1/sqrt(v)`` for ``v >= 1``. In float32 by three Newton steps from the classic bit-level
    first guess (relative error < 2e-7, about one unit in the last place): XLA's own rsqrt is
    not vectorised on CPU and cost twice the whole recurrence step. float64 uses 1/sqrt."""
    if v.dtype != jnp.float32:
        return 1.0 / jnp.sqrt(v)
    i = jax.lax.bitcast_convert_type(v, jnp.int32)
    y = jax.lax.bitcast_convert_type(jnp.int32(0x5F3759DF) - (i >> 1), jnp.float32)
    for _ in range(3):
        y = y * (1.5 - 0.5 * v * y * y)
    return y


def _gain_and_slope(act, delta):
    """``Gain(delta)`` and ``Gain'(delta)`` elementwise (``delta >= 0``)."""
    if is_linear(act):
        return jnp.ones_like(delta), jnp.zeros_like(delta)
    if act == "erf":
        g = _rsqrt(1.0 + (jnp.pi / 2.0) * delta)
        return g, (-jnp.pi / 4.0) * g * g * g
    return jax.jvp(lambda d: gain(act, d), (delta,), (jnp.ones_like(delta),))


def _mv(A, x):
    """``A @ x`` on component lists: ``A[i][j]`` and ``x[j]`` are arrays (n,) (or numbers)."""
    return [sum(A[i][j] * x[j] for j in range(len(x))) for i in range(len(A))]


def _dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def ensemble_value_and_grad(arch: Architecture, Sigma, inputs, targets, mask, dt: float, loss_kind: str,
                            kernel: str = "auto", row=None):
    """Losses and ``dL/dSigma`` of an ensemble of reduced models, each on its own batch.

    Parameters
    ----------
    Sigma : array (E, K, K)
    inputs : array (E, B, T, Din); targets, mask : arrays (E, B, T, Dout)
    dt : float; loss_kind : {"sum_time", "masked_mean"}
    kernel : {"auto", "numba", "xla"}
        ``numba``: one compiled CPU loop nest over trials and time (:mod:`lowrank_learning.core._kernels`,
        linear and erf units, called through ``jax.pure_callback``); ``xla``: the JAX version
        below (any activation, any device). ``auto`` (default) takes the environment variable
        ``LOWRANK_KERNEL`` if set, else numba on a CPU backend when it applies (erf units at any
        size; linear units from 2^17 trial-steps E*B*T, below which XLA's cheap linear step
        beats the host call), else XLA.
    row : None or int array (E,)
        Members that share trials: ``inputs``, ``targets`` and ``mask`` then hold G distinct
        batches (G, B, T, .) and member ``e`` trains on batch ``row[e]`` (the numba kernel reads
        them in place; the XLA version gathers per-member copies).

    Returns
    -------
    loss : (E,), G : (E, K, K), member ``e``'s ``dL_e/dSigma_e`` (entries independent).

    Both kernels compute the same equations (tested against each other and against autodiff
    through :func:`run_latent`). In the XLA version the E*B trials lie side by side in one wide array, and the work streams through time
    twice: a forward scan stores kappa and lambda, a reverse scan recomputes the outputs, the
    loss and the adjoint (see the equations above) and accumulates each trial's contribution to
    the block gradients in its carry. Every quantity is kept as a list of its components, each
    an array over the E*B trials, so that each step is one fused elementwise loop (small matrix
    products written out): on a CPU the number of kernels per step and the memory traffic, not
    the arithmetic, bound this computation.
    """
    E = Sigma.shape[0]
    if _kernels.choose(kernel, arch, work=E * int(np.prod(inputs.shape[1:3]))) == "numba":
        return _kernels.value_and_grad(arch, Sigma, inputs, targets, mask, dt, loss_kind, row)
    if row is not None:
        inputs, targets, mask = (jnp.asarray(a)[jnp.asarray(row)] for a in (inputs, targets, mask))
    act = arch.activation
    linear = is_linear(act)
    dtype = Sigma.dtype
    E, B, T = inputs.shape[:3]
    n = E * B
    Din, R = arch.n_in, arch.rank

    def comps(a):  # (E, B, T, D) -> D arrays (T, n)
        a = jnp.asarray(a, dtype)
        return [jnp.swapaxes(a[..., d].reshape(n, T), 0, 1) for d in range(a.shape[-1])]

    x, yt, mk = comps(inputs), comps(targets), comps(mask)
    # per-trial copies of each block entry, (n,)
    blk = {k: [[jnp.repeat(v[:, i, j], B) for j in range(v.shape[2])] for i in range(v.shape[1])]
           for k, v in sigma_blocks(arch, Sigma).items()}
    tr = lambda A: [list(r) for r in zip(*A)]  # noqa: E731
    VUt, ZUt = tr(blk["VU"]), tr(blk["ZU"])
    if not linear:
        MUt = tr(blk["MU"])
        UUs = [[blk["UU"][i][j] + blk["UU"][j][i] for j in range(R)] for i in range(R)]
    decay = 1.0 - dt

    def gains(k, lam):  # Gain, Gain' and MU^T k
        if linear:
            return 1.0, None, None
        Qk = _mv(MUt, k)
        delta = _dot(_mv(blk["MM"], k), k) + _dot([2.0 * a + b for a, b in zip(Qk, _mv(blk["UU"], lam))], lam)
        g, gp = _gain_and_slope(act, jnp.maximum(delta, 0.0))
        return g, gp, Qk

    # ---- forward: kappa and lambda (states 1..T)
    def fstep(carry, x_t):
        k, lam = carry
        g = gains(k, lam)[0]
        drive = [a + b for a, b in zip(_mv(blk["VM"], k), _mv(blk["VU"], lam))]
        k_new = [decay * a + dt * b for a, b in zip(k, x_t)]
        lam_new = [decay * a + (dt * g) * b for a, b in zip(lam, drive)]
        return (k_new, lam_new), (k_new, lam_new)

    zero = jnp.zeros((n,), dtype)
    _, (ks, ls) = jax.lax.scan(fstep, ([zero] * Din, [zero] * R), x, unroll=_UNROLL)

    # ---- reverse: outputs, loss, adjoint a_s, and the per-trial gradient sums (states T..1)
    names = ["ZM", "ZU", "VM", "VU"] + ([] if linear else ["MM", "MU", "UU"])

    def outer(w, a, b):
        return [[(ai * bj) if w is None else w * ai * bj for bj in b] for ai in a]

    def bstep(carry, xs):
        a_next, acc, sq, msum = carry
        k, lam, y_t, m_t = xs
        g, gp, Qk = gains(k, lam)
        o = [p + q for p, q in zip(_mv(blk["ZM"], k), _mv(blk["ZU"], lam))]
        r = [oi * g - yi for oi, yi in zip(o, y_t)]
        sq = sq + sum(mi * ri * ri for mi, ri in zip(m_t, r))
        msum = msum + sum(m_t)
        e = [2.0 * mi * ri for mi, ri in zip(m_t, r)]  # dL/dy at unit loss weight (scaled at the end)
        q = [p + qq for p, qq in zip(_mv(blk["VM"], k), _mv(blk["VU"], lam))]
        ge = [g * ei for ei in e]
        ga = [(dt * g) * ai for ai in a_next]
        new = {"ZM": outer(None, ge, k), "ZU": outer(None, ge, lam),
               "VM": outer(None, ga, k), "VU": outer(None, ga, lam)}
        a = [p + decay * an + (dt * g) * v for p, an, v in zip(_mv(ZUt, ge), a_next, _mv(VUt, a_next))]
        if not linear:
            D = [2.0 * p + v for p, v in zip(Qk, _mv(UUs, lam))]
            gamma = gp * (_dot(e, o) + dt * _dot(a_next, q))
            a = [ai + gamma * di for ai, di in zip(a, D)]
            new["MM"] = outer(gamma, k, k)
            new["MU"] = outer(2.0 * gamma, k, lam)
            new["UU"] = outer(gamma, lam, lam)
        acc = {key: [[p + v for p, v in zip(ra, rn)] for ra, rn in zip(acc[key], new[key])] for key in names}
        return (a, acc, sq, msum), None

    acc0 = {key: [[zero] * len(blk[key][0]) for _ in blk[key]] for key in names}
    (_, acc, sq, msum), _ = jax.lax.scan(bstep, ([zero] * R, acc0, zero, zero), (ks, ls, yt, mk),
                                         reverse=True, unroll=_UNROLL)
    per_member = lambda v: jnp.sum(v.reshape(E, B), axis=1)  # noqa: E731
    sq = per_member(sq)
    w = loss_weight(loss_kind, dt, B, per_member(msum).astype(dtype))
    s = arch.slices
    G = jnp.zeros_like(Sigma)
    for a_, b_ in loss_blocks(arch):
        block = jnp.stack([jnp.stack([per_member(v) for v in row], axis=-1) for row in acc[a_ + b_]], axis=-2)
        G = G.at[:, s[a_], s[b_]].set(w[:, None, None] * block)
    return sq * w, G


def overlap_value_and_grad(arch: Architecture, Sigma, batch: Batch, kernel: str = "auto"):
    """Loss of the reduced model and ``G = dL/dSigma`` (K, K), by the hand-written adjoint.

    Equal to ``jax.value_and_grad(overlap_loss, argnums=1)`` (tested to rounding) and several
    times faster: :func:`ensemble_value_and_grad` with one member (``kernel`` as there). Works
    under ``jit`` and ``vmap``.

    Parameters
    ----------
    Sigma : array (K, K)
    batch : Batch with inputs (B, T, Din), targets and mask (B, T, Dout)

    Returns
    -------
    loss : scalar, G : array (K, K) (entries of Sigma treated as independent; only the
    blocks the loss reads are non-zero).
    """
    Sigma = jnp.asarray(Sigma)
    loss, G = ensemble_value_and_grad(arch, Sigma[None], jnp.asarray(batch.inputs)[None],
                                      jnp.asarray(batch.targets)[None], jnp.asarray(batch.mask)[None],
                                      batch.dt, batch.loss, kernel)
    return loss[0], G[0]
