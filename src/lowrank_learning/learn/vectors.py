"""The full-network learner: gradient descent, SGD or Adam on the N-dimensional vectors.

With the overlap-space rate eta the vectors move by ``X <- X - eta N dL/dX`` (plastic columns
only; book/theory.md, section 5.1), so that the overlaps change by O(eta) per epoch.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core._checks import check_choice, check_nonnegative, check_seed, check_vectors
from ..core.architecture import Architecture
from ..core.errors import DivergenceError
from ..core.network import network_loss
from ._loop import (
    _batch_shapes,
    _check_run_args,
    _chunk_size,
    _epoch_keys,
    _get_batch,
    _partition_task,
    _recorded_drop,
    _run_chunks,
    _scan_epochs,
)
from .trajectory import Trajectory

OPTIMIZERS = ("gd", "adam")


@partial(jax.jit, static_argnames=("arch", "static", "optimizer", "sched", "C"))
def _vector_chunk(state, start, end, dynamic, key, plastic, noise, *, arch, static, optimizer, sched, C):
    N = state[0].shape[0]
    dtype = state[0].dtype

    def step(carry, e):
        X, opt_state, sstate = carry
        k_task, k_noise = _epoch_keys(key, e)
        batch = _get_batch(static, dynamic, k_task)
        loss, g = jax.value_and_grad(lambda X_: network_loss(arch, X_, batch))(X)
        lr, sstate = sched.rate(sstate, e, loss)
        lr = jnp.asarray(lr, dtype)
        sigma = X.T @ X / N
        g = g * plastic
        if optimizer == "gd":
            X_new = X - (lr * N) * g
        else:  # Adam's step is linear in its rate: optax.adam(1) scaled by this epoch's rate
            updates, opt_state = optax.adam(1.0).update(g, opt_state, X)
            X_new = X + lr * updates * plastic
        X_new = X_new + noise * jax.random.normal(k_noise, X.shape, X.dtype) * plastic
        return (X_new, opt_state, sstate), (loss, sigma, lr)

    nan = jnp.full((), jnp.nan, dtype)
    return _scan_epochs(step, state, start, end, C, (nan, jnp.full((arch.K, arch.K), jnp.nan, dtype), nan))


def learn_vectors(arch: Architecture, X0, task, lr, epochs: int, optimizer: str = "gd",
                  plastic=None, seed: int = 0, update_noise: float = 0.0,
                  progress: bool | None = None) -> Trajectory:
    """Train the full network's vectors.

    Parameters
    ----------
    arch : Architecture
    X0 : array (N, K)
        Initial vectors (columns in ``arch.vector_names`` order).
    task : Batch or callable ``key -> Batch``
        A fixed batch, or a sampler called with a key derived from ``(seed, epoch)``
        for fresh trials each epoch (SGD). The overlap learners use the same keys, so a
        full-network run and an overlap run with the same seed see the same trials. Its input
        and output dimensions must match ``arch`` (checked before compiling).
    lr : float or Schedule
        ``gd``: the overlap-space rate eta; the vectors move by ``eta * N * dL/dX``.
        ``adam``: optax Adam's step size on the vector entries. A
        :mod:`~lowrank_learning.schedules` schedule changes it epoch by epoch inside the loop.
    epochs : int
        Number of updates.
    optimizer : {"gd", "adam"}
    plastic : None, names or bool array (K,)
        Which vectors learn (see :meth:`Architecture.plasticity_mask`); default all.
    seed : int
        Seeds the trial sampler (and the update noise).
    update_noise : float
        Noisy learning: after each update every plastic entry of X receives independent
        N(0, update_noise^2) noise (isotropic in parameter space; 0 = noiseless).
    progress : bool or None
        Progress bar; None shows one for runs of 500 epochs or more.

    Returns
    -------
    Trajectory with ``loss`` (epochs,), ``sigma`` (epochs, K, K) before each update,
    ``final_sigma`` and ``final_vectors`` (N, K) after the last one, ``lrs`` (epochs,).

    Raises
    ------
    DivergenceError
        If the loss or the overlaps become NaN/inf (reports the epoch and the learning rate).
    """
    sched = _check_run_args(lr, epochs)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    X0 = jnp.asarray(X0)
    check_vectors(X0, arch.K, arch.vector_names, "X0")
    check_nonnegative("update_noise", update_noise)
    check_seed(seed)
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=X0.dtype)
    key = jax.random.PRNGKey(seed)
    dynamic, static = _partition_task(task)
    _batch_shapes(arch, task, _epoch_keys(key, 0)[0])
    opt_state = optax.adam(1.0).init(X0) if optimizer == "adam" else ()
    C = _chunk_size(epochs)
    fn = partial(_vector_chunk, dynamic=dynamic, key=key, plastic=mask,
                 noise=jnp.asarray(update_noise, X0.dtype), arch=arch, static=static,
                 optimizer=optimizer, sched=sched, C=C)
    (X, _, sstate), loss, sigma, _, lrs = _run_chunks(fn, (X0, opt_state, sched.initial), epochs, sched,
                                                       progress, f"full network ({optimizer})")
    X = np.asarray(X)
    if not np.all(np.isfinite(X)):
        raise DivergenceError(epochs, float(lrs[-1]), "state after the last update")
    return Trajectory(arch, loss, sigma, X.T @ X / X.shape[0], sched.first, optimizer, X,
                      lrs=lrs, drop=_recorded_drop(sched, sstate))
