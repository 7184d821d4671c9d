"""The full N-dimensional low-rank RNN (THEORY.md section 1).

    h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t),   h_0 = 0
    y_t     = Z^T phi(h_{t+1}) / N
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .activations import phi
from .architecture import Architecture
from .tasks import Batch, loss_value

# Time-loop unrolling: measured on CPU (2 cores, float32), unroll=1 gave the fastest
# gradients (unrolling 4-16 steps made the backward pass 2-5x slower); see benchmarks/.
_UNROLL = 1


def split_vectors(arch: Architecture, X):
    """Split ``X`` (N, K) into ``(M, U, V, Z)`` of shapes (N, Din), (N, R), (N, R), (N, Dout)."""
    s = arch.slices
    return X[:, s["M"]], X[:, s["U"]], X[:, s["V"]], X[:, s["Z"]]


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
    N = X.shape[0]
    M, U, V, Z = split_vectors(arch, X)
    inputs = jnp.asarray(inputs, dtype=X.dtype)
    B = inputs.shape[0]
    act = arch.activation

    def step(h, x_t):
        rec = phi(act, h) @ V / N  # (B, R)
        h_new = h + dt * (-h + rec @ U.T + x_t @ M.T)
        r_new = phi(act, h_new)
        y = r_new @ Z / N
        return h_new, (y, h_new) if return_states else y

    h0 = jnp.zeros((B, N), dtype=X.dtype)
    _, out = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1), unroll=_UNROLL)
    if return_states:
        y, h = out
        return jnp.swapaxes(y, 0, 1), jnp.swapaxes(h, 0, 1)
    return jnp.swapaxes(out, 0, 1)


def network_loss(arch: Architecture, X, batch: Batch):
    """Loss of the full network with vectors ``X`` (N, K) on ``batch`` (scalar)."""
    return loss_value(run_network(arch, X, batch.inputs, batch.dt), batch)
