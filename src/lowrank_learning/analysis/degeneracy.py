"""Degeneracy: different networks with the same loss-visible overlaps (book/theory.md, section 4, E4).

The loss reads only the visible overlaps, so every network whose visible overlaps agree computes
the same function. :func:`equivalent_vectors` builds such a network from a given one with chosen
values of some invisible overlaps; :func:`equivalent_overlaps` does the same in overlap space.
Which invisible overlaps a network has shows up in its hidden activity
(:func:`run_noisy_network`) and in how it learns (:func:`learning_speed`).

Construction (any rank, input and output dimension). The vectors named by the targets are split
into a minimal set ``C`` that changes and the rest ``F`` that is kept exactly. The requested Gram
matrix ``Sigma'`` is ``Sigma`` with the targets set. New vectors::

    X_C' = X_F alpha + sqrt(N) Q beta,    Sigma_FF alpha = Sigma'_FC,
    beta^T beta = Sigma'_CC - Sigma'_CF alpha        (Schur complement, must be PSD)

with ``Q`` orthonormal and orthogonal to span(X_F): the part of the old ``X_C`` orthogonal to
span(X_F), completed by fresh random directions. When the targets equal the current values the
vectors come back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, product

import jax
import jax.numpy as jnp
import numpy as np

from ..core._checks import check_finite, check_nonnegative, check_seed, check_vectors
from ..core.architecture import Architecture
from ..core.errors import (
    DivergenceError,
    InvalidParameterError,
    UnreachableOverlapError,
)
from ..core.activations import is_linear
from ..core.latent import run_latent
from ..core.network import check_network_inputs, run_network, scan_network
from ..core.overlaps import overlaps, validate_sigma
from ..learn.overlap_space import learn_overlaps

__all__ = ["equivalent_vectors", "equivalent_overlaps", "run_noisy_network", "epochs_to_reach",
           "learning_speed", "activity_comparison", "speed_summary"]

_RANK_TOL = 1e-10  # relative: singular values / eigenvalues below this count as zero
_PSD_TOL = 1e-10   # relative: a Schur complement eigenvalue below -this is a violation


# --------------------------------------------------------------------------- targets
def _check_targets(arch: Architecture, targets) -> dict[tuple[int, int], float]:
    """Validate ``targets`` (name -> value): known, invisible, finite, each overlap once."""
    if not isinstance(targets, Mapping):
        raise InvalidParameterError(
            f"targets must be a dict overlap name -> value, got {type(targets).__name__}"
        )
    out: dict[tuple[int, int], float] = {}
    for name, value in targets.items():
        try:
            pair = arch.overlap_pair(name)
        except InvalidParameterError:
            raise UnreachableOverlapError(
                f"target {name!r} is not an overlap of this architecture; the invisible overlaps "
                f"that can be set are {arch.invisible_names}"
            ) from None
        canon = arch.overlap_names[arch.overlap_pairs.index(pair)]
        if arch.visible[arch.overlap_pairs.index(pair)]:
            raise UnreachableOverlapError(
                f"target {name!r}: sigma_{canon} is loss-visible for {arch.activation} units, and "
                f"equivalent networks keep every visible overlap {arch.visible_names} unchanged; "
                f"only the invisible ones {arch.invisible_names} can be set"
            )
        if pair in out:
            raise InvalidParameterError(f"target sigma_{canon} is given twice")
        value = check_finite(f"target {name!r}", value)
        i, j = pair
        if i == j and value < 0:
            raise UnreachableOverlapError(
                f"target sigma_{canon} = {value:g} is a squared norm and cannot be negative: "
                "no vectors have these overlaps"
            )
        out[pair] = value
    return out


def _changed_vectors(arch: Architecture, pairs, change) -> tuple[int, ...]:
    """Indices of the vectors to change: ``change`` if given (checked), else a smallest set
    touching every target pair; ties go to the later vectors in ``arch.vector_names``."""
    K = arch.K
    if change is not None:
        names = [change] if isinstance(change, str) else list(change)
        C = tuple(sorted({arch.vector_index(n) for n in names}))
        missed = [arch.overlap_names[arch.overlap_pairs.index(p)] for p in pairs
                  if p[0] not in C and p[1] not in C]
        if missed:
            raise UnreachableOverlapError(
                f"targets {missed} involve none of the vectors to change {names}: an overlap can "
                "only move if one of its two vectors changes"
            )
        return C
    if not pairs:
        return ()
    for size in range(1, K + 1):
        covers = [c for c in combinations(range(K), size)
                  if all(i in c or j in c for i, j in pairs)]
        if covers:
            return max(covers, key=lambda c: sorted(c, reverse=True))
    raise AssertionError("unreachable")  # pragma: no cover


def _describe(arch: Architecture, pairs) -> str:
    return ", ".join(f"sigma_{arch.overlap_names[arch.overlap_pairs.index(p)]}" for p in pairs)


def _plan(arch: Architecture, Sigma: np.ndarray, targets, change):
    """Check that the targets are reachable with the vectors outside C kept; return
    ``(C, F, Sigma', alpha, schur)``. Raises :class:`UnreachableOverlapError` with the reason."""
    tpairs = _check_targets(arch, targets)
    K = arch.K
    C = _changed_vectors(arch, list(tpairs), change)
    F = tuple(k for k in range(K) if k not in C)
    new = np.array(Sigma, dtype=np.float64, copy=True)
    for (i, j), v in tpairs.items():
        new[i, j] = new[j, i] = v
    scale = max(float(np.max(np.abs(new))), np.finfo(float).tiny)
    label = _describe(arch, list(tpairs))
    names_C = [arch.vector_names[k] for k in C]

    # alpha = Sigma_FF^+ Sigma'_FC, after checking that Sigma'_FC lies in the range of Sigma_FF
    S_FF = new[np.ix_(F, F)]
    S_FC = new[np.ix_(F, C)]
    if F:
        w, V = np.linalg.eigh(S_FF)
        keep = w > _RANK_TOL * scale
        alpha = V[:, keep] @ ((V[:, keep].T @ S_FC) / w[keep, None])
        null = V[:, ~keep]  # X_F null = 0: these combinations of kept vectors vanish
        tied = null.T @ S_FC
        if tied.size and np.max(np.abs(tied)) > 1e-8 * scale:
            a, c = np.unravel_index(np.argmax(np.abs(tied)), tied.shape)
            involved = [F[k] for k in np.flatnonzero(np.abs(null[:, a]) > 1e-8)]
            col = C[c]
            kept = [tuple(sorted((f, col))) for f in involved if tuple(sorted((f, col))) not in tpairs]
            vis = [p for p in kept if arch.visible_matrix[p]]
            raise UnreachableOverlapError(
                f"targets {label} are unreachable: the kept vectors "
                f"{[arch.vector_names[f] for f in involved]} are linearly dependent, so their "
                f"overlaps with {arch.vector_names[col]} are tied to each other; reaching the targets "
                f"would require changing {_describe(arch, kept)}"
                + (f", of which {_describe(arch, vis)} loss-visible (visible overlaps are kept)" if vis else "")
            )
    else:
        alpha = np.zeros((0, len(C)))
    schur = new[np.ix_(C, C)] - S_FC.T @ alpha
    schur = 0.5 * (schur + schur.T)
    lo = float(np.linalg.eigvalsh(schur)[0]) if len(C) else 0.0
    if lo < -_PSD_TOL * scale:
        raise UnreachableOverlapError(
            f"targets {label} are unreachable: no vectors have these overlaps. With "
            f"{[arch.vector_names[k] for k in F]} kept and {names_C} changed, the Gram matrix "
            f"would not be positive semi-definite (the Schur complement of the kept vectors has "
            f"smallest eigenvalue {lo:.3g})"
        )
    return C, F, new, alpha, schur


# --------------------------------------------------------------------------- public API
def equivalent_overlaps(arch: Architecture, Sigma, targets: Mapping[str, float], change=None) -> np.ndarray:
    """Overlap matrix ``Sigma'`` (K, K): ``Sigma`` with the invisible ``targets`` set, every other
    overlap (all visible ones among them) unchanged, checked to be realisable by vectors.

    Parameters and errors as in :func:`equivalent_vectors` (without the check on N).
    """
    S = validate_sigma(arch, Sigma)
    _, _, new, _, _ = _plan(arch, S, targets, change)
    return new


def equivalent_vectors(arch: Architecture, X, targets: Mapping[str, float], seed: int = 0,
                       change=None) -> np.ndarray:
    """Vectors with the same loss-visible overlaps as ``X`` and chosen invisible ones.

    Parameters
    ----------
    arch : Architecture
    X : array (N, K)
        Connectivity vectors (columns in ``arch.vector_names`` order).
    targets : dict overlap name -> value
        Values for some loss-invisible overlaps, e.g. ``{"uu": 2.048, "mu": 0.8}``.
    seed : int
        Seeds ``numpy.random.default_rng`` for the fresh directions, needed only when the old
        changed vectors do not supply enough directions orthogonal to the kept ones.
    change : names, optional
        Which vectors may change (e.g. ``["u"]``). Default: a smallest set of vectors touching
        every target (``{"uu", "mu"}`` changes u only; ties go to the later vector in
        ``arch.vector_names``, so ``{"zv"}`` changes z).

    Returns
    -------
    X' : ndarray (N, K), float64
        The kept vectors are those of ``X`` exactly; ``overlaps(X')`` equals ``overlaps(X)``
        except at the targets, which it matches (both to rounding). Targets equal to the current
        values give back ``X``.

    Raises
    ------
    UnreachableOverlapError
        A target names an unknown or a loss-visible overlap, a negative norm, or values that no
        vectors have (the Gram matrix with the targets would not be positive semi-definite: the
        message gives the smallest eigenvalue of the Schur complement), that would require
        changing an overlap that is kept, or that need more than N dimensions.
    """
    X = np.asarray(X, dtype=np.float64)
    check_vectors(X, arch.K, arch.vector_names, "X")
    seed = check_seed(seed)
    N = X.shape[0]
    C, F, new, _, schur = _plan(arch, overlaps(X), targets, change)
    out = X.copy()
    if not C:
        return out
    scale = max(float(np.max(np.abs(new))), np.finfo(float).tiny)
    Uf, base = _kept_span(X[:, F], new[np.ix_(F, C)], scale)
    free = N - Uf.shape[1]
    w, V = np.linalg.eigh(schur)
    w = np.clip(w, 0.0, None)
    need = int(np.sum(w > _RANK_TOL * scale))
    if need > free:
        raise UnreachableOverlapError(
            f"targets {_describe(arch, _check_targets(arch, targets))} are unreachable at N = {N}: "
            f"the kept vectors span {Uf.shape[1]} dimensions and the changed ones need {need} more"
        )
    Q, beta = _changed_directions(X[:, C], Uf, w, V, seed, scale)
    out[:, C] = base + np.sqrt(N) * _perp(Uf, Q) @ beta
    return out


def _perp(Uf, A):
    """``A`` with span(Uf) projected out (twice, for accuracy)."""
    for _ in range(2):
        A = A - Uf @ (Uf.T @ A)
    return A


def _kept_span(X_F, S_FC, scale):
    """``(Uf, X_F alpha)``: an orthonormal basis (N, r) of span(X_F), from the SVD
    ``X_F / sqrt(N) = Uf sf Vf^T``, and the part (N, |C|) of the changed vectors in that span
    (``Sigma_FF alpha = Sigma'_FC``, with ``S_FC`` = ``Sigma'_FC``)."""
    N = X_F.shape[0]
    if X_F.shape[1] == 0:
        return np.zeros((N, 0)), np.zeros((N, S_FC.shape[1]))
    Uf, sf, Vft = np.linalg.svd(X_F / np.sqrt(N), full_matrices=False)
    keep = sf > np.sqrt(_RANK_TOL * scale)
    Uf, sf, Vft = Uf[:, keep], sf[keep], Vft[keep]
    return Uf, np.sqrt(N) * Uf @ ((Vft @ S_FC) / sf[:, None])


def _changed_directions(X_C, Uf, w, V, seed, scale):
    """``(Q, beta)`` of ``X_C' = X_F alpha + sqrt(N) Q beta``, with ``w``, ``V`` the eigenpairs of
    the Schur complement.

    ``Q`` is orthonormal and orthogonal to span(Uf), aligned with the part of the old ``X_C``
    outside that span and completed by fresh random directions; then ``beta`` is the symmetric
    square root of the Schur complement (``Q beta`` is the polar decomposition of that part when
    the complement is unchanged). With fewer free dimensions than changed vectors, ``Q`` has
    one column per free dimension and ``beta`` takes the top of the Schur spectrum.
    """
    N, n_changed = X_C.shape
    A, s, Bt = np.linalg.svd(_perp(Uf, X_C) / np.sqrt(N), full_matrices=False)
    good = s > np.sqrt(_RANK_TOL * scale)
    d = min(n_changed, N - Uf.shape[1])
    cols = _complete_basis(Uf, [A[:, k] for k in np.flatnonzero(good)][:d], d, seed)
    if d < n_changed:
        top = np.argsort(w)[::-1][:d]
        return np.stack(cols, axis=1), np.sqrt(w[top])[:, None] * V[:, top].T
    # fill the directions of A that carried no length with the fresh ones, in order
    Afull = A.copy()
    fresh = iter(cols[int(good.sum()):])
    for k in np.flatnonzero(~good):
        Afull[:, k] = next(fresh)
    return Afull @ Bt, (V * np.sqrt(w)) @ V.T


def _complete_basis(Uf, cols, d, seed):
    """``cols`` (orthonormal, orthogonal to span(Uf)) completed to ``d`` such vectors by random
    ones drawn from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    while len(cols) < d:
        g = _perp(Uf, rng.standard_normal(Uf.shape[0]))
        for c in cols:
            g = g - c * (c @ g)
        for c in cols:
            g = g - c * (c @ g)
        norm = np.linalg.norm(g)
        if norm > 1e-6:
            cols.append(g / norm)
    return cols


# --------------------------------------------------------------------------- activity
def run_noisy_network(arch: Architecture, X, inputs, dt: float, noise_std: float, seed: int = 0,
                      multiplicative: bool = False, return_states: bool = False):
    """Simulate the full network with noise injected into the hidden state at every step.

    ``h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t) + noise_std * xi_t``, with
    ``xi_t`` i.i.d. N(0, 1) per neuron and step (isotropic); with ``multiplicative=True`` the noise
    scales with the activity, ``noise_std * h_t * xi_t`` (elementwise). ``y_t = Z^T phi(h_{t+1}) / N``.
    The noise is drawn from ``jax.random.PRNGKey(seed)``: the same seed gives the same ``xi`` to
    networks of the same N, so their responses can be compared realisation by realisation.

    Parameters
    ----------
    X : array (N, K);  inputs : array (B, T, Din)

    Returns
    -------
    outputs : array (B, T, Dout);  states : array (B, T, N), only if ``return_states``
    """
    X = jnp.asarray(X)
    N = X.shape[0]
    inputs = jnp.asarray(inputs, dtype=X.dtype)
    check_network_inputs(arch, X, inputs, dt, "run_noisy_network")
    noise_std = check_nonnegative("run_noisy_network: noise_std", noise_std)
    seed = check_seed(seed, "run_noisy_network: seed")
    B, T, _ = inputs.shape
    xi = jax.random.normal(jax.random.PRNGKey(seed), (T, B, N), X.dtype)
    return _noisy(arch, X, inputs, xi, float(dt), noise_std, bool(multiplicative), bool(return_states))


def _noisy_impl(arch, X, inputs, xi, dt, noise_std, multiplicative, return_states):
    if multiplicative:
        def kick(h, xi_t):
            return noise_std * xi_t * h
    else:
        def kick(h, xi_t):
            return noise_std * xi_t
    return scan_network(arch, X, inputs, dt, return_states, noise=(kick, xi))


_noisy = jax.jit(_noisy_impl, static_argnums=(0, 4, 5, 6, 7))


# --------------------------------------------------------------------------- learning speed
def epochs_to_reach(loss, level: float) -> int | None:
    """First epoch at which ``loss`` (epochs,) is at or below ``level``; None if it never is."""
    hit = np.flatnonzero(np.asarray(loss) <= level)
    return int(hit[0]) if hit.size else None


def learning_speed(arch: Architecture, Sigma, task, grid: Mapping[str, Sequence[float]], lr: float,
                   epochs: int, level: float, rule: str = "exact", seed: int = 0) -> dict:
    """How fast equivalent networks learn a task, over a grid of invisible overlaps.

    Every grid point is ``Sigma`` with the invisible overlaps in ``grid`` set
    (:func:`equivalent_overlaps`): the same visible overlaps, hence the same initial loss and
    function, at each point. Each is trained in overlap space (:func:`learn_overlaps`).

    Parameters
    ----------
    Sigma : array (K, K)
    task : Batch or sampler
    grid : dict overlap name -> values
        The grid is their Cartesian product, axes in the order of the dict.
    lr, epochs, rule, seed : as in :func:`learn_overlaps`
    level : float
        Loss threshold for the learning speed.

    Returns
    -------
    dict with ``names`` (tuple of the swept overlaps), ``values`` (tuple of arrays),
    ``epochs`` (float array, the grid's shape: epochs to reach ``level``; ``inf`` if not reached
    in time, ``nan`` where the point is unreachable or training diverged), ``final_loss``
    (same shape, ``nan`` where unreachable), ``reachable`` and ``diverged`` (bool arrays).
    """
    if not isinstance(grid, Mapping) or not grid:
        raise InvalidParameterError("grid must be a non-empty dict overlap name -> values")
    names = tuple(grid)
    values = tuple(np.asarray(grid[n], dtype=float).ravel() for n in names)
    shape = tuple(len(v) for v in values)
    speed = np.full(shape, np.nan)
    final = np.full(shape, np.nan)
    reachable = np.zeros(shape, dtype=bool)
    diverged = np.zeros(shape, dtype=bool)
    S0 = validate_sigma(arch, Sigma)
    for idx in product(*(range(n) for n in shape)):
        try:
            S = equivalent_overlaps(arch, S0, {n: values[k][i] for k, (n, i) in enumerate(zip(names, idx))})
        except UnreachableOverlapError:
            continue
        reachable[idx] = True
        try:
            tr = learn_overlaps(arch, S, task, lr=lr, epochs=epochs, rule=rule, seed=seed, progress=False)
        except DivergenceError:
            diverged[idx] = True
            final[idx] = np.inf
            continue
        hit = epochs_to_reach(tr.loss, level)
        speed[idx] = np.inf if hit is None else hit
        final[idx] = tr.loss[-1]
    return {"names": names, "values": values, "epochs": speed, "final_loss": final,
            "reachable": reachable, "diverged": diverged}


def activity_comparison(arch: Architecture, X1, X2, inputs, dt: float) -> dict:
    """Two linear networks that differ only in ``U``: their outputs, hidden activity, and the
    latent theory of both (the degeneracy chapter's "same function, different activity").

    The latents ``kappa``, ``lambda`` of a linear network depend on the visible overlaps only, the
    same for both networks (:func:`~lowrank_learning.run_latent`), so ``h_2 - h_1 = (U_2 - U_1)
    lambda_t`` and ``|h_2 - h_1|^2 / N = lambda^T D lambda`` with ``D = (U_2 - U_1)^T (U_2 - U_1) / N``;
    the activity itself is ``|h_1|^2 / N = [kappa; lambda]^T Sigma_[MU],[MU] [kappa; lambda]``.

    Parameters
    ----------
    X1, X2 : arrays (N, K)
        Vectors of the two networks; only the ``U`` columns may differ.
    inputs : array (B, T, n_in)

    Returns
    -------
    dict with ``y1``, ``y2`` (B, T, n_out) outputs; ``h1``, ``h2`` (B, T, N) hidden states;
    ``out_diff`` (largest output difference) and ``out_rel`` (relative to the largest output);
    for the first input: ``rms1`` (T,) ``|h_1|/sqrt(N)``, ``diff`` (T,) ``|h_2 - h_1|/sqrt(N)``,
    ``rms1_theory``, ``diff_theory`` (T,) the latent theory of both, ``theory_err`` (largest relative
    error of the theory: of ``rms1`` pointwise, of ``diff`` relative to its maximum) and ``h_ratio``
    (mean difference over mean activity).
    """
    if not is_linear(arch.activation):
        raise InvalidParameterError(f"activity_comparison: the latent theory is exact for linear units only, "
                                    f"got activation {arch.activation!r}")
    X1 = np.asarray(X1, dtype=float)
    X2 = np.asarray(X2, dtype=float)
    check_vectors(X1, arch.K, arch.vector_names, name="X1")
    check_vectors(X2, arch.K, arch.vector_names, name="X2")
    if X1.shape != X2.shape:
        raise InvalidParameterError(f"X2 has shape {X2.shape}, X1 {X1.shape}: two networks of the same size")
    other = np.ones(arch.K, bool)
    other[arch.slices["U"]] = False
    if not np.array_equal(X1[:, other], X2[:, other]):
        raise InvalidParameterError("X2 differs from X1 outside the U columns; only U may differ")
    N = X1.shape[0]
    (y1, h1), (y2, h2) = (map(np.asarray, run_network(arch, X, inputs, dt, return_states=True)) for X in (X1, X2))
    out_diff = float(np.max(np.abs(y1 - y2)))
    S1 = np.asarray(overlaps(X1))
    _, (kappa, lam) = run_latent(arch, S1, inputs, dt, return_latents=True)
    kappa, lam = np.asarray(kappa)[0, 1:], np.asarray(lam)[0, 1:]  # first input, state after each step
    kl = np.concatenate([kappa, lam], axis=-1)
    MU = np.r_[np.arange(arch.K)[arch.slices["M"]], np.arange(arch.K)[arch.slices["U"]]]
    rms1_theory = np.sqrt(np.einsum("ti,ij,tj->t", kl, S1[np.ix_(MU, MU)], kl))
    dU = (X2 - X1)[:, arch.slices["U"]]
    diff_theory = np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", lam, dU.T @ dU / N, lam), 0.0))
    rms1 = np.linalg.norm(h1[0], axis=-1) / np.sqrt(N)
    diff = np.linalg.norm(h2[0] - h1[0], axis=-1) / np.sqrt(N)
    theory_err = max(float(np.max(np.abs(rms1 - rms1_theory) / rms1_theory)),
                     float(np.max(np.abs(diff - diff_theory)) / np.max(diff)) if np.max(diff) > 0 else 0.0)
    return {"y1": y1, "y2": y2, "h1": h1, "h2": h2, "out_diff": out_diff,
            "out_rel": out_diff / float(np.max(np.abs(y1))), "rms1": rms1, "diff": diff,
            "rms1_theory": rms1_theory, "diff_theory": diff_theory, "theory_err": theory_err,
            "h_ratio": float(np.mean(diff) / np.mean(rms1))}


def speed_summary(sweep: dict, lines: Mapping[str, dict] | None = None) -> dict:
    """Summary of :func:`learning_speed` results (the degeneracy chapter's sweep).

    Parameters
    ----------
    sweep : dict
        A :func:`learning_speed` result (its ``epochs`` and ``reachable``).
    lines : dict overlap name -> learning_speed result, optional
        One-overlap-at-a-time sweeps.

    Returns
    -------
    dict with ``n_reachable`` (grid points where vectors with these overlaps exist), ``n_reached``
    (of those, the ones that reached the level), ``n_missed`` (did not reach it within the run:
    ``inf``), ``n_failed`` (reachable but diverged: ``nan``), ``min``, ``max`` and ``ratio`` of the
    epochs over the points that reached it (None when none did); with ``lines``, ``spread``
    (overlap name -> max/min epochs over its finite points, None with fewer than one) and
    ``order`` (the names by decreasing spread, those without one last).
    """
    E = np.asarray(sweep["epochs"], dtype=float)
    reachable = np.asarray(sweep["reachable"], dtype=bool)
    if E.shape != reachable.shape:
        raise InvalidParameterError(f"sweep: epochs {E.shape} and reachable {reachable.shape} differ in shape")
    done = np.isfinite(E)
    out = {"n_reachable": int(reachable.sum()), "n_reached": int(done.sum()), "n_missed": int(np.isinf(E).sum()),
           "n_failed": int((reachable & np.isnan(E)).sum()),
           "min": float(E[done].min()) if done.any() else None,
           "max": float(E[done].max()) if done.any() else None}
    out["ratio"] = out["max"] / out["min"] if done.any() and out["min"] > 0 else None
    if lines is not None:
        spread = {}
        for name, o in lines.items():
            e = np.asarray(o["epochs"], dtype=float)
            e = e[np.isfinite(e)]
            spread[name] = float(e.max() / e.min()) if e.size and e.min() > 0 else None
        out["spread"] = spread
        out["order"] = sorted(spread, key=lambda n: (spread[n] is None, -(spread[n] or 0.0)))
    return out
