"""Learners: gradient descent / SGD / Adam on the full network, and the overlap-space dynamics.

Full network (parameter space), THEORY.md section 5::

    X <- X - eta N dL/dX          (plastic columns only)

Overlap space, with ``G = dL/dSigma``, ``S = G + G^T`` and the 0/1 plasticity mask ``P``::

    exact:  Sigma' = (I - eta P S) Sigma (I - eta S P)
    flow:   dSigma/dtau = -(P S Sigma + Sigma S P), integrated over tau in [eta e, eta (e+1)] (RK4)
    naive:  sigma_vis' = sigma_vis - eta dL/dsigma_vis        (the wrong, visible-only dynamics)

Whole loops are compiled: epochs run inside ``jax.lax.scan`` in chunks, and Python only
updates the progress bar and checks for divergence between chunks. With the numba kernel
(:mod:`lowrank_learning._kernels`) the overlap learners draw a chunk's trials before the chunk,
16 epochs per XLA call, and the kernel reads them on the host: the same trials (same keys), but
the callback no longer copies each epoch's batch (E8: 5.6 -> 4.4 ms per epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from . import _kernels
from .architecture import Architecture
from .errors import DivergenceError, InvalidParameterError, LowRankError
from .network import network_loss
from .overlaps import validate_sigma
from .reduced import ensemble_value_and_grad
from .schedules import Schedule, as_schedule
from .tasks import Batch
from .trajectory import EnsembleTrajectory, Trajectory

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
    for t in (task if isinstance(task, tuple) else (task,)):
        if not isinstance(t, Batch) and not callable(t):
            raise InvalidParameterError(
                f"task must be a Batch or a callable key -> Batch, got {type(t).__name__}"
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


def _check_epochs(epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InvalidParameterError(f"epochs must be an integer >= 1, got {epochs!r}")


def _check_run_args(lr, epochs) -> Schedule:
    """Validate ``epochs`` and turn ``lr`` (float or schedule) into a :class:`Schedule`."""
    sched = as_schedule(lr)
    _check_epochs(epochs)
    return sched


def _chunk_size(epochs: int) -> int:
    """Epochs per compiled chunk: at most _MAX_CHUNK, as even as possible, so that the last
    chunk computes fewer than ``n_chunks`` epochs it then discards."""
    n_chunks = -(-int(epochs) // _MAX_CHUNK)
    return -(-int(epochs) // n_chunks)


def _batch_shapes(arch: Architecture, task, key, who: str = "task"):
    """Shapes of the task's (first) batch, checked against the architecture before compiling."""
    if isinstance(task, Batch):
        batch = task
    else:
        try:
            batch = jax.eval_shape(task, key)
        except LowRankError:
            raise
        except Exception as exc:  # a sampler that cannot even produce a batch
            raise InvalidParameterError(f"{who}: the sampler failed to produce a batch: {exc}") from exc
        if not isinstance(batch, Batch):
            raise InvalidParameterError(f"{who}: a task sampler must return a Batch, got {type(batch).__name__}")
    ins, tgs, mks = (tuple(getattr(batch, f).shape) for f in ("inputs", "targets", "mask"))
    if len(ins) != 3 or ins[-1] != arch.n_in:
        raise InvalidParameterError(
            f"{who}: inputs have shape {ins} (B, T, Din) but the architecture has n_in = {arch.n_in}"
        )
    if len(tgs) != 3 or tgs[-1] != arch.n_out:
        raise InvalidParameterError(
            f"{who}: targets have shape {tgs} (B, T, Dout) but the architecture has n_out = {arch.n_out}"
        )
    if mks != tgs or tgs[:2] != ins[:2]:
        raise InvalidParameterError(f"{who}: inputs {ins}, targets {tgs} and mask {mks} do not match")
    return ins, tgs, float(batch.dt), batch.loss


