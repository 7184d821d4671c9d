"""Learners: gradient descent / SGD / Adam on the full network, and the overlap-space dynamics.

Full network (parameter space), THEORY.md section 5::

    X <- X - eta N dL/dX          (plastic columns only)

Overlap space, with ``G = dL/dSigma``, ``S = G + G^T`` and the 0/1 plasticity mask ``P``::

    exact:  Sigma' = (I - eta P S) Sigma (I - eta S P)
    flow:   dSigma/dtau = -(P S Sigma + Sigma S P), integrated over tau in [eta e, eta (e+1)] (RK4)
    naive:  sigma_vis' = sigma_vis - eta dL/dsigma_vis        (the wrong, visible-only dynamics)

Whole loops are compiled: epochs run inside ``jax.lax.scan`` in chunks, and Python only
updates the progress bar and checks for divergence between chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from .architecture import Architecture
from .errors import DivergenceError, InvalidParameterError
from .network import network_loss
from .overlaps import validate_sigma
from .reduced import overlap_loss
from .tasks import Batch
from .trajectory import Trajectory

OPTIMIZERS = ("gd", "adam")
RULES = ("exact", "flow", "naive")
_MAX_CHUNK = 128


# ----------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _StaticTask:
    treedef: object
    leaves: tuple  # None where the leaf is an array (passed dynamically)

    def build(self, dynamic):
        it = iter(dynamic)
        leaves = [next(it) if leaf is None else leaf for leaf in self.leaves]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _partition_task(task):
    if not isinstance(task, Batch) and not callable(task):
        raise InvalidParameterError(
            f"task must be a Batch or a callable key -> Batch, got {type(task).__name__}"
        )
    leaves, treedef = jax.tree_util.tree_flatten(task)
    is_array = [isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves]
    dynamic = tuple(jnp.asarray(leaf) for leaf, a in zip(leaves, is_array) if a)
    static = _StaticTask(treedef, tuple(None if a else leaf for leaf, a in zip(leaves, is_array)))
    return dynamic, static


def _get_batch(static: _StaticTask, dynamic, key) -> Batch:
    task = static.build(dynamic)
    if isinstance(task, Batch):
        return task
    batch = task(key)
    if not isinstance(batch, Batch):
        raise InvalidParameterError(f"a task sampler must return a Batch, got {type(batch).__name__}")
    return batch


def _epoch_keys(key, e):
    """(task key, noise key) of epoch ``e``: both learners draw the trials of an epoch alike."""
    return jax.random.split(jax.random.fold_in(key, e))


def _check_run_args(lr, epochs):
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not np.isfinite(lr) or lr <= 0:
        raise InvalidParameterError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InvalidParameterError(f"epochs must be an integer >= 1, got {epochs!r}")


def _chunk_size(epochs: int) -> int:
    """Epochs per compiled chunk: at most _MAX_CHUNK, as even as possible, so that the last
    chunk computes fewer than ``n_chunks`` epochs it then discards."""
    n_chunks = -(-int(epochs) // _MAX_CHUNK)
    return -(-int(epochs) // n_chunks)


def _run_chunks(chunk_fn, state, epochs, lr, progress, desc):
    """Drive a compiled chunk function over ``epochs``; returns (state, losses, sigmas)."""
    C = _chunk_size(epochs)
    n_chunks = -(-epochs // C)
    show = (epochs >= 500) if progress is None else bool(progress)
    losses, sigmas = [], []
    bar = tqdm(total=epochs, desc=desc, disable=not show, leave=False)
    try:
        for c in range(n_chunks):
            start = c * C
            n = min(C, epochs - start)
            state, (loss, sigma) = chunk_fn(state, jnp.asarray(start), jnp.asarray(start + n))
            loss = np.asarray(loss)[:n]
            sigma = np.asarray(sigma)[:n]
            bad = ~(np.isfinite(loss) & np.all(np.isfinite(sigma), axis=(1, 2)))
            if bad.any():
                raise DivergenceError(start + int(np.argmax(bad)), lr)
            losses.append(loss)
            sigmas.append(sigma)
            bar.update(n)
    finally:
        bar.close()
    return state, np.concatenate(losses), np.concatenate(sigmas)


def _scan_epochs(step, state, start, end, C, K, dtype):
    """Scan ``step(carry, e) -> (carry, (loss, sigma))`` over epochs ``start .. start+C-1``.

    Epochs ``>= end`` (only in a run's last chunk) are computed and discarded: the state is
    kept and NaN is recorded. A ``lax.cond`` would skip the work but measured 1.7x slower per
    epoch with trial samplers on CPU.
    """
    nan_out = (jnp.full((), jnp.nan, dtype), jnp.full((K, K), jnp.nan, dtype))

    def body(carry, e):
        new, out = step(carry, e)
        keep = e < end
        sel = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
        return jax.tree_util.tree_map(sel, new, carry), jax.tree_util.tree_map(sel, out, nan_out)

    return jax.lax.scan(body, state, start + jnp.arange(C))


# ------------------------------------------------------------------- full network
@partial(jax.jit, static_argnames=("arch", "static", "optimizer", "C"))
def _vector_chunk(state, start, end, dynamic, key, lr, plastic, noise, *, arch, static, optimizer, C):
    N = state[0].shape[0]

    def step(carry, e):
        X, opt_state = carry
        k_task, k_noise = _epoch_keys(key, e)
        batch = _get_batch(static, dynamic, k_task)
        loss, g = jax.value_and_grad(lambda X_: network_loss(arch, X_, batch))(X)
        sigma = X.T @ X / N
        g = g * plastic
        if optimizer == "gd":
            X_new = X - (lr * N) * g
        else:
            updates, opt_state = optax.adam(lr).update(g, opt_state, X)
            X_new = X + updates * plastic
        X_new = X_new + noise * jax.random.normal(k_noise, X.shape, X.dtype) * plastic
        return (X_new, opt_state), (loss, sigma)

    return _scan_epochs(step, state, start, end, C, arch.K, state[0].dtype)


def learn_vectors(arch: Architecture, X0, task, lr: float, epochs: int, optimizer: str = "gd",
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
        full-network run and an overlap run with the same seed see the same trials.
    lr : float
        ``gd``: the overlap-space rate eta; the vectors move by ``eta * N * dL/dX``.
        ``adam``: optax Adam's step size on the vector entries.
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
    ``final_sigma`` and ``final_vectors`` (N, K) after the last one.

    Raises
    ------
    DivergenceError
        If the loss or the overlaps become NaN/inf (reports the epoch and the learning rate).
    """
    _check_run_args(lr, epochs)
    if optimizer not in OPTIMIZERS:
        raise InvalidParameterError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    X0 = jnp.asarray(X0)
    if X0.ndim != 2 or X0.shape[1] != arch.K or X0.shape[0] < 1:
        raise InvalidParameterError(
            f"X0 must have shape (N, {arch.K}) with N >= 1 for vectors {arch.vector_names}, got {tuple(X0.shape)}"
        )
    if not bool(jnp.all(jnp.isfinite(X0))):
        raise InvalidParameterError("X0 has non-finite entries")
    if isinstance(update_noise, bool) or not isinstance(update_noise, (int, float, np.floating)) \
            or not np.isfinite(update_noise) or update_noise < 0:
        raise InvalidParameterError(f"update_noise must be a non-negative number, got {update_noise!r}")
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=X0.dtype)
    dynamic, static = _partition_task(task)
    opt_state = optax.adam(lr).init(X0) if optimizer == "adam" else ()
    C = _chunk_size(epochs)
    fn = partial(_vector_chunk, dynamic=dynamic, key=jax.random.PRNGKey(seed),
                 lr=jnp.asarray(lr, X0.dtype), plastic=mask,
                 noise=jnp.asarray(update_noise, X0.dtype), arch=arch, static=static,
                 optimizer=optimizer, C=C)
    (X, _), loss, sigma = _run_chunks(fn, (X0, opt_state), epochs, lr, progress, f"full network ({optimizer})")
    X = np.asarray(X)
    if not np.all(np.isfinite(X)):
        raise DivergenceError(epochs, lr, "state after the last update")
    return Trajectory(arch, loss, sigma, X.T @ X / X.shape[0], float(lr), optimizer, X)


