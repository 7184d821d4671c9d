"""The full-network learner: gradient descent, SGD or Adam on the N-dimensional vectors.

With the overlap-space rate eta the vectors move by ``X <- X - eta N dL/dX`` (plastic columns
only; book/theory.md, section 5.1), so that the overlaps change by O(eta) per epoch.

:func:`redraw_gaussian` replaces the plastic vectors by fresh Gaussian rows with exactly the same
overlaps; ``learn_vectors(..., redraw_every=k)`` does so every k epochs inside the compiled loop
(a full network held on the Gaussian closure of the overlap theory, for the E9 closure test).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import _network_kernel
from ..core._checks import (
    check_choice,
    check_int,
    check_nonnegative,
    check_seed,
    check_vectors,
)
from ..core.architecture import Architecture
from ..core.errors import DivergenceError, InvalidParameterError
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
# Folded into the redraw key so that the redraws never share a stream with the trials or the noise.
_REDRAW_STREAM = 0x5EDA


def _psd_functions(A, eps):
    """(pinv(A), A^{1/2}, pinv(A)^{1/2}) of a symmetric PSD (K, K) matrix through one eigendecomposition.

    For the two inverses, eigenvalues up to ``eps * max(1, largest |eigenvalue|)`` count as zero; the
    root keeps every eigenvalue and clips the (rounding-level) negative ones to 0, so that
    ``root @ root`` equals ``A`` to rounding even where ``A`` is singular or tiny."""
    w, Q = jnp.linalg.eigh(A)
    keep = w > eps * jnp.maximum(1.0, jnp.max(jnp.abs(w)))
    wc = jnp.where(keep, w, 1.0)
    inv = jnp.where(keep, 1.0 / wc, 0.0)
    inv_root = jnp.where(keep, 1.0 / jnp.sqrt(wc), 0.0)
    root = jnp.sqrt(jnp.clip(w, 0.0, None))
    f = lambda d: (Q * d) @ Q.T
    return f(inv), f(root), f(inv_root)


def redraw_gaussian(X, plastic, key):
    """Fresh Gaussian rows with exactly the overlaps of ``X``; frozen columns kept.

    The plastic columns of ``X`` (N, K) are replaced by ``X_F A + R C``, where ``X_F`` are the frozen
    columns (``plastic`` False), ``A = Sigma_FF^+ Sigma_FP`` the regression of the plastic columns on
    them, ``R`` a standard-normal (N, #P) draw (#P plastic columns, #F frozen ones) from ``key``,
    projected off the span of ``X_F`` and whitened to ``R^T R / N = I`` exactly, and ``C = (Sigma_PP - Sigma_PF Sigma_FF^+ Sigma_FP)^{1/2}``
    (symmetric root of the Schur complement; PSD, possibly singular). Then, to rounding,

    * ``Y^T Y / N = X^T X / N`` (every overlap, including those between frozen and plastic vectors),
    * ``Y[:, F] = X[:, F]`` bit for bit,
    * given the frozen columns, the plastic part of each row is Gaussian with the conditional
      covariance of a Gaussian with second moments ``Sigma`` (rows of a fully plastic ``X`` are
      zero-mean Gaussian with second moment ``Sigma``), up to the O(1/N) dependence between rows
      that making the overlaps exact introduces.

    A singular ``Sigma`` (e.g. two equal vectors) is handled: directions with zero variance get
    none. Needs ``N >= K`` for the whitening to be exact (the draw needs ``N - #F >= #P``).

    Parameters
    ----------
    X : array (N, K)
    plastic : array (K,), 0/1 or bool (which columns are redrawn)
    key : jax PRNG key

    Returns
    -------
    array (N, K), same dtype as ``X``.
    """
    X = jnp.asarray(X)
    N = X.shape[0]
    dtype = X.dtype
    eps = 100 * X.shape[1] * jnp.finfo(dtype).eps
    p = jnp.asarray(plastic, dtype)
    f = 1.0 - p
    pp, ff, fp = jnp.outer(p, p), jnp.outer(f, f), jnp.outer(f, p)
    S = X.T @ X / N
    Xf = X * f
    Sff_pinv = _psd_functions(S * ff, eps)[0]                      # zero outside the F block
    A = Sff_pinv @ (S * fp)                                        # (K, K), F rows, P columns
    G = jax.random.normal(key, X.shape, dtype) * p                 # plastic columns only
    R = G - Xf @ (Sff_pinv @ (Xf.T @ G / N))                       # off the span of X_F
    Q = R.T @ R / N + jnp.diag(f)                                  # Q_PP (+) I_F
    W = _psd_functions(Q, eps)[2] * pp                             # Q_PP^{-1/2}
    schur = (S - S @ Sff_pinv @ S) * pp                            # Sigma_PP - Sigma_PF Sff^+ Sigma_FP
    C = _psd_functions(0.5 * (schur + schur.T), eps)[1] * pp
    Y = Xf @ A + R @ W @ C
    return jnp.where(p.astype(bool)[None, :], Y, X).astype(dtype)


@partial(jax.jit, static_argnames=("arch", "static", "optimizer", "C", "redraw_every", "compiled"))
def _vector_chunk(state, start, end, dynamic, key, plastic, noise, redraw_key, *, arch, static, optimizer, sched, C,
                  redraw_every=None, compiled=False):
    N = state[0].shape[0]
    dtype = state[0].dtype

    def step(carry, e):
        X, opt_state, sstate = carry
        if redraw_every is not None:  # before the update of every epoch e > 0 with e % redraw_every == 0
            due = (e > 0) & (e % redraw_every == 0)
            X = jax.lax.cond(due, lambda X_: redraw_gaussian(X_, plastic, jax.random.fold_in(redraw_key, e)),
                             lambda X_: X_, X)
        k_task, k_noise = _epoch_keys(key, e)
        batch = _get_batch(static, dynamic, k_task)
        if compiled:  # the numba kernel (float32 vectors on a CPU): same loss and gradient
            loss, g = _network_kernel.value_and_grad(arch, X, batch)
        else:
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
                  progress: bool | None = None, redraw_every: int | None = None,
                  redraw_seed: int | None = None, kernel: str = "auto") -> Trajectory:
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
    redraw_every : int or None
        Hold the network on the Gaussian closure: before the update of every epoch ``e > 0``
        with ``e % redraw_every == 0``, the plastic vectors are replaced by fresh Gaussian rows
        with exactly the current overlaps, conditioned on the frozen vectors
        (:func:`redraw_gaussian`; frozen vectors stay as they are). The overlaps recorded
        before each update are therefore unchanged by a redraw; ``final_vectors`` are those
        after the last update (trained for up to ``redraw_every`` epochs since the last redraw).
        None (default): never. Needs ``optimizer="gd"`` (Adam's per-entry moments belong to the
        entries a redraw replaces) and ``N >= K``.
    redraw_seed : int or None
        Seeds the redraws (the draw before epoch ``e`` is a function of ``(redraw_seed, e)``);
        default ``seed``. Same seeds, same numbers.
    kernel : {"auto", "numba", "xla"}
        How the loss gradient is computed. ``xla``: JAX autodiff through the simulation.
        ``numba``: a compiled CPU kernel of the same equations in two passes over the neurons
        (:mod:`lowrank_learning.core._network_kernel`): float32 vectors of any units (about 2.5
        times less CPU time than float32 autodiff, and more accurate: its activations reach
        float32 rounding), or float64 vectors of linear units (no approximation; autodiff's
        numbers to rounding). ``auto`` (default): ``$LOWRANK_KERNEL`` when set, else numba for
        those when numba is installed, JAX runs on the CPU and an epoch has at least 2^16
        neuron-steps (N x trials x steps; below that the host call costs more than it saves),
        else XLA.

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
    if redraw_every is not None:
        redraw_every = check_int("redraw_every", redraw_every, 1)
        if optimizer != "gd":
            raise InvalidParameterError(f"redraw_every needs optimizer='gd', got optimizer={optimizer!r} "
                                        "(Adam's per-entry moments belong to the entries a redraw replaces)")
        if X0.shape[0] < arch.K:
            raise InvalidParameterError(f"redraw_every needs N >= K = {arch.K} vectors, got X0 with N = {X0.shape[0]}")
    redraw_seed = check_seed(seed if redraw_seed is None else redraw_seed, "redraw_seed")
    redraw_key = jax.random.fold_in(jax.random.PRNGKey(redraw_seed), _REDRAW_STREAM)
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=X0.dtype)
    key = jax.random.PRNGKey(seed)
    dynamic, static = _partition_task(task)
    (B, T, _), _, _, _ = _batch_shapes(arch, task, _epoch_keys(key, 0)[0])
    compiled = _network_kernel.choose(kernel, arch, X0.dtype, work=X0.shape[0] * B * T)
    opt_state = optax.adam(1.0).init(X0) if optimizer == "adam" else ()
    C = _chunk_size(epochs)
    fn = partial(_vector_chunk, dynamic=dynamic, key=key, plastic=mask,
                 noise=jnp.asarray(update_noise, X0.dtype), redraw_key=redraw_key, arch=arch, static=static,
                 optimizer=optimizer, sched=sched, C=C, redraw_every=redraw_every, compiled=compiled)
    (X, _, sstate), loss, sigma, _, lrs = _run_chunks(fn, (X0, opt_state, sched.initial), epochs, sched,
                                                       progress, f"full network ({optimizer})")
    X = np.asarray(X)
    if not np.all(np.isfinite(X)):
        raise DivergenceError(epochs, float(lrs[-1]), "state after the last update")
    return Trajectory(arch, loss, sigma, X.T @ X / X.shape[0], sched.first, optimizer, X,
                      lrs=lrs, drop=_recorded_drop(sched, sstate))
