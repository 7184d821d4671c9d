"""How an ensemble's members draw their trials: members with the same task and seed share them."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..core._checks import check_seed, is_int
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ._loop import _batch_shapes, _epoch_keys


def _stack_batch(batch: Batch) -> Batch:
    return Batch.tree_unflatten((batch.dt, batch.loss), tuple(jnp.asarray(a)[None] for a in
                                                               (batch.inputs, batch.targets, batch.mask)))


@dataclass(frozen=True)
class _Members:
    """How the ensemble's members draw their trials (built by :func:`_members`, which returns the
    distinct tasks, the groups, alongside).

    Attributes
    ----------
    seeds : tuple of tuples of int
        Per group, the distinct seeds of its members in increasing order (``(0,)`` for a fixed
        Batch): every (group, seed) draws one batch per epoch.
    row : tuple of int
        Per member, its batch's row in those batches concatenated group by group, seeds in order.
    batch : tuple
        The shapes shared by every member's batch: (inputs shape (B, T, Din), targets shape
        (B, T, Dout), dt, loss).
    """

    seeds: tuple
    row: tuple
    batch: tuple


# A pytree: the seeds are leaves (traced, so that runs differing only in their seeds share one
# compiled loop), the rows and batch shapes its static structure.
jax.tree_util.register_pytree_node(
    _Members, lambda m: ((m.seeds,), (m.row, m.batch)), lambda aux, leaves: _Members(leaves[0], *aux))


def _members(arch, tasks, seeds, E):
    """Group the members by task (equal samplers, or the same Batch object) and seed."""
    if isinstance(tasks, (Batch,)) or callable(tasks):
        tasks = [tasks] * E
    tasks = list(tasks)
    if len(tasks) != E:
        raise InvalidParameterError(f"tasks must be one task or a sequence of {E} (one per member), got {len(tasks)}")
    if is_int(seeds):
        seeds = [check_seed(seeds, "seeds")] * E
    seeds = list(seeds)
    if len(seeds) != E:
        raise InvalidParameterError(f"seeds must be one int or a sequence of {E} ints, got {len(seeds)}")
    for i, s_ in enumerate(seeds):
        check_seed(s_, f"seeds[{i}]")
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