# ------------------------------------------------------------------- overlap space
def _sym_grad(arch, Sigma, batch):
    loss, G = jax.value_and_grad(lambda S_: overlap_loss(arch, S_, batch))(Sigma)
    return loss, G + G.T


def _rhs(arch, Sigma, batch, plastic):
    _, S = _sym_grad(arch, Sigma, batch)
    PS = plastic[:, None] * S
    return -(PS @ Sigma + Sigma @ PS.T)


_rhs_jit = jax.jit(_rhs, static_argnums=0)


def flow_rhs(arch: Architecture, Sigma, batch: Batch, plastic=None):
    """Right-hand side of the gradient-flow ODE, ``-(P S Sigma + Sigma S P)`` (K, K).

    ``Sigma`` (K, K), ``batch`` a fixed :class:`Batch`; ``plastic`` as in :func:`learn_overlaps`.
    """
    Sigma = jnp.asarray(Sigma)
    P = jnp.asarray(arch.plasticity_mask(plastic), dtype=Sigma.dtype)
    return _rhs_jit(arch, Sigma, batch, P)


@partial(jax.jit, static_argnames=("arch", "static", "rule", "C", "substeps"))
def _overlap_chunk(state, start, end, dynamic, key, lr, plastic, *, arch, static, rule, C, substeps):
    K = arch.K
    eye = jnp.eye(K, dtype=state.dtype)
    vis = jnp.asarray(arch.visible_matrix)
    naive_mask = (vis & ((plastic[:, None] + plastic[None, :]) > 0)) * (1.0 - 0.5 * eye)

    def rhs(Sigma, batch):
        return _rhs(arch, Sigma, batch, plastic)

    def step(Sigma, e):
        batch = _get_batch(static, dynamic, _epoch_keys(key, e)[0])
        loss, S = _sym_grad(arch, Sigma, batch)
        if rule == "exact":
            A = eye - lr * plastic[:, None] * S
            new = A @ Sigma @ A.T
        elif rule == "naive":
            new = Sigma - lr * naive_mask * S
        else:  # classical RK4 over tau in [lr e, lr (e + 1)]
            h = lr / substeps

            def rk4(_, Sg):
                k1 = rhs(Sg, batch)
                k2 = rhs(Sg + 0.5 * h * k1, batch)
                k3 = rhs(Sg + 0.5 * h * k2, batch)
                k4 = rhs(Sg + h * k3, batch)
                return Sg + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)

            new = jax.lax.fori_loop(0, substeps, rk4, Sigma)
        new = 0.5 * (new + new.T)
        return new, (loss, Sigma)

    return _scan_epochs(step, state, start, end, C, K, state.dtype)