def _record(chunk_out, start, n, every):
    """Keep the epochs ``e`` of this chunk with ``e % every == 0`` (numpy); returns (epochs, rows)."""
    e = start + np.arange(n)
    keep = (e % every) == 0
    return e[keep], np.asarray(chunk_out)[:n][keep]


def _run_chunks(chunk_fn, state, epochs, sched, progress, desc, record_every=1, member_axis=False):
    """Drive a compiled chunk function over ``epochs``.

    ``chunk_fn(state, start, end) -> (state, (loss, sigma, lr))`` with per-epoch rows. Returns
    (state, losses, sigmas at the recorded epochs, recorded epochs, lrs). Stops with a
    :class:`DivergenceError` (epoch and rate; the member for ensembles) at the first non-finite
    loss or overlap.
    """
    C = _chunk_size(epochs)
    n_chunks = -(-epochs // C)
    show = (epochs >= 500) if progress is None else bool(progress)
    losses, sigmas, rec, lrs = [], [], [], []
    bar = tqdm(total=epochs, desc=desc, disable=not show, leave=False)
    try:
        for c in range(n_chunks):
            start = c * C
            n = min(C, epochs - start)
            state, (loss, sigma, lr) = chunk_fn(state, jnp.asarray(start), jnp.asarray(start + n))
            loss, sigma, lr = np.asarray(loss)[:n], np.asarray(sigma)[:n], np.asarray(lr)[:n]
            finite = np.isfinite(loss) & np.all(np.isfinite(sigma), axis=(-2, -1))
            if not finite.all():
                bad = np.argwhere(~finite)[0]
                ep = int(bad[0])
                what = "loss or overlaps" + (f" of ensemble member {int(bad[1])}" if member_axis else "")
                rate = lr[tuple(bad)] if lr.ndim else lr
                raise DivergenceError(start + ep, float(rate), what)
            ep, sig = _record(sigma, start, n, record_every)
            losses.append(loss)
            sigmas.append(sig)
            rec.append(ep)
            lrs.append(lr)
            bar.update(n)
    finally:
        bar.close()
    return state, np.concatenate(losses), np.concatenate(sigmas), np.concatenate(rec), np.concatenate(lrs)


def _scan_epochs(step, state, start, end, C, nan_out):
    """Scan ``step(carry, e) -> (carry, outputs)`` over epochs ``start .. start+C-1``.

    Epochs ``>= end`` (only in a run's last chunk) are computed and discarded: the state is
    kept and ``nan_out`` is recorded. A ``lax.cond`` would skip the work but measured 1.7x slower
    per epoch with trial samplers on CPU.
    """

    def body(carry, e):
        new, out = step(carry, e)
        keep = e < end
        sel = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
        return jax.tree_util.tree_map(sel, new, carry), jax.tree_util.tree_map(sel, out, nan_out)

    return jax.lax.scan(body, state, start + jnp.arange(C))


def _drop_epoch(sched: Schedule, state) -> int | None:
    return int(state) if sched.drops else None


# ------------------------------------------------------------------- full network
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
    _check_seed(seed)
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
                      lrs=lrs, drop=_drop_epoch(sched, sstate))


# ------------------------------------------------------------------- overlap space
def _sym_grad(arch, Sigma, batch, row=None, kernel="auto"):
    """Loss and ``S = G + G^T`` for a stack of overlap matrices ``Sigma`` (E, K, K), by the fused
    adjoint (:func:`~lowrank_learning.reduced.ensemble_value_and_grad`). The batch arrays are
    (E, B, T, .), or with ``row`` (E,) the distinct batches (G, B, T, .) and member ``e`` trains
    on batch ``row[e]``."""
    loss, G = ensemble_value_and_grad(arch, Sigma, batch.inputs, batch.targets, batch.mask, batch.dt, batch.loss,
                                      kernel, row)
    return loss, G + jnp.swapaxes(G, -1, -2)


