"""The full N-dimensional low-rank RNN (THEORY.md section 1).

    h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t),   h_0 = 0
    y_t     = Z^T phi(h_{t+1}) / N
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import math

from .activations import phi
from .architecture import Architecture
from .errors import InvalidParameterError
from .tasks import Batch, loss_value

# Time-loop unrolling: measured on CPU (2 cores, float32), unroll=1 gave the fastest
# gradients (unrolling 4-16 steps made the backward pass 2-5x slower); see benchmarks/.
_UNROLL = 1


def split_vectors(arch: Architecture, X):
    """Split ``X`` (N, K) into ``(M, U, V, Z)`` of shapes (N, Din), (N, R), (N, R), (N, Dout)."""
    s = arch.slices
    return X[:, s["M"]], X[:, s["U"]], X[:, s["V"]], X[:, s["Z"]]


def network_step(arch: Architecture, vectors, h, x_t, dt: float, kick=None):
    """One Euler step of the network, the single definition used by every simulator.

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


def scan_network(arch: Architecture, X, inputs, dt: float, return_states: bool = False,
                 noise=None):
    """Run :func:`network_step` over time from ``h_0 = 0`` (traceable; no input checks).

    Parameters
    ----------
    X : array (N, K);  inputs : array (B, T, Din)
    noise : callable ``(h, xi_t) -> kick`` and array ``xi`` (T, B, N), as a pair; optional
        The kick added at step t is ``noise[0](h_t, noise[1][t])``.

    Returns
    -------
    outputs : array (B, T, Dout);  states : array (B, T, N), only if ``return_states``
    """
    vectors = split_vectors(arch, X)
    h0 = jnp.zeros((inputs.shape[0], X.shape[0]), dtype=X.dtype)
    xs = jnp.swapaxes(inputs, 0, 1)

    if noise is None:
        def step(h, x_t):
            h_new, y = network_step(arch, vectors, h, x_t, dt)
            return h_new, ((y, h_new) if return_states else y)
    else:
        kick_fn, xi = noise
        xs = (xs, xi)

        def step(h, args):
            x_t, xi_t = args
            h_new, y = network_step(arch, vectors, h, x_t, dt, kick=kick_fn(h, xi_t))
            return h_new, ((y, h_new) if return_states else y)

    _, out = jax.lax.scan(step, h0, xs, unroll=_UNROLL)
    if return_states:
        return jnp.swapaxes(out[0], 0, 1), jnp.swapaxes(out[1], 0, 1)
    return jnp.swapaxes(out, 0, 1)


def check_network_inputs(arch: Architecture, X, inputs, dt, where: str = "run_network") -> None:
    """Raise :class:`InvalidParameterError` unless ``X`` is (N, K), ``inputs`` is (B, T, n_in) and
    ``dt`` > 0. Only static shapes are read (free under ``jit``); a traced ``dt`` is not checked."""
    if not isinstance(arch, Architecture):
        raise InvalidParameterError(f"{where}: arch must be an Architecture, got {type(arch).__name__}")
    if getattr(X, "ndim", None) != 2 or X.shape[1] != arch.K or X.shape[0] < 1:
        raise InvalidParameterError(
            f"{where}: X must have shape (N, K={arch.K}) (columns {', '.join(arch.vector_names)}), "
            f"got {getattr(X, 'shape', type(X).__name__)}")
    if getattr(inputs, "ndim", None) != 3 or inputs.shape[2] != arch.n_in:
        raise InvalidParameterError(
            f"{where}: inputs must have shape (B, T, n_in={arch.n_in}), got {getattr(inputs, 'shape', None)}")
    if isinstance(dt, (int, float)) and not (math.isfinite(dt) and dt > 0):
        raise InvalidParameterError(f"{where}: dt must be a finite number > 0, got {dt!r}")


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