def learn_overlaps(arch: Architecture, Sigma0, task, lr: float, epochs: int, rule: str = "exact",
                   plastic=None, seed: int = 0, substeps: int = 1,
                   progress: bool | None = None) -> Trajectory:
    """Learning dynamics in overlap space (THEORY.md section 5).

    Parameters
    ----------
    arch : Architecture
    Sigma0 : array (K, K)
        Initial overlap matrix (symmetric, positive semi-definite).
    task : Batch or callable ``key -> Batch``
        As in :func:`learn_vectors` (same keys, hence the same trials, for the same seed).
    lr : float
        Overlap-space learning rate eta.
    epochs : int
    rule : {"exact", "flow", "naive"}
        ``exact``: the discrete map equal to full-network gradient descent (exactly so for
        linear units); ``flow``: the gradient-flow ODE integrated with RK4 (``substeps`` steps
        per epoch); ``naive``: gradient descent on the visible overlaps alone.
    plastic : None, names or bool array (K,)
    seed : int
    substeps : int
        RK4 steps per epoch for ``rule="flow"``.
    progress : bool or None

    Returns
    -------
    Trajectory with ``loss`` (epochs,) and ``sigma`` (epochs, K, K) before each update.
    For erf/tanh units the loss is the mean-field (large-N) loss.
    """
    _check_run_args(lr, epochs)
    if rule not in RULES:
        raise InvalidParameterError(f"rule must be one of {RULES}, got {rule!r}")
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise InvalidParameterError(f"substeps must be an integer >= 1, got {substeps!r}")
    S0 = jnp.asarray(validate_sigma(arch, Sigma0, "Sigma0"))
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=S0.dtype)
    dynamic, static = _partition_task(task)
    C = _chunk_size(epochs)
    fn = partial(_overlap_chunk, dynamic=dynamic, key=jax.random.PRNGKey(seed),
                 lr=jnp.asarray(lr, S0.dtype), plastic=mask, arch=arch, static=static, rule=rule,
                 C=C, substeps=int(substeps))
    S, loss, sigma = _run_chunks(fn, S0, epochs, lr, progress, f"overlaps ({rule})")
    S = np.asarray(S)
    if not np.all(np.isfinite(S)):
        raise DivergenceError(epochs, lr, "state after the last update")
    return Trajectory(arch, loss, sigma, S, float(lr), rule)