def _rhs(arch, Sigma, batch, plastic, row=None, kernel="auto"):
    """``-(P S Sigma + Sigma S P)`` for stacks (E, K, K)."""
    return _rhs_from(lambda Sg: _sym_grad(arch, Sg, batch, row, kernel), Sigma, plastic)


def _rhs_from(sym_grad, Sigma, plastic):
    """``-(P S Sigma + Sigma S P)`` with ``S`` from ``sym_grad(Sigma) -> (loss, S)``."""
    _, S = sym_grad(Sigma)
    PS = plastic[:, None] * S
    return -(PS @ Sigma + Sigma @ jnp.swapaxes(PS, -1, -2))


def _stack_batch(batch: Batch) -> Batch:
    return Batch.tree_unflatten((batch.dt, batch.loss), tuple(jnp.asarray(a)[None] for a in
                                                               (batch.inputs, batch.targets, batch.mask)))


@partial(jax.jit, static_argnums=0)
def _rhs_jit(arch, Sigma, batch, plastic):
    return _rhs(arch, Sigma[None], _stack_batch(batch), plastic)[0]


def flow_rhs(arch: Architecture, Sigma, batch: Batch, plastic=None):
    """Right-hand side of the gradient-flow ODE, ``-(P S Sigma + Sigma S P)`` (K, K).

    ``Sigma`` (K, K), ``batch`` a fixed :class:`Batch`; ``plastic`` as in :func:`learn_overlaps`.
    """
    Sigma = jnp.asarray(Sigma)
    P = jnp.asarray(arch.plasticity_mask(plastic), dtype=Sigma.dtype)
    return _rhs_jit(arch, Sigma, batch, P)


@dataclass(frozen=True)
class _Members:
    """How the ensemble's members draw their trials: ``groups`` distinct tasks; member ``i``
    uses task ``group[i]`` and the ``slot[i]``-th of that task's distinct seeds; all the
    groups' batches are concatenated and member ``i`` reads row ``row[i]``."""

    seeds: tuple  # per group: the distinct seeds, in order
    row: tuple  # per member: row in the concatenated batches
    batch: tuple  # every batch's (inputs shape (B, T, Din), targets shape, dt, loss)


def _members(arch, tasks, seeds, E):
    """Group the members by task (equal samplers, or the same Batch object) and seed."""
    if isinstance(tasks, (Batch,)) or callable(tasks):
        tasks = [tasks] * E
    tasks = list(tasks)
    if len(tasks) != E:
        raise InvalidParameterError(f"tasks must be one task or a sequence of {E} (one per member), got {len(tasks)}")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [int(seeds)] * E
    seeds = list(seeds)
    if len(seeds) != E:
        raise InvalidParameterError(f"seeds must be one int or a sequence of {E} ints, got {len(seeds)}")
    for s_ in seeds:
        _check_seed(s_)
    groups, group_of = [], []
    for t in tasks:
        for gi, g in enumerate(groups):
            if g is t or (not isinstance(t, Batch) and not isinstance(g, Batch) and _same_task(g, t)):
                group_of.append(gi)
                break
        else:
            groups.append(t)
            group_of.append(len(groups) - 1)
    group_seeds = [sorted({int(seeds[i]) for i in range(E) if group_of[i] == g}) for g in range(len(groups))]
    if any(isinstance(groups[g], Batch) for g in range(len(groups))):  # fixed batches: no sampling
        group_seeds = [[0] if isinstance(groups[g], Batch) else group_seeds[g] for g in range(len(groups))]
    offsets = np.concatenate([[0], np.cumsum([len(s_) for s_ in group_seeds])])
    row = []
    for i in range(E):
        g = group_of[i]
        slot = 0 if isinstance(groups[g], Batch) else group_seeds[g].index(int(seeds[i]))
        row.append(int(offsets[g] + slot))
    # every member's batch must have the same shapes, dt and loss
    shapes = []
    for g, t in enumerate(groups):
        who = f"task of ensemble member {group_of.index(g)}"
        shapes.append(_batch_shapes(arch, t, _epoch_keys(jax.random.PRNGKey(group_seeds[g][0]), 0)[0], who))
    if len(set(shapes)) > 1:
        detail = "; ".join(f"members {[i for i in range(E) if group_of[i] == g]}: inputs {sh[0]}, targets "
                           f"{sh[1]}, dt {sh[2]:g}, loss {sh[3]!r}" for g, sh in enumerate(shapes))
        raise InvalidParameterError(
            "the ensemble's members must have batches of the same shape, dt and loss, got " + detail
        )
    return tuple(groups), _Members(tuple(tuple(s_) for s_ in group_seeds), tuple(row), shapes[0])


