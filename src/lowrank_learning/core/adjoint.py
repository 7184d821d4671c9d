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
def _rsqrt(v):
    """``1/sqrt(v)`` for ``v >= 1``. In float32 by three Newton steps from the classic bit-level
    first guess (relative error < 2e-7, about one unit in the last place), since XLA's own rsqrt
    is not vectorised on CPU and would dominate the recurrence step. float64 uses 1/sqrt."""
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
        (:func:`_xla_value_and_grad`, any activation, any device). ``auto`` (default) takes the
        environment variable ``LOWRANK_KERNEL`` if set, else numba on a CPU backend when it
        applies (erf units at any size; linear units from 2^17 trial-steps E*B*T, below which
        XLA's cheap linear step beats the host call), else XLA.
    row : None or int array (E,)
        Members that share trials: ``inputs``, ``targets`` and ``mask`` then hold G distinct
        batches (G, B, T, .) and member ``e`` trains on batch ``row[e]`` (the numba kernel reads
        them in place; the XLA version gathers per-member copies).

    Returns
    -------
    loss : (E,), G : (E, K, K), member ``e``'s ``dL_e/dSigma_e`` (entries independent).

    Both kernels compute the same equations (see the comment above :func:`_xla_value_and_grad`;
    tested against each other and against autodiff through :func:`run_latent`).
    """
    E = Sigma.shape[0]
    if _kernels.choose(kernel, arch, work=E * int(np.prod(inputs.shape[1:3]))) == "numba":
        return _kernels.value_and_grad(arch, Sigma, inputs, targets, mask, dt, loss_kind, row)
    if row is not None:
        inputs, targets, mask = (jnp.asarray(a)[jnp.asarray(row)] for a in (inputs, targets, mask))
    return _xla_value_and_grad(arch, Sigma, inputs, targets, mask, dt, loss_kind)


# The loss of the reduced model and its gradient with respect to Sigma, written out by hand
# (book/theory.md, section 3: kappa the input coordinates, lambda the recurrent ones). A forward
# scan runs the recurrence and stores kappa and lambda; the adjoint of lambda obeys a *linear*
# recurrence, a_s = u_s + M_s^T a_{s+1}, run as a reverse scan that also recomputes the outputs
# and the loss and sums each trial's contribution to the block gradients.
#
# States s = 0..T (lambda_0 = kappa_0 = 0):
#   Delta_s = kappa_s^T MM kappa_s + 2 kappa_s^T MU lambda_s + lambda_s^T UU lambda_s,  g_s = Gain(Delta_s)
#   q_s     = VM kappa_s + VU lambda_s,    lambda_{s+1} = (1 - dt) lambda_s + dt q_s g_s
#   o_s     = ZM kappa_s + ZU lambda_s,    y_{s-1} = o_s g_s       (readout after the update)
# With e_{s-1} = dL/dy_{s-1}, G'_s = Gain'(Delta_s) and
# D_s = dDelta_s/dlambda_s = 2 MU^T kappa_s + (UU + UU^T) lambda_s:
#   u_s = g_s ZU^T e_{s-1} + (e_{s-1} . o_s) G'_s D_s
#   M_s = dlambda_{s+1}/dlambda_s = (1 - dt) I + dt (g_s VU + q_s (G'_s D_s)^T)
#   a_s = dL/dlambda_s = u_s + M_s^T a_{s+1},   a_{T+1} = 0
#   gamma_s = (e_{s-1} . o_s) G'_s [s >= 1] + dt (a_{s+1} . q_s) G'_s [s <= T-1]
# and the block gradients are sums over s and trials:
#   dZM = g_s e_{s-1} kappa_s^T,  dZU = g_s e_{s-1} lambda_s^T,  dVM = dt g_s a_{s+1} kappa_s^T,
#   dVU = dt g_s a_{s+1} lambda_s^T,  dMM = gamma_s kappa_s kappa_s^T,  dMU = 2 gamma_s kappa_s lambda_s^T,
#   dUU = gamma_s lambda_s lambda_s^T.
def _xla_value_and_grad(arch: Architecture, Sigma, inputs, targets, mask, dt: float, loss_kind: str):
    """The XLA version of :func:`ensemble_value_and_grad` (one batch per member, ``row`` applied).

    The E*B trials lie side by side in one wide array, and the work streams through time twice:
    a forward scan (:meth:`_Steps.forward`) stores kappa and lambda, a reverse scan
    (:meth:`_Steps.reverse`) recomputes the outputs, the loss and the adjoint and accumulates
    each trial's contribution to the block gradients in its carry; :func:`_assemble` sums them
    per member into the losses and G.
    """
    dtype = Sigma.dtype
    E, B = inputs.shape[:2]
    x, yt, mk = (_components(a, dtype) for a in (inputs, targets, mask))
    steps = _Steps(arch, Sigma, B, dt)
    zero = jnp.zeros((E * B,), dtype)
    _, (kap, lam) = jax.lax.scan(steps.forward, ([zero] * arch.n_in, [zero] * arch.rank), x, unroll=_UNROLL)
    acc0 = {key: [[zero] * len(steps.blk[key][0]) for _ in steps.blk[key]] for key in steps.names}
    (_, acc, sq, msum), _ = jax.lax.scan(steps.reverse, ([zero] * arch.rank, acc0, zero, zero), (kap, lam, yt, mk),
                                         reverse=True, unroll=_UNROLL)
    return _assemble(arch, Sigma, acc, sq, msum, B, dt, loss_kind)


def _components(a, dtype):
    """(E, B, T, D) -> D arrays (T, E*B): each component over the E*B trials, time first."""
    a = jnp.asarray(a, dtype)
    E, B, T = a.shape[:3]
    return [jnp.swapaxes(a[..., d].reshape(E * B, T), 0, 1) for d in range(a.shape[-1])]


def _transpose(A):
    """The transpose of a matrix of components."""
    return [list(r) for r in zip(*A)]


def _outer(w, a, b):
    """``w a b^T`` on component lists (``w`` None: ``a b^T``)."""
    return [[(ai * bj) if w is None else w * ai * bj for bj in b] for ai in a]


class _Steps:
    """One step of the forward and of the reverse scan of :func:`_xla_value_and_grad`.

    Every quantity is a list of its components, each an array over the E*B trials, so that each
    step is one fused elementwise loop (small matrix products written out): on a CPU the number
    of kernels per step and the memory traffic, not the arithmetic, bound this computation.
    ``blk[name][i][j]`` is entry (i, j) of block ``name`` of Sigma, one copy per trial.
    """

    def __init__(self, arch: Architecture, Sigma, B: int, dt: float):
        self.act = arch.activation
        self.linear = is_linear(self.act)
        R = arch.rank
        self.blk = blk = {k: [[jnp.repeat(v[:, i, j], B) for j in range(v.shape[2])] for i in range(v.shape[1])]
                          for k, v in sigma_blocks(arch, Sigma).items()}
        self.VUt, self.ZUt = _transpose(blk["VU"]), _transpose(blk["ZU"])
        if not self.linear:
            self.MUt = _transpose(blk["MU"])
            self.UUs = [[blk["UU"][i][j] + blk["UU"][j][i] for j in range(R)] for i in range(R)]
        self.dt, self.decay = dt, 1.0 - dt
        # the blocks with a gradient: the readout and the drive, and for nonlinear units the gain's
        self.names = ["ZM", "ZU", "VM", "VU"] + ([] if self.linear else ["MM", "MU", "UU"])

    def gains(self, kap, lam):
        """Gain, Gain' and MU^T kappa at the state (kappa, lambda)."""
        if self.linear:
            return 1.0, None, None
        blk = self.blk
        Qk = _mv(self.MUt, kap)
        delta = _dot(_mv(blk["MM"], kap), kap) + _dot([2.0 * a + b for a, b in zip(Qk, _mv(blk["UU"], lam))], lam)
        g, gp = _gain_and_slope(self.act, jnp.maximum(delta, 0.0))
        return g, gp, Qk

    def forward(self, carry, x_t):
        """kappa and lambda one step on (states 1..T)."""
        kap, lam = carry
        blk, dt, decay = self.blk, self.dt, self.decay
        g = self.gains(kap, lam)[0]
        drive = [a + b for a, b in zip(_mv(blk["VM"], kap), _mv(blk["VU"], lam))]
        kap_new = [decay * a + dt * b for a, b in zip(kap, x_t)]
        lam_new = [decay * a + (dt * g) * b for a, b in zip(lam, drive)]
        return (kap_new, lam_new), (kap_new, lam_new)

    def reverse(self, carry, xs):
        """One step back (states T..1): the outputs, the loss sums, the adjoint a_s and the
        per-trial gradient sums."""
        a_next, acc, sq, msum = carry
        kap, lam, y_t, m_t = xs
        blk, dt, decay = self.blk, self.dt, self.decay
        g, gp, Qk = self.gains(kap, lam)
        o = [p + q for p, q in zip(_mv(blk["ZM"], kap), _mv(blk["ZU"], lam))]
        r = [oi * g - yi for oi, yi in zip(o, y_t)]
        sq = sq + sum(mi * ri * ri for mi, ri in zip(m_t, r))
        msum = msum + sum(m_t)
        e = [2.0 * mi * ri for mi, ri in zip(m_t, r)]  # dL/dy at unit loss weight (scaled at the end)
        q = [p + qq for p, qq in zip(_mv(blk["VM"], kap), _mv(blk["VU"], lam))]
        ge = [g * ei for ei in e]
        ga = [(dt * g) * ai for ai in a_next]
        new = {"ZM": _outer(None, ge, kap), "ZU": _outer(None, ge, lam),
               "VM": _outer(None, ga, kap), "VU": _outer(None, ga, lam)}
        a = [p + decay * an + (dt * g) * v for p, an, v in zip(_mv(self.ZUt, ge), a_next, _mv(self.VUt, a_next))]
        if not self.linear:
            D = [2.0 * p + v for p, v in zip(Qk, _mv(self.UUs, lam))]
            gamma = gp * (_dot(e, o) + dt * _dot(a_next, q))
            a = [ai + gamma * di for ai, di in zip(a, D)]
            new["MM"] = _outer(gamma, kap, kap)
            new["MU"] = _outer(2.0 * gamma, kap, lam)
            new["UU"] = _outer(gamma, lam, lam)
        acc = {key: [[p + v for p, v in zip(ra, rn)] for ra, rn in zip(acc[key], new[key])] for key in self.names}
        return (a, acc, sq, msum), None


def _assemble(arch: Architecture, Sigma, acc, sq, msum, B: int, dt: float, loss_kind: str):
    """Each member's loss and G from the per-trial sums: summed over the member's B trials and
    scaled by the loss weight; the blocks the loss does not read stay zero."""
    E = Sigma.shape[0]

    def per_member(v):
        return jnp.sum(v.reshape(E, B), axis=1)

    sq = per_member(sq)
    w = loss_weight(loss_kind, dt, B, per_member(msum).astype(Sigma.dtype))
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
