"""The full N-dimensional low-rank RNN (book/theory.md, section 1).

    h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t),   h_0 = 0
    y_t     = Z^T phi(h_{t+1}) / N
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_instance, check_positive, check_vectors
from .activations import phi
from .architecture import Architecture
from .batch import Batch, loss_value
from .errors import InvalidParameterError
from .latent import _UNROLL, latent_inputs


def split_vectors(arch: Architecture, X):
    """Split ``X`` (N, K) into ``(M, U, V, Z)`` of shapes (N, Din), (N, R), (N, R), (N, Dout)."""
    s = arch.slices
    return X[:, s["M"]], X[:, s["U"]], X[:, s["V"]], X[:, s["Z"]]


def network_step(arch: Architecture, vectors, h, x_t, dt: float, kick=None):
    """One Euler step of the network on the N-dimensional state.

    :func:`scan_network` uses it with noise (which leaves the span of M and U) and for small
    problems; otherwise it runs the same recursion in that span (tested against this step).

    ``h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t) [+ kick]``,
    ``y_t = Z^T phi(h_{t+1}) / N``.

    Parameters
    ----------
    vectors : tuple ``(M, U, V, Z)`` of arrays (N, Din), (N, R), (N, R), (N, Dout)
        From :func:`split_vectors`.
    h : array (B, N)
        Hidden state ``h_t``.
    x_t : array (B, Din)
        Input at step t.
    dt : float
    kick : array (B, N), optional
        Added to the state after the Euler step (noise); ``None`` adds nothing (and costs nothing).

    Returns
    -------
    h_new : array (B, N);  y : array (B, Dout)
    """
    M, U, V, Z = vectors
    N = h.shape[-1]
    rec = phi(arch.activation, h) @ V / N  # (B, R)
    h_new = h + dt * (-h + rec @ U.T + x_t @ M.T)
    if kick is not None:
        h_new = h_new + kick
    y = phi(arch.activation, h_new) @ Z / N
    return h_new, y


def _scan_span(arch: Architecture, X, inputs, dt: float, return_states: bool):
    """Noise-free simulation in the span of M and U (the exact identity of book/theory.md, section 3).

    From ``h_0 = 0`` the state stays ``h_t = M kappa_t + U lambda_t``, with the input coordinate
    ``kappa_t`` of :func:`~lowrank_learning.core.latent.latent_inputs` and the recurrent
    coordinate ``lambda_{t+1} = lambda_t + dt (-lambda_t + r_t)``, ``r_t = V^T phi(h_t) / N``.
    The scan carries only ``(lambda_t, r_t)`` (B, R) and evaluates ``phi`` once per step for
    both the recurrence and the output. Each step is rematerialised (``jax.checkpoint``), so
    reverse mode stores the (B, R) carries instead of the (B, T, N) states and recomputes ``h``
    on the way back: at large N the gradient is bound by arithmetic, not by memory traffic.
    Same function as the Euler recursion on ``h``; the rounding differs at machine precision.
    """
    M, U, V, Z = split_vectors(arch, X)
    N, R = X.shape[0], arch.rank
    kappas = jnp.swapaxes(latent_inputs(inputs, dt)[:, 1:], 0, 1)  # kappa_{t+1}, (T, B, Din)
    readout = jnp.concatenate([V, Z], axis=1) / N           # (N, R + Dout)
    r0 = jnp.broadcast_to(phi(arch.activation, jnp.zeros((), X.dtype)) * jnp.sum(V, axis=0) / N,
                          (inputs.shape[0], R))

    @jax.checkpoint
    def step(carry, kappa_new):
        lam, r = carry
        lam_new = lam + dt * (-lam + r)
        out = phi(arch.activation, lam_new @ U.T + kappa_new @ M.T) @ readout   # (B, R + Dout)
        return (lam_new, out[:, :R]), (out[:, R:], lam_new)

    _, (ys, lams) = jax.lax.scan(step, (jnp.zeros_like(r0), r0), kappas, unroll=_UNROLL)
    outputs = jnp.swapaxes(ys, 0, 1)
    if not return_states:
        return outputs
    states = jnp.einsum("tbr,nr->btn", lams, U) + jnp.einsum("tbi,ni->btn", kappas, M)
    return outputs, states


# The span simulation stores (B, R) carries instead of the (B, T, N) states and rematerialises
# each step: it pays off when the states are large, and below this many states (B x T x N) the
# direct recursion on h is as fast.
_SPAN_MIN_STATES = 1 << 22


def scan_network(arch: Architecture, X, inputs, dt: float, return_states: bool = False,
                 noise=None):
    """Run :func:`network_step` over time from ``h_0 = 0`` (traceable; no input checks).

    Without noise and with at least ``_SPAN_MIN_STATES`` states (B x T x N), the network is
    simulated in the span of M and U (:func:`_scan_span`: same equations, (B, R) carries, one
    ``phi`` per step); otherwise :func:`network_step` runs on the N-dimensional state.

    Parameters
    ----------
    X : array (N, K);  inputs : array (B, T, Din)
    noise : callable ``(h, xi_t) -> kick`` and array ``xi`` (T, B, N), as a pair; optional
        The kick added at step t is ``noise[0](h_t, noise[1][t])``.

    Returns
    -------
    outputs : array (B, T, Dout);  states : array (B, T, N), only if ``return_states``
    """
    if noise is None and inputs.shape[0] * inputs.shape[1] * X.shape[0] >= _SPAN_MIN_STATES:
        return _scan_span(arch, X, inputs, dt, return_states)
    vectors = split_vectors(arch, X)
    h0 = jnp.zeros((inputs.shape[0], X.shape[0]), dtype=X.dtype)
    xs = jnp.swapaxes(inputs, 0, 1)
    if noise is None:
        kick_fn, xi = (lambda h, _: None), jnp.zeros((xs.shape[0], 0), X.dtype)
    else:
        kick_fn, xi = noise

    def step(h, args):
        x_t, xi_t = args
        h_new, y = network_step(arch, vectors, h, x_t, dt, kick=kick_fn(h, xi_t))
        return h_new, ((y, h_new) if return_states else y)

    _, out = jax.lax.scan(step, h0, (xs, xi), unroll=_UNROLL)
    if return_states:
        return jnp.swapaxes(out[0], 0, 1), jnp.swapaxes(out[1], 0, 1)
    return jnp.swapaxes(out, 0, 1)


def check_network_inputs(arch: Architecture, X, inputs, dt, where: str = "run_network") -> None:
    """Raise :class:`InvalidParameterError` unless ``X`` is (N, K), ``inputs`` is (B, T, n_in) and
    ``dt`` > 0. Only static shapes are read (free under ``jit``); a traced ``dt`` is not checked."""
    check_instance(f"{where}: arch", arch, Architecture)
    check_vectors(X, arch.K, arch.vector_names, f"{where}: X", finite=False)
    if getattr(inputs, "ndim", None) != 3 or inputs.shape[2] != arch.n_in:
        raise InvalidParameterError(
            f"{where}: inputs must have shape (B, T, n_in={arch.n_in}), got {getattr(inputs, 'shape', None)}")
    if isinstance(dt, (int, float, np.integer, np.floating)):
        check_positive(f"{where}: dt", dt)


def run_network(arch: Architecture, X, inputs, dt: float, return_states: bool = False):
    """Simulate the full network.

    Parameters
    ----------
    arch : Architecture
    X : array (N, K)
        Connectivity vectors, columns in the order ``arch.vector_names``.
    inputs : array (B, T, Din)
    dt : float
    return_states : bool
        Also return the hidden states ``h_{t+1}``.

    Returns
    -------
    outputs : array (B, T, Dout)
    states : array (B, T, N), only if ``return_states``
    """
    X = jnp.asarray(X)
    inputs = jnp.asarray(inputs, dtype=X.dtype)
    check_network_inputs(arch, X, inputs, dt)
    return scan_network(arch, X, inputs, dt, return_states)


def network_loss(arch: Architecture, X, batch: Batch):
    """Loss of the full network with vectors ``X`` (N, K) on ``batch`` (scalar)."""
    return loss_value(run_network(arch, X, batch.inputs, batch.dt), batch)
