"""Predictions for experiments (book/experiments.md, E10): learning as a probe, drift, savings.

Three analyses that turn the paper's closing predictions into numbers:

- **Probe learning.** :func:`degenerate_ensemble` draws networks with the visible overlaps of a
  given one (hence the same behaviour) and random invisible overlaps; :func:`probe_curves`
  trains them all on a new task; :func:`decode_from_curves` asks how much of the invisible
  overlaps a cross-validated ridge regression reads from the learning curve alone, against a
  shuffled-label baseline (scikit-learn's ``permutation_test_score``).
- **Drift.** :func:`drift_overlaps` (label noise, overlap space) and :func:`drift_vectors`
  (update noise, full network) keep trained networks learning with noise at fixed performance;
  :func:`diffusion_coefficient` estimates the diffusion coefficient of a set of coordinates
  from the mean squared displacement, and :func:`overlap_drift` applies it to the visible and
  the invisible overlaps separately.
- **Savings.** :func:`savings_experiment` learns A, then B, then A again (and, as a control,
  A again from the state after B with its invisible overlaps put back to their values before A,
  :func:`reset_invisible`); :func:`savings` turns the loss curves into the relearning savings.

Each prediction ends in a :class:`~lowrank_learning.Verdict` (a test that can come out either way):
:func:`probe_verdict` (permutation tests of the decoding, combined over base networks, one part
per probe task), :func:`drift_ratio_verdict` (exact sign test that the invisible overlaps diffuse
faster than the visible ones, network by network), :func:`behaviour_verdict` (the drifting
networks keep performing the task), :func:`relearning_verdict` and
:func:`invisible_savings_verdict` (exact sign tests on the epochs to criterion; a visit that never
reaches the criterion within its epochs is censored at ``inf`` and kept, see
:func:`never_reached`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import jax
import numpy as np
from scipy import stats as _st
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    KFold,
    cross_val_predict,
    cross_val_score,
    permutation_test_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..core._checks import check_int, check_positive, check_seed
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError, UnreachableOverlapError
from ..core.latent import overlap_loss
from ..core.overlaps import flatten, validate_sigma
from ..learn.overlap_space import learn_overlaps_ensemble
from ..learn.vectors import learn_vectors
from ..tasks import with_label_noise
from .degeneracy import epochs_to_reach, equivalent_overlaps
from .memory import compare_visits, invisible_distance
from .stats import mean_se
from .verdicts import Verdict, combine, decide, sign_test

__all__ = ["DegenerateEnsemble", "degenerate_ensemble", "probe_curves", "curve_features",
           "decode_from_curves", "diffusion_coefficient", "overlap_drift", "drift_overlaps",
           "drift_vectors", "savings", "reset_invisible", "savings_experiment", "never_reached",
           "probe_verdict", "drift_ratio_verdict", "behaviour_verdict", "relearning_verdict",
           "invisible_savings_verdict"]


# --------------------------------------------------------------------------- probe learning
@dataclass(frozen=True)
class DegenerateEnsemble:
    """Networks with the same visible overlaps and random invisible ones.

    Attributes
    ----------
    sigma : ndarray (n, K, K)
        The members' overlaps; every visible overlap equals the base network's.
    invisible : ndarray (n, n_invisible)
        Their invisible overlaps, in ``arch.invisible_names`` order.
    names : tuple of str
        ``arch.invisible_names``.
    n_rejected : int
        Draws that no vectors realise (the Gram matrix was not positive definite), redrawn.
    """

    sigma: np.ndarray
    invisible: np.ndarray
    names: tuple
    n_rejected: int


def degenerate_ensemble(arch: Architecture, Sigma, n: int, seed: int, cross_scale: float = 0.4,
                        norm_range: tuple[float, float] = (0.5, 2.0), min_eigenvalue: float = 1e-3,
                        max_draws: int = 100_000) -> DegenerateEnsemble:
    """``n`` networks that behave like ``Sigma`` (same visible overlaps) with random invisible ones.

    Each draw sets every invisible norm (e.g. ``vv``) to ``U(norm_range)`` and every invisible
    cross overlap (e.g. ``zv``) to ``N(0, cross_scale^2)``, draws from
    ``numpy.random.default_rng(seed)``, and keeps the draw when the resulting overlap matrix
    (:func:`~lowrank_learning.equivalent_overlaps`) has smallest eigenvalue above
    ``min_eigenvalue`` (vectors realising it exist, away from the boundary).

    Parameters
    ----------
    Sigma : array (K, K)
        The base network.
    n, seed : int

    Returns
    -------
    DegenerateEnsemble with ``sigma`` (n, K, K) and ``invisible`` (n, n_invisible).
    """
    S0 = validate_sigma(arch, Sigma)
    n = check_int("n", n, 1)
    seed = check_seed(seed)
    check_int("max_draws", max_draws, 1)
    cross_scale = check_positive("cross_scale", cross_scale)
    lo, hi = (float(v) for v in norm_range)
    if not (0 <= lo < hi):
        raise InvalidParameterError(f"norm_range must satisfy 0 <= low < high, got {norm_range!r}")
    names = arch.invisible_names
    diag = [arch.overlap_pair(nm)[0] == arch.overlap_pair(nm)[1] for nm in names]
    rng = np.random.default_rng(seed)
    out, rejected = [], 0
    for _ in range(max_draws):
        vals = [rng.uniform(lo, hi) if d else rng.normal(0.0, cross_scale) for d in diag]
        try:
            S = equivalent_overlaps(arch, S0, dict(zip(names, vals)))
        except UnreachableOverlapError:
            rejected += 1
            continue
        if np.linalg.eigvalsh(S)[0] <= min_eigenvalue:
            rejected += 1
            continue
        out.append(S)
        if len(out) == n:
            break
    else:
        raise InvalidParameterError(
            f"degenerate_ensemble: fewer than {n} realisable draws in {max_draws} "
            f"(cross_scale={cross_scale}, norm_range={norm_range}, min_eigenvalue={min_eigenvalue})"
        )
    sig = np.stack(out)
    inv = flatten(arch, sig)[:, ~arch.visible]
    return DegenerateEnsemble(sig, inv, tuple(names), rejected)


def probe_curves(arch: Architecture, sigma, tasks: Mapping[str, object], lr: float, epochs: int,
                 seed: int = 0) -> dict:
    """Train every member of ``sigma`` (n, K, K) on each probe task (overlap space, exact map).

    All (member, task) pairs run as one ensemble (one compiled loop), so the tasks' batches must
    have the same shapes, dt and loss.

    Parameters
    ----------
    tasks : dict name -> task (Batch or sampler)
        All members see the same trials of a task (one seed).
    lr, epochs, seed : as in :func:`~lowrank_learning.learn_overlaps_ensemble`

    Returns
    -------
    dict name -> loss curves (n, epochs)
    """
    if not isinstance(tasks, Mapping) or not tasks:
        raise InvalidParameterError("tasks must be a non-empty dict name -> task")
    S = np.asarray(sigma)
    n = S.shape[0]
    names = list(tasks)
    members = [tasks[t] for t in names for _ in range(n)]
    tr = learn_overlaps_ensemble(arch, np.concatenate([S] * len(names)), members, lr, epochs, seeds=seed,
                                 progress=False, record_every=epochs)
    return {t: tr.loss[k * n:(k + 1) * n] for k, t in enumerate(names)}


def curve_features(loss, n_points: int = 40) -> np.ndarray:
    """Features of learning curves: ``log10`` of the loss at ``n_points`` log-spaced epochs.

    Parameters
    ----------
    loss : array (n, epochs)

    Returns
    -------
    array (n, n_points') with n_points' <= n_points (repeated epochs dropped); the loss is
    floored at 1e-300 before the logarithm.
    """
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 2 or loss.shape[1] < 1:
        raise InvalidParameterError(f"loss must have shape (n, epochs), got {loss.shape}")
    n_points = check_int("n_points", n_points, 1)
    idx = np.unique(np.round(np.geomspace(1, loss.shape[1], n_points)).astype(int) - 1)
    return np.log10(np.maximum(loss[:, idx], 1e-300))


def decode_from_curves(features, targets, n_splits: int = 5, n_permutations: int = 100,
                       seed: int = 0, alphas=np.logspace(-4, 4, 17)) -> dict:
    """How much of ``targets`` a cross-validated ridge regression reads from ``features``.

    Model: ``StandardScaler`` then ``RidgeCV`` (regularisation chosen inside each training fold),
    scored by R^2 (averaged uniformly over the targets) on ``n_splits`` shuffled K-fold splits.
    The baseline refits the same model with the rows of ``targets`` permuted
    (``sklearn.model_selection.permutation_test_score``, ``n_permutations`` times).

    Parameters
    ----------
    features : array (n, f)
    targets : array (n, t)

    Returns
    -------
    dict with ``r2`` (float, mean over the folds), ``r2_se`` (standard error over the folds),
    ``r2_per_target`` (t,) from out-of-fold predictions, ``shuffled_mean``, ``shuffled_sd`` and
    ``shuffled_q95`` (the permutation scores), ``p_value``.
    """

    X = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    if X.ndim != 2 or y.ndim not in (1, 2) or X.shape[0] != y.shape[0]:
        raise InvalidParameterError(
            f"features (n, f) and targets (n, t) must share n, got {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise InvalidParameterError("features and targets must be finite")
    y = y.reshape(len(y), -1)
    n_splits = check_int("n_splits", n_splits, 2)
    n_permutations = check_int("n_permutations", n_permutations, 1)
    seed = check_seed(seed)
    if X.shape[0] < 2 * n_splits:
        raise InvalidParameterError(f"need at least {2 * n_splits} samples for {n_splits} splits, got {X.shape[0]}")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    cv = KFold(n_splits, shuffle=True, random_state=seed)
    scores = cross_val_score(model, X, y, cv=cv, scoring="r2")
    _, perm, p = permutation_test_score(model, X, y, cv=cv, scoring="r2", n_permutations=n_permutations,
                                        random_state=seed)
    pred = cross_val_predict(model, X, y, cv=cv)
    return {"r2": float(np.mean(scores)), "r2_se": float(np.std(scores, ddof=1) / np.sqrt(n_splits)),
            "r2_per_target": r2_score(y, pred, multioutput="raw_values"),
            "shuffled_mean": float(np.mean(perm)), "shuffled_sd": float(np.std(perm)),
            "shuffled_q95": float(np.quantile(perm, 0.95)), "p_value": float(p)}


# --------------------------------------------------------------------------- drift
def diffusion_coefficient(paths, times) -> dict:
    """Diffusion coefficient per coordinate from the mean squared displacement (MSD).

    For each member the squared displacement from its first point, summed over the ``d``
    coordinates, is fitted by a line through the origin, ``|x(t) - x(t_0)|^2 ~ 2 d D (t - t_0)``
    (least squares); ``D`` is the mean over the members of their fitted values. For a random walk
    whose every coordinate has variance ``2 D t`` this is unbiased. A deterministic drift adds to
    it (the MSD then grows like ``t^2``), and a restoring force lowers it (the MSD saturates).

    Parameters
    ----------
    paths : array (E, T, d)
        E members, T time points, d coordinates.
    times : array (T,)
        Increasing times.

    Returns
    -------
    dict with ``D`` and ``se`` (mean and standard error over the members), ``per_member`` (E,),
    and ``msd`` (T,), the mean over members of the squared displacement divided by ``2 d``.
    """
    x = np.asarray(paths, dtype=float)
    t = np.asarray(times, dtype=float)
    if x.ndim != 3 or x.shape[1] < 2 or x.shape[2] < 1:
        raise InvalidParameterError(f"paths must have shape (E, T >= 2, d >= 1), got {x.shape}")
    if t.shape != (x.shape[1],) or not np.all(np.diff(t) > 0):
        raise InvalidParameterError(f"times must be increasing with shape ({x.shape[1]},), got {t.shape}")
    d = x.shape[2]
    tau = t - t[0]
    sq = np.sum((x - x[:, :1]) ** 2, axis=-1) / (2 * d)  # (E, T)
    per = sq @ tau / (tau @ tau)
    m, se = mean_se(per)
    return {"D": m, "se": se, "per_member": per, "msd": sq.mean(axis=0)}


def overlap_drift(arch: Architecture, sigma, times, reference=None) -> dict:
    """Diffusion of the visible and of the invisible overlaps (:func:`diffusion_coefficient`).

    Parameters
    ----------
    sigma : array (E, T, K, K)
    times : array (T,)
    reference : array (E, T, K, K), optional
        A noiseless run from the same starts: the displacement is then measured from it
        (``sigma - reference``), so that what learning does without noise (e.g. the last of the
        convergence) does not count as drift.

    Returns
    -------
    dict ``{"visible": ..., "invisible": ...}`` of :func:`diffusion_coefficient` results (per
    overlap coordinate) and ``"ratio"``: invisible ``D`` over visible ``D``.
    """
    s = np.asarray(sigma, dtype=float)
    if s.ndim != 4 or s.shape[-2:] != (arch.K, arch.K):
        raise InvalidParameterError(f"sigma must have shape (E, T, {arch.K}, {arch.K}), got {s.shape}")
    if reference is not None:
        r = np.asarray(reference, dtype=float)
        if r.shape != s.shape:
            raise InvalidParameterError(f"reference must have the shape of sigma {s.shape}, got {r.shape}")
        s = s - r
    f = flatten(arch, s)
    vis = diffusion_coefficient(f[..., arch.visible], times)
    inv = diffusion_coefficient(f[..., ~arch.visible], times)
    return {"visible": vis, "invisible": inv, "ratio": inv["D"] / vis["D"] if vis["D"] > 0 else float("inf")}


def drift_overlaps(arch: Architecture, sigma0, task, noise_levels: Sequence[float], lr: float,
                   epochs_settle: int, epochs: int, record_every: int = 10, seed: int = 0) -> dict:
    """Noisy learning at fixed performance in overlap space: label noise on a learned task.

    Every member of ``sigma0`` first learns ``task`` without noise for ``epochs_settle`` epochs,
    then keeps learning it for ``epochs`` epochs with fresh label noise of each std in
    ``noise_levels`` (:func:`~lowrank_learning.tasks.with_label_noise`; member ``i`` uses seed
    ``seed + i``).

    Parameters
    ----------
    sigma0 : array (E, K, K)

    Returns
    -------
    dict with ``settled`` (E, K, K), ``sigma`` (L, E, R, K, K) recorded every ``record_every``
    epochs of the noisy phase, ``times`` (R,) those epochs, ``loss`` (L, E, epochs) the noisy
    loss, and ``clean_loss`` (L, E, R): the noiseless loss of the recorded states (``task`` must
    be a fixed :class:`~lowrank_learning.Batch`).
    """

    if not isinstance(task, Batch):
        raise InvalidParameterError(f"drift_overlaps: task must be a fixed Batch, got {type(task).__name__}")
    epochs_settle, epochs, record_every, seed = _check_drift_args(epochs_settle, epochs, record_every, seed)
    E = np.asarray(sigma0).shape[0]
    settle = learn_overlaps_ensemble(arch, sigma0, task, lr, epochs_settle, progress=False,
                                     record_every=epochs_settle)
    levels = [float(v) for v in noise_levels]
    if not levels:
        raise InvalidParameterError("noise_levels must be a non-empty sequence of numbers >= 0")
    L = len(levels)
    # all noise levels in one ensemble (one compiled loop): member (l, i) has std levels[l], seed seed + i
    tasks = [with_label_noise(task, lv) for lv in levels for _ in range(E)]
    seeds = [seed + i for _ in levels for i in range(E)]
    start = np.concatenate([np.asarray(settle.final_sigma)] * L)
    tr = learn_overlaps_ensemble(arch, start, tasks, lr, epochs, seeds=seeds, progress=False,
                                 record_every=record_every)
    sig = tr.sigma.reshape(L, E, *tr.sigma.shape[1:])
    return {"settled": settle.final_sigma, "sigma": sig, "times": np.asarray(tr.record_epochs, dtype=float),
            "loss": tr.loss.reshape(L, E, -1), "clean_loss": _clean_losses(arch, sig, task)}


def _check_drift_args(epochs_settle, epochs, record_every, seed):
    """The epoch counts and the seed of :func:`drift_overlaps` and :func:`drift_vectors`."""
    return (check_int("epochs_settle", epochs_settle, 1), check_int("epochs", epochs, 2),
            check_int("record_every", record_every, 1), check_seed(seed))


def _clean_losses(arch, sigma, task):
    """The noiseless loss on the fixed batch ``task`` of every overlap matrix in ``sigma`` (..., K, K)."""
    f = jax.jit(jax.vmap(lambda S: overlap_loss(arch, S, task)))
    flat = np.asarray(sigma).reshape(-1, arch.K, arch.K)
    return np.asarray(f(flat)).reshape(np.shape(sigma)[:-2])


def drift_vectors(arch: Architecture, X0s: Sequence, task, noise_levels: Sequence[float], lr: float,
                  epochs_settle: int, epochs: int, record_every: int = 10, seed: int = 0) -> dict:
    """Noisy learning at fixed performance on the full network: update noise on a learned task.

    Each network in ``X0s`` (arrays (N, K)) learns ``task`` by plain gradient descent for
    ``epochs_settle`` epochs, then for ``epochs`` epochs with isotropic noise of each std in
    ``noise_levels`` added to every vector entry after each update
    (``learn_vectors(update_noise=...)``; network ``i`` uses seed ``seed + i``).

    Returns
    -------
    dict with ``sigma`` (L, E, R, K, K) every ``record_every`` epochs of the noisy phase,
    ``times`` (R,), ``loss`` (L, E, epochs).
    """
    epochs_settle, epochs, record_every, seed = _check_drift_args(epochs_settle, epochs, record_every, seed)
    sig, loss = [], []
    settled = [learn_vectors(arch, X, task, lr, epochs_settle, progress=False).final_vectors for X in X0s]
    for level in noise_levels:
        s_l, l_l = [], []
        for i, X in enumerate(settled):
            tr = learn_vectors(arch, X, task, lr, epochs, seed=seed + i,
                               update_noise=float(level), progress=False)
            s_l.append(tr.sigma[::record_every])
            l_l.append(tr.loss)
        sig.append(np.stack(s_l))
        loss.append(np.stack(l_l))
    times = np.arange(0, epochs, record_every, dtype=float)
    return {"sigma": np.stack(sig), "times": times, "loss": np.stack(loss)}


# --------------------------------------------------------------------------- savings
def savings(first, again, level: float) -> dict:
    """Relearning savings: ``1 - t_again / t_first`` with ``t`` the epochs to reach ``level``.

    Parameters
    ----------
    first, again : arrays (..., epochs)
        Loss curves of the first visit and of the return (the same task).
    level : float

    Returns
    -------
    dict with ``t_first``, ``t_again`` (float arrays (...): epochs to reach ``level``, ``inf``
    when it is never reached) and ``savings`` (...): 1 = instant relearning, 0 = as slow as the
    first time, negative = slower; ``nan`` where the first visit never reached ``level``,
    ``-inf`` where only the return did not.
    """
    level = check_positive("level", level)
    a = np.asarray(first, dtype=float)
    b = np.asarray(again, dtype=float)
    if a.ndim < 1 or b.ndim < 1 or a.shape[:-1] != b.shape[:-1]:
        raise InvalidParameterError(f"first and again must be (..., epochs) with equal leading shapes, got {a.shape}, {b.shape}")

    def reach(curves):
        flat = curves.reshape(-1, curves.shape[-1])
        t = [epochs_to_reach(c, level) for c in flat]
        return np.array([np.inf if v is None else float(v) for v in t]).reshape(curves.shape[:-1])

    t1, t2 = reach(a), reach(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(np.isfinite(t1), 1.0 - t2 / np.maximum(t1, 1.0), np.nan)
    s = np.where(np.isfinite(t1) & ~np.isfinite(t2), -np.inf, s)
    return {"t_first": t1, "t_again": t2, "savings": s}


def reset_invisible(arch: Architecture, sigma, reference, steps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """``sigma`` with its invisible overlaps moved back towards those of ``reference``, visible kept.

    The invisible overlaps are set to ``inv(sigma) + f (inv(reference) - inv(sigma))`` with the
    largest ``f`` in [0, 1] for which vectors exist (:func:`~lowrank_learning.equivalent_overlaps`
    succeeds; ``f = 1`` is a full reset, found by bisection with ``steps`` halvings otherwise).

    Parameters
    ----------
    sigma, reference : arrays (E, K, K)

    Returns
    -------
    (out (E, K, K), fraction (E,)): the reset overlaps and each member's ``f``.
    """
    s = np.asarray(sigma, dtype=float)
    r = np.asarray(reference, dtype=float)
    if s.ndim != 3 or s.shape != r.shape:
        raise InvalidParameterError(f"sigma and reference must both have shape (E, K, K), got {s.shape}, {r.shape}")
    steps = check_int("steps", steps, 1)
    names = arch.invisible_names
    out, frac = s.copy(), np.zeros(len(s))

    def attempt(i, f):
        a, b = flatten(arch, s[i])[~arch.visible], flatten(arch, r[i])[~arch.visible]
        try:
            return equivalent_overlaps(arch, s[i], dict(zip(names, map(float, a + f * (b - a)))))
        except UnreachableOverlapError:
            return None

    for i in range(len(s)):
        full = attempt(i, 1.0)
        if full is not None:
            out[i], frac[i] = full, 1.0
            continue
        lo, hi = 0.0, 1.0  # lo is feasible (sigma itself)
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            if attempt(i, mid) is None:
                hi = mid
            else:
                lo = mid
        if lo > 0:
            out[i], frac[i] = attempt(i, lo), lo
    return out, frac


def savings_experiment(arch: Architecture, sigma0, task_a, task_b, lr: float, epochs_a: int, epochs_b: int,
                       level: float) -> dict:
    """Learn A, then B, then A again (overlap space, exact map), with the invisible-reset control.

    Phases: A for ``epochs_a`` epochs from ``sigma0`` (E, K, K); B for ``epochs_b`` epochs; A
    again for ``epochs_a`` epochs. Control: A for ``epochs_a`` epochs from the state after B with
    its invisible overlaps moved back to their values in ``sigma0`` (:func:`reset_invisible`:
    all the way where vectors exist, otherwise as far as they do; ``control_fraction``).

    Returns
    -------
    dict of arrays: ``loss_first``, ``loss_again``, ``loss_control`` (E, epochs_a);
    ``end_first``, ``end_b``, ``end_again`` (E, K, K); ``control_fraction`` (E,); ``savings``,
    ``savings_control``, ``t_first``, ``t_again``, ``t_control`` (E,) (see :func:`savings`);
    ``trace`` (E,): :func:`~lowrank_learning.compare_visits` trace of the return (invisible
    distance end of first A -> end of second A over the excursion during B);
    ``kept`` (E,): invisible distance from the state after B to the end of the first A, over
    that from the start to the end of the first A (small: B kept A's invisible overlaps).
    """
    S0 = np.asarray(sigma0, dtype=float)
    epochs_a, epochs_b = check_int("epochs_a", epochs_a, 1), check_int("epochs_b", epochs_b, 1)
    kw = dict(progress=False)
    a1 = learn_overlaps_ensemble(arch, S0, task_a, lr, epochs_a, record_every=epochs_a, **kw)
    b = learn_overlaps_ensemble(arch, a1.final_sigma, task_b, lr, epochs_b, record_every=epochs_b, **kw)
    a2 = learn_overlaps_ensemble(arch, b.final_sigma, task_a, lr, epochs_a, record_every=epochs_a, **kw)
    start_c, frac = reset_invisible(arch, b.final_sigma, S0)
    c = learn_overlaps_ensemble(arch, start_c, task_a, lr, epochs_a, record_every=epochs_a, **kw)
    s = savings(a1.loss, a2.loss, level)
    sc = savings(a1.loss, c.loss, level)
    trace = np.array([compare_visits(arch, a1.final_sigma[i], a2.final_sigma[i], b.final_sigma[i])["trace"]
                      for i in range(len(S0))])
    kept = invisible_distance(arch, a1.final_sigma, b.final_sigma) / invisible_distance(arch, a1.final_sigma, S0)
    return {"loss_first": a1.loss, "loss_again": a2.loss, "loss_control": c.loss,
            "end_first": a1.final_sigma, "end_b": b.final_sigma, "end_again": a2.final_sigma,
            "control_fraction": frac, "savings": s["savings"], "savings_control": sc["savings"],
            "t_first": s["t_first"], "t_again": s["t_again"], "t_control": sc["t_again"],
            "trace": trace, "kept": np.asarray(kept)}


# --------------------------------------------------------------------------- verdicts
def _epochs(t, name: str) -> np.ndarray:
    """Epochs to criterion (n,): >= 0, ``inf`` where never reached; NaN refused."""
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise InvalidParameterError(f"{name} must be a non-empty 1-d array of epochs, got shape {t.shape}")
    if np.isnan(t).any() or (t < 0).any():
        raise InvalidParameterError(f"{name}: epochs must be >= 0 or inf (never reached), "
                                    f"got {int(np.isnan(t).sum())} NaN and {int((t < 0).sum())} negative of {t.size}")
    return t


def never_reached(t) -> tuple[int, int]:
    """``(k, n)``: how many of the ``n`` epochs-to-criterion in ``t`` (n,) are ``inf`` (the visit
    never reached the criterion within its epochs)."""
    t = _epochs(t, "never_reached: t")
    return int(np.sum(np.isinf(t))), int(t.size)


def relearning_verdict(t_first, t_again, *, claim: str = "Relearning A after B is faster than learning it "
                       "the first time", alpha: float = 0.05, seed: int = 0) -> Verdict:
    """Exact paired sign test that ``t_again < t_first`` network by network.

    Parameters
    ----------
    t_first, t_again : arrays (n,)
        Epochs to criterion of the first visit and of the return (``inf``: never reached within
        the visit's epochs; such a network is kept, with the sign its censored difference has;
        where both are ``inf`` the pair is excluded and counted).
    claim : str
        The claim's sentence (e.g. for the reset control).
    alpha : float
        The test's level; ``seed`` drives the bootstrap interval.

    Returns
    -------
    Verdict whose statistic is the median of ``t_first - t_again`` (epochs saved) with its
    bootstrap interval; ``note`` says how many never reached the criterion on each visit.
    """
    t1, t2 = _epochs(t_first, "relearning_verdict: t_first"), _epochs(t_again, "relearning_verdict: t_again")
    if t1.shape != t2.shape:
        raise InvalidParameterError(f"relearning_verdict: t_first and t_again must have one length, got {t1.size}, {t2.size}")
    v = sign_test(t1, t2, claim=claim, alternative="greater", alpha=alpha, seed=seed, what="networks")
    k1, k2 = int(np.isinf(t1).sum()), int(np.isinf(t2).sum())
    return replace(v, note=f"{v.note}; statistic: median epochs saved (first minus return); "
                           f"{k1} of {t1.size} never learned A the first time, {k2} of {t2.size} never relearned it")


def invisible_savings_verdict(t_again, t_control, *, alpha: float = 0.05, seed: int = 0) -> Verdict:
    """Exact paired sign test that relearning with the invisible overlaps kept (``t_again``) is
    faster than from the same state with them reset (``t_control``), network by network.

    Parameters
    ----------
    t_again, t_control : arrays (n,)
        Epochs to criterion (``inf``: never relearned; kept with its sign, both ``inf`` excluded
        and counted).

    Returns
    -------
    Verdict whose statistic is the median of ``t_control - t_again`` (epochs the invisible
    overlaps save) with its bootstrap interval.
    """
    ta = _epochs(t_again, "invisible_savings_verdict: t_again")
    tc = _epochs(t_control, "invisible_savings_verdict: t_control")
    if ta.shape != tc.shape:
        raise InvalidParameterError(f"invisible_savings_verdict: t_again and t_control must have one length, "
                                    f"got {ta.size}, {tc.size}")
    v = sign_test(tc, ta, claim="The invisible overlaps carry savings: relearning A with them kept is faster "
                  "than with them reset", alternative="greater", alpha=alpha, seed=seed, what="networks")
    k1, k2 = int(np.isinf(ta).sum()), int(np.isinf(tc).sum())
    return replace(v, note=f"{v.note}; statistic: median epochs saved (reset control minus return); "
                           f"{k1} of {ta.size} never relearned A, {k2} of {tc.size} reset controls never relearned it")


def drift_ratio_verdict(invisible, visible, *, claim: str = "The drift concentrates in the invisible overlaps",
                        alpha: float = 0.05, seed: int = 0) -> Verdict:
    """Exact paired sign test that the invisible overlaps diffuse faster than the visible ones,
    network by network (ratio of the per-network diffusion coefficients above 1).

    Parameters
    ----------
    invisible, visible : arrays (n,)
        Per-network diffusion coefficients (``per_member`` of :func:`diffusion_coefficient`),
        >= 0. A visible coefficient of 0 gives a ratio of ``inf`` (or a tie, 1, when both are 0).

    Returns
    -------
    Verdict whose statistic is the median ratio invisible / visible, with its bootstrap interval.
    """
    inv, vis = np.asarray(invisible, dtype=float), np.asarray(visible, dtype=float)
    if inv.ndim != 1 or inv.shape != vis.shape or inv.size == 0:
        raise InvalidParameterError(f"drift_ratio_verdict: invisible and visible must be 1-d of one length, "
                                    f"got {inv.shape}, {vis.shape}")
    for name, x in (("invisible", inv), ("visible", vis)):
        bad = ~np.isfinite(x) | (x < 0)
        if bad.any():
            raise InvalidParameterError(f"drift_ratio_verdict: {name}: {int(bad.sum())} of {x.size} coefficients "
                                        "are negative or not finite (a diverged run must be counted and reported)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(vis > 0, inv / np.where(vis > 0, vis, 1.0), np.where(inv > 0, np.inf, 1.0))
    v = sign_test(ratio - 1.0, claim=claim, alternative="greater", alpha=alpha, seed=seed, what="networks")
    interval = None if v.interval is None else (v.interval[0] + 1.0, v.interval[1] + 1.0)
    return replace(v, statistic=v.statistic + 1.0, interval=interval,
                   note=f"{v.note}; statistic: median over networks of D_invisible / D_visible")


def behaviour_verdict(clean_loss, level: float, *, alpha: float = 0.05, seed: int = 0) -> Verdict:
    """Exact sign test that drifting networks keep performing the task: each network's noiseless
    loss stays below ``level`` at every recorded time.

    Parameters
    ----------
    clean_loss : array (n, R)
        Noiseless loss of n drifting networks at R recorded times (``clean_loss`` of
        :func:`drift_overlaps`).
    level : float
        The loss below which the task counts as learned.

    Returns
    -------
    Verdict whose statistic is the median over networks of ``log10(level / max_t loss)`` (decades
    below the criterion at the worst recorded time; > 0 when it stays below).
    """
    level = check_positive("level", level)
    L = np.asarray(clean_loss, dtype=float)
    if L.ndim != 2 or L.size == 0:
        raise InvalidParameterError(f"behaviour_verdict: clean_loss must have shape (n, R), got {L.shape}")
    bad = ~np.isfinite(L).all(axis=1)
    if bad.any():
        raise InvalidParameterError(f"behaviour_verdict: clean_loss: {int(bad.sum())} of {len(L)} networks have a "
                                    "non-finite loss (diverged); count and report them")
    margin = np.log10(level) - np.log10(np.maximum(L.max(axis=1), 1e-300))
    v = sign_test(margin, claim=f"Behaviour stays put: the drifting networks keep a noiseless loss below {level:g} "
                  "throughout the noisy phase", alternative="greater", alpha=alpha, seed=seed, what="networks")
    return replace(v, note=f"{v.note}; statistic: median decades below the criterion at the worst recorded time")


def probe_verdict(decoded: Sequence[Mapping[str, dict]], n_permutations: int, *, alpha: float = 0.05) -> Verdict:
    """Does the learning curve on each probe task reveal the invisible overlaps?

    For each probe task, the permutation tests of :func:`decode_from_curves` (cross-validated R^2
    against refits with shuffled targets) on S independent base networks are combined with
    Fisher's method (valid for permutation p-values, which are never below their nominal level
    under the null; conservative), and tested at ``alpha / m`` for m probe tasks (Bonferroni), so
    that on data without any signal the combined verdict says "holds" (for any part) with
    probability at most ``alpha``.

    Parameters
    ----------
    decoded : sequence (S,) of dicts task name -> :func:`decode_from_curves` result
        One dict per base network, all with the same task names.
    n_permutations : int
        The shuffles each test used (its smallest p-value is ``1 / (n_permutations + 1)``).

    Returns
    -------
    Verdict combining one part per probe task (:func:`~lowrank_learning.combine`): "holds" if
    every probe reveals the invisible overlaps, "holds in part" if some do. Each part's statistic
    is the mean R^2 over the base networks with a t interval over them (None for S = 1).
    """
    if isinstance(decoded, Mapping) or not decoded:
        raise InvalidParameterError("probe_verdict: decoded must be a non-empty sequence (one per base network) "
                                    "of dicts task -> decode_from_curves result")
    n_permutations = check_int("probe_verdict: n_permutations", n_permutations, 1)
    if not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 1.0:
        raise InvalidParameterError(f"probe_verdict: alpha must be in (0, 1), got {alpha!r}")
    tasks = list(decoded[0])
    if not tasks or any(list(d) != tasks for d in decoded):
        raise InvalidParameterError(f"probe_verdict: every base network must have the tasks {tasks}")
    S, m = len(decoded), len(tasks)
    a_part = float(alpha) / m
    floor = 1.0 / (n_permutations + 1)

    def fisher(ps):
        return float(ps[0]) if len(ps) == 1 else float(_st.combine_pvalues(ps, method="fisher").pvalue)

    min_p = fisher([floor] * S)
    parts = {}
    for t in tasks:
        ps = [float(d[t]["p_value"]) for d in decoded]
        r2 = np.array([float(d[t]["r2"]) for d in decoded])
        shuf = [float(d[t]["shuffled_mean"]) for d in decoded]
        p = fisher(ps)
        mean = float(r2.mean())
        if S > 1:
            h = float(_st.t.ppf(0.975, S - 1) * r2.std(ddof=1) / np.sqrt(S))
            interval = (mean - h, mean + h)
        else:
            interval = None
        parts[t] = Verdict(
            claim=f"The learning curve on probe {t!r} reveals the invisible overlaps (cross-validated R^2 above "
                  "the shuffled-target baseline)",
            verdict=decide(p, a_part, min_p), statistic=mean, interval=interval, p=p,
            test=(f"permutation test ({n_permutations} shuffles) per base network"
                  + (f", Fisher-combined over {S}" if S > 1 else "") + f"; level alpha/{m} = {a_part:.3g} (Bonferroni)"),
            n=S, alpha=a_part,
            note=("R^2 per base network " + ", ".join(f"{v:.3f}" for v in r2) + "; shuffled baseline means "
                  + ", ".join(f"{v:.3f}" for v in shuf) + "; p per base network " + ", ".join(f"{v:.3g}" for v in ps)))
    return combine("The learning curve reveals the invisible overlaps of networks with the same behaviour "
                   "(every probe task)", parts)