def _same_task(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays inside: only identity counts
        return False


def _ensemble_batch(static, dynamic, members: _Members, e):
    """The distinct batches of epoch ``e``, stacked (G, B, T, .), and the batch of each
    member, ``row`` (E,)."""
    tasks = static.build(dynamic)
    parts = []
    for t, seeds in zip(tasks, members.seeds):
        if isinstance(t, Batch):
            parts.append(_stack_batch(t))
            continue
        keys = jnp.stack([_epoch_keys(jax.random.PRNGKey(s_), e)[0] for s_ in seeds])
        parts.append(jax.vmap(t)(keys))
    dt, kind = parts[0].dt, parts[0].loss
    cat = [jnp.concatenate([jnp.asarray(getattr(p, f)) for p in parts], axis=0) for f in ("inputs", "targets", "mask")]
    return Batch.tree_unflatten((dt, kind), tuple(cat)), jnp.asarray(members.row, dtype=jnp.int32)


@partial(jax.jit, static_argnames=("arch", "static", "members", "rule", "sched", "C", "substeps", "kernel",
                                   "hosted"))
def _overlap_chunk(state, start, end, dynamic, plastic, token=0, *, arch, static, members, rule, sched, C,
                   substeps, kernel, hosted=None):
    """``C`` epochs of the overlap learners. ``hosted`` (None, or ``(per_epoch, dt, loss)``):
    the trials are not drawn here but read on the host from the chunk registered under
    ``token`` (:func:`_chunk_batches`, :class:`~lowrank_learning._kernels.HostedBatches`)."""
    K = arch.K
    Sig0, _ = state
    dtype = Sig0.dtype
    eye = jnp.eye(K, dtype=dtype)
    vis = jnp.asarray(arch.visible_matrix)
    naive_mask = (vis & ((plastic[:, None] + plastic[None, :]) > 0)) * (1.0 - 0.5 * eye)
    rate = jax.vmap(sched.rate, in_axes=(0, None, 0))

    def step(carry, e):
        Sigma, sstate = carry
        if hosted is None:
            batch, row = _ensemble_batch(static, dynamic, members, e)

            def sym_grad(Sg):
                return _sym_grad(arch, Sg, batch, row, kernel)
        else:
            per_epoch, dt, kind = hosted
            index = e - start if per_epoch else 0

            def sym_grad(Sg):
                loss_, G = _kernels.hosted_value_and_grad(arch, Sg, token, index, members.row, dt, kind)
                return loss_, G + jnp.swapaxes(G, -1, -2)
        loss, S = sym_grad(Sigma)
        lr, sstate = rate(sstate, e, loss)
        lr = jnp.asarray(lr, dtype)
        lr3 = lr[:, None, None]
        if rule == "exact":
            A = eye - lr3 * plastic[:, None] * S
            new = A @ Sigma @ jnp.swapaxes(A, -1, -2)
        elif rule == "naive":
            new = Sigma - lr3 * naive_mask * S
        else:  # classical RK4 over tau in [sum of earlier rates, + lr]
            h = lr3 / substeps

            def rk4(_, Sg):
                k1 = _rhs_from(sym_grad, Sg, plastic)
                k2 = _rhs_from(sym_grad, Sg + 0.5 * h * k1, plastic)
                k3 = _rhs_from(sym_grad, Sg + 0.5 * h * k2, plastic)
                k4 = _rhs_from(sym_grad, Sg + h * k3, plastic)
                return Sg + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)

            new = jax.lax.fori_loop(0, substeps, rk4, Sigma)
        new = 0.5 * (new + jnp.swapaxes(new, -1, -2))
        return (new, sstate), (loss, Sigma, lr)

    E = Sig0.shape[0]
    nan = jnp.full((E,), jnp.nan, dtype)
    return _scan_epochs(step, state, start, end, C, (nan, jnp.full((E, K, K), jnp.nan, dtype), nan))


