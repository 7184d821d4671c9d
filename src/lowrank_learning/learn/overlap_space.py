"""The overlap-space learners (book/theory.md, section 5), with ``G = dL/dSigma``, ``S = G + G^T`` and the
0/1 plasticity mask ``P``::

    exact:  Sigma' = (I - eta P S) Sigma (I - eta S P)
    flow:   dSigma/dtau = -(P S Sigma + Sigma S P), integrated over tau in [eta e, eta (e+1)] (RK4)
    naive:  sigma_vis' = sigma_vis - eta dL/dsigma_vis        (the wrong, visible-only dynamics)

Whole loops are compiled: epochs run inside ``jax.lax.scan`` in chunks (:mod:`._loop`), and Python
only updates the progress bar and checks for divergence between chunks.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core import _kernels
from ..core._checks import check_choice, check_int, check_seed
from ..core.adjoint import ensemble_value_and_grad
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import DivergenceError, InvalidParameterError
from ..core.overlaps import validate_sigma
from ._loop import (
    _check_run_args,
    _chunk_size,
    _partition_task,
    _recorded_drop,
    _run_chunks,
    _scan_epochs,
)
from ._members import _ensemble_batch, _members, _stack_batch
from .hosted import _HOSTED_PIECE, _chunk_batches, _hosted_plan
from .trajectory import EnsembleTrajectory, Trajectory

RULES = ("exact", "flow", "naive")


def _sym_grad(arch, Sigma, batch, row=None, kernel="auto"):
    """Loss and ``S = G + G^T`` for a stack of overlap matrices ``Sigma`` (E, K, K), by the fused
    adjoint (:func:`~lowrank_learning.ensemble_value_and_grad`). The batch arrays are
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


@partial(jax.jit, static_argnames=("arch", "static", "rule", "C", "substeps", "kernel",
                                   "hosted"))
def _overlap_chunk(state, start, end, dynamic, plastic, token=0, *, arch, static, members, rule, sched, C,
                   substeps, kernel, hosted=None):
    """``C`` epochs of the overlap learners. ``hosted`` (None, or ``(per_epoch, dt, loss)``):
    the trials are not drawn here but read on the host from the chunk registered under
    ``token`` (:func:`_chunk_batches`, :class:`~lowrank_learning.core._kernels.HostedBatches`)."""
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


def _learn_overlaps_stack(arch, S0, tasks, sched, epochs, rule, plastic, seeds, substeps, progress,
                          record_every, desc):
    check_choice("rule", rule, RULES)
    check_int("substeps", substeps, 1)
    check_int("record_every", record_every, 1)
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
    """Learning dynamics in overlap space (book/theory.md, section 5): the (K, K) overlap matrix
    learns in place of the (N, K) vectors, whatever N.

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
    (:func:`~lowrank_learning.ensemble_value_and_grad`); this is the ensemble learner
    :func:`learn_overlaps_ensemble` with one member.
    """
    sched = _check_run_args(lr, epochs)
    S0 = _as_sigma(arch, Sigma0, "Sigma0")
    check_seed(seed)
    _partition_task(task)  # a single task: Batch or sampler
    S, loss, sigma, _, lrs, sstate = _learn_overlaps_stack(arch, S0[None], task, sched, epochs, rule, plastic,
                                                            seed, substeps, progress, 1, f"overlaps ({rule})")
    return Trajectory(arch, loss[:, 0], sigma[:, 0], S[0], sched.first, rule, lrs=lrs[:, 0],
                      drop=_recorded_drop(sched, sstate[0]))


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
