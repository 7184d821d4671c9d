"""The large-N limit of learning without the Gaussian closure: a moving quadrature (book/theory.md, section 7).

Row ``i`` of ``X`` (its K connectivity entries ``x_i = (M_i, U_i, V_i, Z_i)``) sees the rest of
the network only through averages over neurons: the activity is ``h_{i,t} = M_i kappa_t +
U_i lambda_t`` exactly, the recurrence and the readout read ``(1/N) sum_i V_i phi(h_{i,t})`` and
``(1/N) sum_i Z_i phi(h_{i,t+1})``, and the adjoint of the recurrence is built from such averages
too. With the full-network learner's rate ``eta N`` one epoch of gradient descent moves every row
by one deterministic map,

    x_i  ->  x_i - eta f(x_i),      f(x_i) = N dL/dx_i   (plastic columns only),

whose global arguments are averages. As ``N -> infinity`` with rows i.i.d. from a distribution
``mu`` on R^K the averages become expectations over ``mu`` and learning transports ``mu`` by the
map. This module represents ``mu`` by quadrature nodes ``x_k`` with weights ``w_k`` (sum 1),
replaces every average ``(1/N) sum_i`` by ``sum_k w_k``, and moves every node by the same map:
a "network" whose neurons are the nodes. Since ``E_mu_e[F] = E_mu_0[F o T_e]`` for the composed
transport ``T_e``, the error is the quadrature error of the smooth integrands ``F o T_e`` on the
initial distribution, not ``1/sqrt(N)`` sampling noise.

Per-row gradient (derived afresh; tested against automatic differentiation of the full network).
With ``e_t = dL/dy_t`` and the adjoint ``g_t = dL/dlambda_t`` (``g_{T+1} = 0``), for ``t = T..1``::

    s_{k,t} = phi'(h_{k,t}) (Z_k . e_{t-1} + dt V_k . g_{t+1})          (= N dL/dh_{k,t})
    g_t     = (1 - dt) g_{t+1} + sum_k w_k s_{k,t} U_k
    f_M(k)  = sum_t s_{k,t} kappa_t,      f_U(k) = sum_t s_{k,t} lambda_t,
    f_V(k)  = dt sum_t phi(h_{k,t}) g_{t+1},   f_Z(k) = sum_t phi(h_{k,t}) e_{t-1}

(summed over the trials of the batch). ``f`` is computed without the weights, so nodes with tiny
or negative weights move exactly like the others.

Nodes for a Gaussian ``N(0, Sigma0)`` (:func:`mean_field_nodes`): reference nodes ``xi_k`` for the
standard normal in K dimensions, coloured by the lower-triangular root ``L`` of ``Sigma0``
(``x_k = L xi_k``, columns in the order M, U, V, Z, so that at the start ``h`` depends on the
first ``n_in + rank`` reference coordinates only and ``V``, ``Z`` enter linearly):

* ``"gauss_hermite"``: the tensor product of ``n`` probabilists' Gauss-Hermite points per dimension
  (``n^K`` nodes), or an anisotropic grid (one count per reference coordinate). Exact for
  polynomials of degree ``<= 2n - 1`` in each coordinate, so second moments are exact for
  ``n >= 2`` (the linear case is then exact to rounding). For erf units (``phi'`` entire) the
  error falls geometrically in ``n`` (at epoch 0 about 0.4 per point; measured in
  ``tests/test_mean_field.py``); for tanh (poles of ``sech^2``) like ``exp(-c sqrt(n))``. After
  training the error stays geometric (E9 job, erf, 200 epochs at rate 0.2: largest overlap error
  1.4e-2, 2.9e-3, 5.3e-4, 1.6e-4, 6.0e-5 for n = 4..8 per dimension). The moved integrands
  depend more strongly on the (m, u) coordinates, which set the pre-activation at the start, so
  anisotropic grids with more points there pay: (8, 8, 4, 4), 1024 nodes, reaches 8e-5
  (``benchmarks/bench_mean_field.py``).
* ``"qmc"``: ``n`` scrambled Sobol points mapped through the normal quantile, weights ``1/n``
  (error ``O(n^-1 log(n)^K)`` for smooth integrands, against ``n^-1/2`` for Monte Carlo); a
  baseline for K too large for a tensor grid. Second moments are not exact.
* a :class:`NodeCloud` of your own (any initial distribution, e.g. the rows of a network).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm, qmc

from ..core import _network_kernel
from ..core._checks import check_choice, check_int, check_seed
from ..core.activations import is_linear, phi
from ..core.architecture import Architecture
from ..core.batch import Batch, loss_weight
from ..core.errors import DivergenceError, InvalidParameterError
from ..core.latent import _UNROLL, latent_inputs
from ..core.overlaps import validate_sigma
from ._loop import (
    _check_run_args,
    _chunk_size,
    _partition_task,
    _recorded_drop,
    _run_chunks,
    _scan_epochs,
)
from ._members import _ensemble_batch, _members
from .trajectory import EnsembleTrajectory, Trajectory

__all__ = [
    "NODE_SCHEMES",
    "NodeCloud",
    "learn_mean_field",
    "learn_mean_field_ensemble",
    "mean_field_gradient",
    "mean_field_nodes",
]

NODE_SCHEMES = ("gauss_hermite", "qmc")
# Largest node cloud built by default (nodes x members); a tensor grid grows as n^K.
_MAX_NODES = 2_000_000
_SQRT_PI_2 = float(np.sqrt(np.pi) / 2.0)


# ----------------------------------------------------------------------------- node clouds
@dataclass(frozen=True)
class NodeCloud:
    """Quadrature nodes and weights for a distribution of rows on R^K.

    Attributes
    ----------
    nodes : ndarray (n, K), or (E, n, K) for an ensemble
        Node positions, columns in ``arch.vector_names`` order.
    weights : ndarray (n,)
        Quadrature weights (summing to 1; shared by the members of an ensemble). Averages over
        neurons are ``sum_k weights[k] F(nodes[k])``.
    scheme : str
        How the nodes were built (``"gauss_hermite"``, ``"qmc"`` or ``"custom"``).
    """

    nodes: np.ndarray
    weights: np.ndarray
    scheme: str = "custom"

    @property
    def n_nodes(self) -> int:
        return int(np.shape(self.weights)[0])

    def sigma(self) -> np.ndarray:
        """Second moments ``sum_k w_k x_k x_k^T``: (K, K), or (E, K, K) for an ensemble."""
        X = np.asarray(self.nodes)
        return np.einsum("n,...ni,...nj->...ij", np.asarray(self.weights), X, X)


def _lower_root(S: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L^T = S`` for a symmetric PSD ``S`` (K, K): Cholesky, with
    the columns of zero (rounding-level) pivots set to zero, so that singular ``S`` works."""
    K = S.shape[0]
    L = np.zeros_like(S, dtype=float)
    tol = 1e-13 * max(1.0, float(np.max(np.abs(np.diag(S)))))
    for j in range(K):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= tol:
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (S[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


def _gauss_hermite_1d(n: int):
    """Probabilists' Gauss-Hermite points and weights (summing to 1) for N(0, 1), ``n`` points."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _reference_nodes(K: int, n, scheme: str, seed: int, prune: float):
    """Standard-normal reference nodes (m, K) and weights (m,) of ``scheme`` (``n``: a tuple of K
    point counts for the tensor grid, an int for QMC)."""
    if scheme == "gauss_hermite":
        rules = [_gauss_hermite_1d(k) for k in n]
        xi = np.stack([g.ravel() for g in np.meshgrid(*[r[0] for r in rules], indexing="ij")], axis=1)
        w = np.prod(np.stack([g.ravel() for g in np.meshgrid(*[r[1] for r in rules], indexing="ij")], axis=1),
                    axis=1)
        keep = w >= prune * w.max()
        return xi[keep], w[keep] / w[keep].sum()
    u = qmc.Sobol(K, scramble=True, seed=seed).random(n)
    return norm.ppf(u), np.full(n, 1.0 / n)


def _check_nodes(arch, nodes, scheme):
    """``nodes`` as a tuple of K point counts (tensor grid) or an int (QMC)."""
    if scheme == "gauss_hermite":
        if isinstance(nodes, (tuple, list, np.ndarray)):
            if len(nodes) != arch.K:
                raise InvalidParameterError(f"nodes must be one int or {arch.K} ints (one per vector), got {nodes!r}")
            return tuple(check_int(f"nodes[{i}]", k, 1) for i, k in enumerate(nodes))
        return (check_int("nodes", nodes, 1),) * arch.K
    return check_int("nodes", nodes, 1)


def mean_field_nodes(arch: Architecture, Sigma0, nodes=8, scheme: str = "gauss_hermite",
                     seed: int = 0, prune: float = 0.0) -> NodeCloud:
    """Quadrature nodes for Gaussian rows ``N(0, Sigma0)``.

    Parameters
    ----------
    Sigma0 : array (K, K) or (E, K, K)
        Covariance of the rows (symmetric PSD); a stack gives one cloud per member, built from the
        same reference nodes.
    nodes : int or sequence of K ints
        ``gauss_hermite``: points per dimension (one int: the same in every dimension, ``n^K``
        nodes; K ints: an anisotropic grid, one count per reference coordinate, in the order of
        ``arch.vector_names``); ``qmc``: the number of nodes (an int).
    scheme : {"gauss_hermite", "qmc"}
    seed : int
        Scrambling of the Sobol points (``qmc`` only).
    prune : float
        ``gauss_hermite`` only: drop the nodes whose weight is below ``prune`` times the largest
        (their total weight bounds what they could add to an average of a bounded integrand);
        the remaining weights are renormalised to sum 1. 0 keeps all.

    Returns
    -------
    NodeCloud with ``nodes`` (n, K) or (E, n, K) and ``weights`` (n,).
    """
    check_choice("scheme", scheme, NODE_SCHEMES)
    n = _check_nodes(arch, nodes, scheme)
    check_seed(seed)
    if not (isinstance(prune, (int, float, np.floating)) and 0.0 <= prune < 1.0):
        raise InvalidParameterError(f"prune must be a number in [0, 1), got {prune!r}")
    arr = np.asarray(Sigma0, dtype=float)
    stack = arr.ndim == 3
    S = arr if stack else arr[None]
    if S.ndim != 3 or S.shape[1:] != (arch.K, arch.K):
        raise InvalidParameterError(f"Sigma0 must have shape ({arch.K}, {arch.K}) or (E, {arch.K}, {arch.K}), "
                                    f"got {arr.shape}")
    total = (int(np.prod(n)) if scheme == "gauss_hermite" else n) * S.shape[0]
    if total > _MAX_NODES:
        raise InvalidParameterError(
            f"nodes: {scheme} with nodes={nodes!r} in K={arch.K} dimensions gives {total} nodes (all members), "
            f"more than {_MAX_NODES}; use fewer points or scheme='qmc'")
    xi, w = _reference_nodes(arch.K, n, scheme, seed, float(prune))
    roots = [_lower_root(validate_sigma(arch, s, f"Sigma0[{i}]" if stack else "Sigma0")) for i, s in enumerate(S)]
    X = np.stack([xi @ L.T for L in roots])
    return NodeCloud(X if stack else X[0], w, scheme)


# ----------------------------------------------------------------------------- the per-row map
def _dphi(act, h, p):
    """``phi'(h)`` given ``p = phi(h)``."""
    if is_linear(act):
        return jnp.ones_like(h)
    if act == "erf":
        return jnp.exp(-(_SQRT_PI_2 * h) ** 2)
    return 1.0 - p * p


def _rows(a, Y):
    """``a @ Y.T`` for ``a`` (B, J) and ``Y`` (n, J), J small: a sum of broadcast products, which
    XLA fuses with the elementwise work around it (a dot with a 1-4 wide inner dimension costs more
    in dispatch than in arithmetic)."""
    out = a[:, 0:1] * Y[None, :, 0]
    for j in range(1, a.shape[1]):
        out = out + a[:, j:j + 1] * Y[None, :, j]
    return out


def _outer_sum(S, a):
    """``S.T @ a`` for ``S`` (B, n) and ``a`` (B, J): (n, J), summed over the B trials."""
    return S.T @ a


def _node_sum(S, Y):
    """``S @ Y`` for ``S`` (B, n) and ``Y`` (n, J): (B, J), a sum over the nodes."""
    return S @ Y


def _value_and_rowgrad(arch: Architecture, X, w, inputs, targets, mask, dt, kind):
    """Loss and per-node gradient ``f`` (n, K) of the weighted "network" whose neurons are the nodes.

    ``X`` (n, K), ``w`` (n,), ``inputs`` (B, T, Din), ``targets`` and ``mask`` (B, T, Dout).
    ``f[k] = dL/dx_k / w_k`` (computed without dividing by the weight): the rate-``eta N`` update
    of the full network is ``x_k - eta f[k]``. The backward pass recomputes ``phi(h_t)`` step by
    step (memory O(nodes); storing every step's values was slower on CPU, memory-bound).
    """
    act = arch.activation
    s = arch.slices
    M, U, V, Z = X[:, s["M"]], X[:, s["U"]], X[:, s["V"]], X[:, s["Z"]]
    B, R, n = inputs.shape[0], arch.rank, X.shape[0]
    kappa = latent_inputs(inputs, dt)                               # (B, T+1, Din)
    readout = jnp.concatenate([V, Z], axis=1) * w[:, None]          # (n, R + Dout)
    phi0 = phi(act, jnp.zeros((), X.dtype))
    r0 = jnp.broadcast_to(phi0 * (w @ V), (B, R))
    k_next = jnp.swapaxes(kappa[:, 1:], 0, 1)                        # kappa_t for t = 1..T, (T, B, Din)

    def fwd(carry, k_new):
        lam, r = carry
        lam_new = lam + dt * (-lam + r)
        out = _node_sum(phi(act, _rows(lam_new, U) + _rows(k_new, M)), readout)   # (B, R + Dout)
        return (lam_new, out[:, :R]), (out[:, R:], lam_new)

    _, (ys, lams) = jax.lax.scan(fwd, (jnp.zeros_like(r0), r0), k_next, unroll=_UNROLL)
                                       # (T, B, Dout), lambda_t (T, B, R)
    tg = jnp.swapaxes(targets, 0, 1)
    mk = jnp.swapaxes(mask, 0, 1)
    c = loss_weight(kind, dt, B, jnp.sum(mask))
    err = ys - tg
    loss = c * jnp.sum(mk * err * err)
    e = 2.0 * c * mk * err                                           # e_{t-1} for t = 1..T, (T, B, Dout)
    zeros = lambda d: jnp.zeros((n, d), X.dtype)

    def bwd(carry, xs):
        g_next, fM, fU, fV, fZ = carry
        k_t, lam_t, e_prev = xs
        h = _rows(lam_t, U) + _rows(k_t, M)                          # (B, n)
        p = phi(act, h)
        sk = _dphi(act, h, p) * (_rows(e_prev, Z) + dt * _rows(g_next, V))   # N dL/dh_t, (B, n)
        g_t = (1.0 - dt) * g_next + _node_sum(sk * w, U)
        return (g_t, fM + _outer_sum(sk, k_t), fU + _outer_sum(sk, lam_t), fV + dt * _outer_sum(p, g_next),
                fZ + _outer_sum(p, e_prev)), None

    init = (jnp.zeros((B, R), X.dtype), zeros(arch.n_in), zeros(R), zeros(R), zeros(arch.n_out))
    (g1, fM, fU, fV, fZ), _ = jax.lax.scan(bwd, init, (k_next[::-1], lams[::-1], e[::-1]), unroll=_UNROLL)
    # t = 0: h_0 = 0 and kappa_0 = lambda_0 = 0; only V's term phi(0) g_1 can be non-zero.
    fV = fV + dt * phi0 * jnp.broadcast_to(jnp.sum(g1, axis=0), fV.shape)
    return loss, jnp.concatenate([fM, fU, fV, fZ], axis=1)


@partial(jax.jit, static_argnums=0)
def _gradient_jit(arch, X, w, batch):
    return _value_and_rowgrad(arch, X, w, batch.inputs, batch.targets, batch.mask, batch.dt, batch.loss)


def mean_field_gradient(arch: Architecture, nodes, weights, batch: Batch):
    """Loss and per-row gradient of the quadrature "network" whose neurons are the nodes.

    Parameters
    ----------
    nodes : array (n, K)
    weights : array (n,)
        Quadrature weights (the network average ``(1/N) sum_i`` becomes ``sum_k weights[k]``).
    batch : Batch

    Returns
    -------
    loss : scalar;  f : array (n, K), with ``f[k] = dL/dx_k / w_k``: one epoch of gradient descent
    with rate ``eta`` (the full-network convention ``x <- x - eta N dL/dx``) moves node ``k`` to
    ``nodes[k] - eta f[k]`` (plastic columns only). With ``weights = 1/N`` and the rows of a
    network as nodes, this is exactly that network's update.
    """
    X = jnp.asarray(nodes)
    w = jnp.asarray(weights, X.dtype)
    if X.ndim != 2 or X.shape[1] != arch.K or w.shape != (X.shape[0],):
        raise InvalidParameterError(f"nodes must be (n, {arch.K}) and weights (n,), got {X.shape} and {w.shape}")
    if not isinstance(batch, Batch):
        raise InvalidParameterError(f"batch must be a Batch, got {type(batch).__name__}")
    if batch.inputs.shape[-1] != arch.n_in or batch.targets.shape[-1] != arch.n_out:
        raise InvalidParameterError(f"batch: inputs/targets must end in n_in={arch.n_in}, n_out={arch.n_out}")
    return _gradient_jit(arch, X, w, batch)


# ----------------------------------------------------------------------------- the learners
@partial(jax.jit, static_argnames=("arch", "static", "C", "compiled"))
def _mf_chunk(state, start, end, dynamic, w, plastic, *, arch, static, members, sched, C, compiled=False):
    X0, _ = state
    E, _, K = X0.shape
    dtype = X0.dtype
    rate = jax.vmap(sched.rate, in_axes=(0, None, 0))

    def one(X, inputs, targets, mask, dt, kind):
        if compiled:  # the full network's numba kernel with the nodes' weights: the same map
            return _network_kernel.arrays_value_and_grad(arch, X, inputs, targets, mask, dt, kind, w)
        return _value_and_rowgrad(arch, X, w, inputs, targets, mask, dt, kind)

    def step(carry, e):
        X, sstate = carry
        batch, row = _ensemble_batch(static, dynamic, members, e)
        ins, tgs, mks = (jnp.take(jnp.asarray(getattr(batch, f), dtype), row, axis=0)
                         for f in ("inputs", "targets", "mask"))
        loss, f = jax.vmap(lambda X_, i_, t_, m_: one(X_, i_, t_, m_, batch.dt, batch.loss))(X, ins, tgs, mks)
        sigma = jnp.einsum("n,eni,enj->eij", w, X, X)
        sigma = 0.5 * (sigma + jnp.swapaxes(sigma, -1, -2))
        lr, sstate = rate(sstate, e, loss)
        lr = jnp.asarray(lr, dtype)
        X_new = X - lr[:, None, None] * f * plastic
        return (X_new, sstate), (loss, sigma, lr)

    nan = jnp.full((E,), jnp.nan, dtype)
    return _scan_epochs(step, state, start, end, C, (nan, jnp.full((E, K, K), jnp.nan, dtype), nan))


def _start_cloud(arch, Sigma0, nodes, ensemble):
    """The initial nodes (E, n, K), weights (n,) and scheme, from a Gaussian ``Sigma0`` and grid
    ``nodes``, or from a NodeCloud ``nodes`` (then ``Sigma0`` is None)."""
    if isinstance(nodes, NodeCloud):
        if Sigma0 is not None:
            raise InvalidParameterError("Sigma0 must be None when nodes is a NodeCloud (the cloud is the start)")
        X = np.asarray(nodes.nodes)
        w = np.asarray(nodes.weights)
        want = 3 if ensemble else 2
        if X.ndim != want or X.shape[-1] != arch.K or w.shape != (X.shape[-2],):
            shape = f"(E, n, {arch.K})" if ensemble else f"(n, {arch.K})"
            raise InvalidParameterError(f"nodes: the NodeCloud needs nodes {shape} and weights (n,), "
                                        f"got {X.shape} and {w.shape}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(w))):
            raise InvalidParameterError("nodes: the NodeCloud has non-finite nodes or weights")
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        X = X if ensemble else X[None]
        return X.astype(dtype), w.astype(dtype), nodes.scheme
    if Sigma0 is None:
        raise InvalidParameterError("Sigma0 is None: give the initial overlaps, or a NodeCloud as nodes")
    arr = np.asarray(Sigma0)
    if ensemble and (arr.ndim != 3 or arr.shape[0] < 1):
        raise InvalidParameterError(f"Sigma0 must have shape (E, {arch.K}, {arch.K}) for an ensemble, got {arr.shape}")
    if not ensemble and arr.ndim != 2:
        raise InvalidParameterError(f"Sigma0 must have shape ({arch.K}, {arch.K}), got {arr.shape}")
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    cloud = mean_field_nodes(arch, arr if ensemble else arr[None], nodes)
    return cloud.nodes.astype(dtype), cloud.weights.astype(dtype), cloud.scheme


def _learn_stack(arch, X0, w, tasks, sched, epochs, plastic, seeds, progress, record_every, desc, kernel):
    check_int("record_every", record_every, 1)
    E = X0.shape[0]
    Xj = jnp.asarray(X0)
    mask = jnp.asarray(arch.plasticity_mask(plastic), dtype=Xj.dtype)
    groups, members = _members(arch, tasks, seeds, E)
    dynamic, static = _partition_task(groups)
    C = _chunk_size(epochs)
    fn = partial(_mf_chunk, dynamic=dynamic, w=jnp.asarray(w, Xj.dtype), plastic=mask, arch=arch, static=static,
                 members=members, sched=sched, C=C, compiled=_network_kernel.choose(
                     kernel, arch, Xj.dtype, work=Xj.shape[1] * members.batch[0][0] * members.batch[0][1]))
    sstate0 = jnp.broadcast_to(sched.initial, (E,))
    (X, sstate), loss, sigma, rec, lrs = _run_chunks(fn, (Xj, sstate0), epochs, sched, progress, desc,
                                                      record_every, member_axis=True)
    X = np.asarray(X)
    if not np.all(np.isfinite(X)):
        raise DivergenceError(epochs, float(np.max(lrs[-1])), "node positions after the last update")
    final = np.einsum("n,eni,enj->eij", np.asarray(w), X, X)
    return X, 0.5 * (final + np.swapaxes(final, -1, -2)), loss, sigma, rec, lrs, np.asarray(sstate)


def learn_mean_field(arch: Architecture, Sigma0, task, lr, epochs: int, nodes=8, plastic=None, seed: int = 0,
                     return_nodes: bool = False, progress: bool | None = None, kernel: str = "auto"):
    """Learning in the large-N limit, with the distribution of rows moved by a quadrature (no Gaussian closure).

    Parameters
    ----------
    arch : Architecture
        Any rank, input and output dimension; linear, erf or tanh units.
    Sigma0 : array (K, K), or None
        Covariance of the Gaussian initial rows (second moments; zero mean). Its dtype sets the
        precision (float64 unless float32 given; float32 runs about 3x faster on CPU). None when
        ``nodes`` is a :class:`NodeCloud`.
    task : Batch or callable ``key -> Batch``
        As in :func:`~lowrank_learning.learn_vectors` (same keys, hence the same trials, per seed).
    lr : float or Schedule
        The overlap-space rate eta of the full-network learner: every node moves by ``eta f``,
        ``f = N dL/dx`` (see :func:`mean_field_gradient`).
    epochs : int
    nodes : int, sequence of K ints, or NodeCloud
        Gauss-Hermite points per dimension (see :func:`mean_field_nodes`), or the initial nodes
        and weights themselves (any distribution, any scheme; nodes (n, K), its dtype the
        precision).
    plastic : None, names or bool array (K,)
    seed : int
        Seeds the trial sampler.
    return_nodes : bool
        Also return the moved nodes.
    kernel : {"auto", "numba", "xla"}
        As in :func:`~lowrank_learning.learn_vectors`: the nodes form a weighted "network", so
        float32 clouds on a CPU run the full network's compiled kernel (``auto``), float64 clouds
        XLA.

    Returns
    -------
    Trajectory with ``loss`` (epochs,) (the limit's loss before each update), ``sigma``
    (epochs, K, K) (the node cloud's second moments ``sum_k w_k x_k x_k^T`` before each update),
    ``final_sigma``, ``lrs``; method ``"mean_field"``. With ``return_nodes``: the pair
    ``(trajectory, NodeCloud)``, the cloud holding the nodes (n, K) after the last update and their weights.
    """
    sched = _check_run_args(lr, epochs)
    check_seed(seed)
    X0, w, sch = _start_cloud(arch, Sigma0, nodes, False)
    _partition_task(task)
    X, final, loss, sigma, _, lrs, sstate = _learn_stack(arch, X0, w, task, sched, epochs, plastic, seed, progress, 1,
                                                        f"mean field ({X0.shape[1]} nodes)", kernel)
    traj = Trajectory(arch, loss[:, 0], sigma[:, 0], final[0], sched.first, "mean_field", lrs=lrs[:, 0],
                      drop=_recorded_drop(sched, sstate[0]))
    return (traj, NodeCloud(X[0], np.asarray(w), sch)) if return_nodes else traj


def learn_mean_field_ensemble(arch: Architecture, Sigma0, tasks, lr, epochs: int, nodes=8, plastic=None, seeds=0,
                              record_every: int = 1, return_nodes: bool = False,
                              progress: bool | None = None, kernel: str = "auto"):
    """Many independent :func:`learn_mean_field` runs in one compiled loop.

    Parameters
    ----------
    Sigma0 : array (E, K, K), or None
        The members' initial Gaussian overlaps (each member's nodes from the same reference
        nodes); None when ``nodes`` is a NodeCloud with nodes (E, n, K).
    nodes : int, sequence of K ints, or NodeCloud
    tasks : task, or sequence of E tasks;  seeds : int or sequence of E ints
        As in :func:`~lowrank_learning.learn_overlaps_ensemble` (members with the same task and
        seed share their trials).
    record_every : int
        Record the overlaps every this many epochs (the loss at every epoch).
    kernel : {"auto", "numba", "xla"}
        As in :func:`learn_mean_field`.

    Returns
    -------
    EnsembleTrajectory (method ``"mean_field"``); with ``return_nodes`` also the NodeCloud with
    nodes (E, n, K) after the last update.
    """
    sched = _check_run_args(lr, epochs)
    X0, w, sch = _start_cloud(arch, Sigma0, nodes, True)
    X, final, loss, sigma, rec, lrs, sstate = _learn_stack(
        arch, X0, w, tasks, sched, epochs, plastic, seeds, progress, record_every,
        f"mean-field ensemble of {X0.shape[0]} ({X0.shape[1]} nodes)", kernel)
    drops = None if not sched.drops else np.asarray(sstate, dtype=int)
    traj = EnsembleTrajectory(arch, np.ascontiguousarray(loss.T), np.ascontiguousarray(np.swapaxes(sigma, 0, 1)),
                              rec, final, sched.first, "mean_field", np.ascontiguousarray(lrs.T), drops)
    return (traj, NodeCloud(X, np.asarray(w), sch)) if return_nodes else traj