@partial(jax.jit, static_argnames=("static", "members", "n", "dtype"))
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
# Epochs of trials drawn per XLA call: 16 drew E8's trials at 0.82 ms per epoch, 128 at 1.7 ms
# (the larger output arrays leave the cache).
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


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidParameterError(f"seed must be an integer, got {seed!r}")


def _learn_overlaps_stack(arch, S0, tasks, sched, epochs, rule, plastic, seeds, substeps, progress,
                          record_every, desc):
    if rule not in RULES:
        raise InvalidParameterError(f"rule must be one of {RULES}, got {rule!r}")
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise InvalidParameterError(f"substeps must be an integer >= 1, got {substeps!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise InvalidParameterError(f"record_every must be an integer >= 1, got {record_every!r}")
    E = S0.shape[0]
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=S0.dtype)
    groups, members = _members(arch, tasks, seeds, E)
    dynamic, static = _partition_task(groups)
    C = _chunk_size(epochs)
    kernel = _kernels.requested("auto")
    plan = _hosted_plan(arch, groups, members, E, C, S0.dtype, kernel)
    fn = partial(_overlap_chunk, dynamic=dynamic, plastic=mask, arch=arch, static=static, members=members,
                 rule=rule, sched=sched, C=C, substeps=int(substeps), kernel=kernel,
                 hosted=None if plan is None else plan[:3])
    if plan is not None:  # draw each chunk's trials in one XLA call, read them on the host
        loop_fn = fn

        def fn(state, start, end):
            piece = min(plan[3], _HOSTED_PIECE)
            pieces = [_chunk_batches(dynamic, start + p, static=static, members=members, n=piece, dtype=S0.dtype)
                      for p in range(0, plan[3], piece)]
            with _kernels.HostedBatches(pieces, piece) as token:
                return jax.block_until_ready(loop_fn(state, start, end, token=jnp.int32(token)))
    sstate0 = jnp.broadcast_to(sched.initial, (E,))
    (S, sstate), loss, sigma, rec, lrs = _run_chunks(fn, (S0, sstate0), epochs, sched, progress, desc,
                                                      record_every, member_axis=True)
    S = np.asarray(S)
    if not np.all(np.isfinite(S)):
        raise DivergenceError(epochs, float(np.max(lrs[-1])), "state after the last update")
    return S, loss, sigma, rec, lrs, np.asarray(sstate)


