"""The latent (activity) reduction and the mean-field loss in overlap space (book/theory.md, section 3).

Since h_0 = 0 and every update lies in span(M, U), ``h_t = M kappa_t + U lambda_t`` exactly:

    kappa_{t+1}  = kappa_t  + dt (-kappa_t + x_t)
    lambda_{t+1} = lambda_t + dt (-lambda_t + V^T phi(h_t) / N)

For linear units ``a^T phi(h)/N = Sigma_aM kappa + Sigma_aU lambda`` exactly; for erf/tanh the
large-N Gaussian limit multiplies it by ``Gain(Delta)`` with
``Delta = [kappa; lambda]^T Sigma_[MU][MU] [kappa; lambda]``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .activations import gain, is_linear
from .architecture import Architecture
from .batch import Batch, loss_value

# Every time loop (here, in the full network and in the adjoint) runs one step per iteration:
# unrolling several steps enlarges the compiled loop body and slows the backward pass on CPU.
_UNROLL = 1


def loss_blocks(arch: Architecture) -> tuple[tuple[str, str], ...]:
    """The blocks of Sigma read by the reduced model: :attr:`Architecture.loss_blocks`."""
    return arch.loss_blocks


def sigma_blocks(arch: Architecture, Sigma) -> dict:
    s = arch.slices
    return {a + b: Sigma[..., s[a], s[b]] for a, b in loss_blocks(arch)}


def latent_inputs(inputs, dt: float):
    """The input coordinate ``kappa_t`` of ``h_t = M kappa_t + U lambda_t``, for ``t = 0..T``
    (shape ``(B, T+1, Din)``): the input low-pass filtered, ``kappa_{t+1} = kappa_t + dt (-kappa_t + x_t)``."""
    inputs = jnp.asarray(inputs)
    decay = 1.0 - dt

    def step(k, x_t):
        k_new = decay * k + dt * x_t
        return k_new, k_new

    k0 = jnp.zeros(inputs.shape[::2], dtype=inputs.dtype)
    _, ks = jax.lax.scan(step, k0, jnp.swapaxes(inputs, 0, 1), unroll=_UNROLL)
    return jnp.concatenate([k0[:, None, :], jnp.swapaxes(ks, 0, 1)], axis=1)


def _matmul(x, A):
    """``x @ A`` per batch element: ``x`` (B, I), ``A`` (B, I, J) -> (B, J).

    Written as a sum of broadcast products for small I so that XLA fuses it with the
    surrounding elementwise work (dot kernels on 1-4 wide operands cost more in launch
    overhead than in arithmetic)."""
    if A.shape[-2] > 4:
        return jnp.einsum("bi,bij->bj", x, A)
    out = x[..., 0:1] * A[..., 0, :]
    for i in range(1, A.shape[-2]):
        out = out + x[..., i : i + 1] * A[..., i, :]
    return out


def _quad(x, A, y):
    """``x^T A y`` over the last axis, shape ``x.shape[:-1]``."""
    return jnp.sum(_matmul(x, A) * y, axis=-1)


def run_latent(arch: Architecture, Sigma, inputs, dt: float, return_latents: bool = False):
    """Outputs of the reduced model (exact for linear units, mean-field for erf/tanh).

    Parameters
    ----------
    Sigma : array (K, K)
        Overlap matrix ``X^T X / N``.
    inputs : array (B, T, Din)

    Returns
    -------
    outputs : array (B, T, Dout)
    (kappa, lambda) : arrays (B, T+1, Din), (B, T+1, R), only if ``return_latents``
    """
    Sigma = jnp.asarray(Sigma)
    inputs = jnp.asarray(inputs, dtype=Sigma.dtype)
    blk = sigma_blocks(arch, Sigma)
    act = arch.activation
    linear = is_linear(act)
    kappa = latent_inputs(inputs, dt)  # (B, T+1, Din)
    B, R = inputs.shape[0], arch.rank
    # One copy of each block per trial: inside the time loop the gradient with respect to the
    # blocks then accumulates elementwise, and the sum over trials happens once, after the loop.
    blk = {k: jnp.broadcast_to(v, (B,) + v.shape) for k, v in blk.items()}
    T_ = lambda A: jnp.swapaxes(A, -1, -2)  # noqa: E731

    def g(k, lam):  # Gain(Delta) of the state (kappa, lambda), shape (B, 1)
        if linear:
            return jnp.ones((k.shape[0], 1), dtype=Sigma.dtype)
        delta = _quad(k, blk["MM"], k) + 2.0 * _quad(k, blk["MU"], lam) + _quad(lam, blk["UU"], lam)
        return gain(act, jnp.maximum(delta, 0.0))[:, None]

    # The carry holds Gain(Delta_t), so that each step evaluates the gain once, at the new state.
    def step(carry, ks):
        lam, g_t = carry
        k_t, k_next = ks
        drive = (_matmul(k_t, T_(blk["VM"])) + _matmul(lam, T_(blk["VU"]))) * g_t
        lam_new = lam + dt * (-lam + drive)
        g_new = g(k_next, lam_new)
        y = (_matmul(k_next, T_(blk["ZM"])) + _matmul(lam_new, T_(blk["ZU"]))) * g_new
        return (lam_new, g_new), (y, lam_new)

    lam0 = jnp.zeros((B, R), dtype=Sigma.dtype)
    ks = (jnp.swapaxes(kappa[:, :-1], 0, 1), jnp.swapaxes(kappa[:, 1:], 0, 1))
    _, (y, lams) = jax.lax.scan(step, (lam0, g(kappa[:, 0], lam0)), ks, unroll=_UNROLL)
    y = jnp.swapaxes(y, 0, 1)
    if return_latents:
        lam = jnp.concatenate([lam0[:, None], jnp.swapaxes(lams, 0, 1)], axis=1)
        return y, (kappa, lam)
    return y


def overlap_loss(arch: Architecture, Sigma, batch: Batch):
    """Loss of the reduced model as a function of the overlap matrix ``Sigma`` (K, K) (scalar).

    Exact for linear units; the large-N Gaussian (mean-field) loss for erf/tanh.
    """
    return loss_value(run_latent(arch, Sigma, batch.inputs, batch.dt), batch)


@partial(jax.jit, static_argnums=0)
def _overlap_gradient(arch, Sigma, batch):
    return jax.grad(overlap_loss, argnums=1)(arch, Sigma, batch)


def overlap_gradient(arch: Architecture, Sigma, batch: Batch):
    """``G = dL/dSigma`` with the K^2 entries of Sigma treated as independent (shape (K, K)).

    ``batch`` is a fixed :class:`Batch` (compiled once per architecture and batch shape).
    """
    return _overlap_gradient(arch, jnp.asarray(Sigma), batch)
