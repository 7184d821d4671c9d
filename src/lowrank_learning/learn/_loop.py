"""The compiled epoch loop shared by the learners: chunks of epochs inside ``jax.lax.scan``,
the progress bar and the divergence check between chunks, and the checks of a task."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from ..core._checks import check_int
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import DivergenceError, InvalidParameterError, LowRankError
from .schedules import Schedule, as_schedule

# Epochs per compiled chunk at most: longer chunks compile longer and check divergence later.
_MAX_CHUNK = 128


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


def _check_run_args(lr, epochs) -> Schedule:
    """Validate ``epochs`` and turn ``lr`` (float or schedule) into a :class:`Schedule`."""
    sched = as_schedule(lr)
    check_int("epochs", epochs, 1)
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


def bars_disabled() -> bool:
    """True when ``$TQDM_DISABLE`` is ``1``, ``true``, ``yes`` or ``on``: no learner draws a
    progress bar then, whatever its ``progress`` argument (the book's kernels set it, so that no
    executed chapter stores one; tqdm's own reading of the variable does not override an explicit
    ``disable=False``)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}


def _run_chunks(chunk_fn, state, epochs, sched, progress, desc, record_every=1, member_axis=False):
    """Drive a compiled chunk function over ``epochs``.

    ``chunk_fn(state, start, end) -> (state, (loss, sigma, lr))`` with per-epoch rows. Returns
    (state, losses, sigmas at the recorded epochs, recorded epochs, lrs). Stops with a
    :class:`DivergenceError` (epoch and rate; the member for ensembles) at the first non-finite
    loss or overlap.
    """
    C = _chunk_size(epochs)
    n_chunks = -(-epochs // C)
    show = ((epochs >= 500) if progress is None else bool(progress)) and not bars_disabled()
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
    kept and ``nan_out`` is recorded. A ``lax.cond`` could skip that work, but it costs more at
    every epoch of every chunk than the few discarded epochs of the last one.
    """

    def body(carry, e):
        new, out = step(carry, e)
        keep = e < end
        sel = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
        return jax.tree_util.tree_map(sel, new, carry), jax.tree_util.tree_map(sel, out, nan_out)

    return jax.lax.scan(body, state, start + jnp.arange(C))


def _recorded_drop(sched: Schedule, state) -> int | None:
    """The drop epoch a loss-triggered schedule's final ``state`` holds (-1: it never dropped);
    None for a schedule without a drop (what :class:`~.trajectory.Trajectory` stores as ``drop``)."""
    return int(state) if sched.drops else None