def learn_overlaps(arch: Architecture, Sigma0, task, lr, epochs: int, rule: str = "exact",
                   plastic=None, seed: int = 0, substeps: int = 1,
                   progress: bool | None = None) -> Trajectory:
    """Learning dynamics in overlap space (THEORY.md section 5).

    Parameters
    ----------
    arch : Architecture
    Sigma0 : array (K, K)
        Initial overlap matrix (symmetric, positive semi-definite to the precision of its dtype;
        see :func:`~lowrank_learning.validate_sigma`). A float32 matrix runs in float32 (when
        JAX's x64 mode is on; otherwise everything runs in float32).
    task : Batch or callable ``key -> Batch``
        As in :func:`learn_vectors` (same keys, hence the same trials, for the same seed).
    lr : float or Schedule
        Overlap-space learning rate eta, or a :mod:`~lowrank_learning.schedules` schedule.
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
    Trajectory with ``loss`` (epochs,), ``sigma`` (epochs, K, K) before each update and ``lrs``
    (epochs,). For erf/tanh units the loss is the mean-field (large-N) loss.

    The gradient ``dL/dSigma`` comes from the hand-written adjoint of the latent recurrence
    (:func:`~lowrank_learning.reduced.ensemble_value_and_grad`); this is the ensemble learner
    :func:`learn_overlaps_ensemble` with one member.
    """
    sched = _check_run_args(lr, epochs)
    S0 = _as_sigma(arch, Sigma0, "Sigma0")
    _check_seed(seed)
    _partition_task(task)  # a single task: Batch or sampler
    S, loss, sigma, _, lrs, sstate = _learn_overlaps_stack(arch, S0[None], task, sched, epochs, rule, plastic,
                                                            seed, substeps, progress, 1, f"overlaps ({rule})")
    return Trajectory(arch, loss[:, 0], sigma[:, 0], S[0], sched.first, rule, lrs=lrs[:, 0],
                      drop=_drop_epoch(sched, sstate[0]))


def _as_sigma(arch, Sigma, name):
    """Validated overlap matrix (or stack) as a JAX array of the caller's floating dtype."""
    arr = np.asarray(Sigma)
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    S = validate_sigma(arch, arr, name)
    return jnp.asarray(S.astype(dtype))


def learn_overlaps_ensemble(arch: Architecture, Sigma0, tasks, lr, epochs: int, rule: str = "exact",
                            plastic=None, seeds=0, substeps: int = 1, record_every: int = 1,
                            progress: bool | None = None) -> EnsembleTrajectory:
    """Many independent overlap-space runs in one compiled loop.

    Each member is exactly the run :func:`learn_overlaps` would make with its own start, task
    and seed (tested); the members' trials are laid side by side so that every step of the
    latent recurrence is one wide elementwise pass.

    Parameters
    ----------
    Sigma0 : array (E, K, K)
        The members' initial overlaps.
    tasks : task, or sequence of E tasks
        One task for every member, or one per member (e.g. flip-flop for one twin and decision
        making for the other). All batches must have the same shape, dt and loss. Members with
        the same task (equal samplers, or the same Batch object) and the same seed draw their
        trials once per epoch and share them.
    lr : float or Schedule
        Shared by the members; a loss-triggered schedule (:class:`~lowrank_learning.schedules.DropBelow`)
        triggers for each member at its own epoch.
    seeds : int or sequence of E ints
        Seed of each member's trials (one int: the same for all).
    record_every : int
        Record the overlaps every this many epochs (the loss is recorded at every epoch).

    Returns
    -------
    EnsembleTrajectory
    """
    sched = _check_run_args(lr, epochs)
    S0 = _as_sigma_stack(arch, Sigma0)
    S, loss, sigma, rec, lrs, sstate = _learn_overlaps_stack(
        arch, S0, tasks, sched, epochs, rule, plastic, seeds, substeps, progress, record_every,
        f"ensemble of {S0.shape[0]} ({rule})")
    drops = None if not sched.drops else np.asarray(sstate, dtype=int)
    return EnsembleTrajectory(arch, np.ascontiguousarray(loss.T), np.ascontiguousarray(np.swapaxes(sigma, 0, 1)),
                              rec, S, sched.first, rule, np.ascontiguousarray(lrs.T), drops)


def _as_sigma_stack(arch, Sigma0):
    arr = np.asarray(Sigma0)
    if arr.ndim != 3 or arr.shape[1:] != (arch.K, arch.K) or arr.shape[0] < 1:
        raise InvalidParameterError(
            f"Sigma0 must have shape (E, {arch.K}, {arch.K}) for an ensemble, got {arr.shape}"
        )
    return jnp.stack([_as_sigma(arch, a, f"Sigma0[{i}]") for i, a in enumerate(arr)])
