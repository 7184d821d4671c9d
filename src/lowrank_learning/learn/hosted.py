"""The hosted-batch plan: with the host kernel, a chunk's trials are drawn in one XLA call before
the chunk and the kernel reads them in place (:class:`~lowrank_learning.core._kernels.HostedBatches`),
instead of each epoch's batch being copied into the callback."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core import _kernels
from ..core.batch import Batch
from ._members import _ensemble_batch


@partial(jax.jit, static_argnames=("static", "n", "dtype"))
def _chunk_batches(dynamic, start, *, static, members, n, dtype):
    """The distinct batches of epochs ``start .. start + n - 1``, time-major for the kernel:
    inputs (n, G, Din, T, B), targets and mask (n, G, Dout, T, B). The same trials as
    :func:`_ensemble_batch` draws epoch by epoch (same keys)."""

    def one(e):
        batch, _ = _ensemble_batch(static, dynamic, members, e)
        return tuple(_kernels.time_major(getattr(batch, f), dtype) for f in ("inputs", "targets", "mask"))

    return jax.vmap(one)(start + jnp.arange(n))


# Largest chunk of trials kept on the host (bytes); larger chunks draw their trials in the loop.
_HOSTED_MAX_BYTES = 1 << 29
# Epochs of trials drawn per XLA call: a few at a time, so that each call's output arrays stay
# small enough to remain in the CPU cache while they are written.
_HOSTED_PIECE = 16


def _hosted_plan(arch, groups, members, E, C, dtype, kernel):
    """``(per_epoch, dt, loss, n)`` when the numba kernel will run and a chunk's trials fit in
    ``_HOSTED_MAX_BYTES`` (n epochs drawn per chunk: C, or 1 when every task is a fixed batch),
    else None (the trials are then drawn inside the loop)."""
    (B, T, n_in), (_, _, n_out), dt, loss = members.batch
    if _kernels.choose(kernel, arch, work=E * B * T) != "numba":
        return None
    per_epoch = any(not isinstance(g, Batch) for g in groups)
    n = C if per_epoch else 1
    G = sum(len(s_) for s_ in members.seeds)  # distinct batches per epoch
    if n * G * B * T * (n_in + 2 * n_out) * np.dtype(dtype).itemsize > _HOSTED_MAX_BYTES:
        return None
    return per_epoch, dt, loss, n
