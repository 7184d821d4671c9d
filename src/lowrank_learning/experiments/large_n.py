"""The large-N limit of nonlinear learning: full networks against the Gaussian closure and the limit.

The overlap theory for erf and tanh units (``learn_overlaps``) closes the dynamics of the overlaps
by assuming the rows of the connectivity vectors stay jointly Gaussian. The true ``N -> infinity``
limit of gradient descent moves the whole distribution of rows
(:func:`~lowrank_learning.learn.mean_field.learn_mean_field`, a moving quadrature). This module
puts the E9 networks (:func:`~lowrank_learning.experiments.validation.compare_nonlinear`, run
through the same sweep, so that the E9 chapter's cached runs are reused where the arguments agree)
next to both references, each started from the network's own initial overlaps and fed the same
trials, and tests which of the two the networks converge to.

* :func:`large_n_comparison`: per network (activation, N, seed), the largest end-of-training
  overlap difference against the closure and against the limit.
* :func:`vanishing_error_test`: verdict on "the error vanishes like ``1/sqrt(N)``, without an
  N-independent part" (can come out either way); :func:`large_n_verdicts` applies it and
  :func:`~lowrank_learning.analysis.stats.levels_off_test` to both references and combines them
  into the verdict on the paper's claim 1 for nonlinear units.
* :func:`large_n_scaling`: fits of ``a / sqrt(N) + b`` against each reference with bootstrap
  intervals over seeds (:func:`~lowrank_learning.analysis.stats.bootstrap_error_scaling`).
* :func:`trained_loadings`: one network's trained rows next to the limit's moved nodes (the
  marginal distributions the closure replaces by Gaussians); :func:`weighted_excess_kurtosis`.
* :func:`twin_limit_cost`: what the E8 twin protocol would cost with the limit in place of the
  closure (measured on a few epochs).
* :func:`e6_with_limit` and :func:`savings_with_limit`: E6's full networks and E10's savings
  experiment (erf units) rerun with the limit in place of the closure.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..analysis.agreement import finite_size_scaling
from ..analysis.predictions import savings
from ..analysis.stats import bootstrap_error_scaling, levels_off_test, overlap_error_curve
from ..analysis.verdicts import DOES_NOT_HOLD, NOT_TESTABLE, Verdict, _alpha, combine, decide
from ..core import cache as _cache
from ..core._checks import check_choice, check_int, check_seed
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError
from ..core.overlaps import flatten, overlaps, sample_vectors, sigma_from_named, unflatten
from ..learn.mean_field import NodeCloud, learn_mean_field, learn_mean_field_ensemble, mean_field_nodes
from ..learn.overlap_space import learn_overlaps
from ..learn.vectors import learn_vectors
from ..tasks import exponential_filter, flip_flop
from .twins import twin_tasks
from .validation import INIT_OVERLAPS, e9_jobs, e9_task

__all__ = [
    "LIMIT_NODES", "LARGE_N_ACTIVATIONS", "large_n_jobs", "large_n_comparison", "vanishing_error_test",
    "large_n_verdicts", "large_n_scaling", "trained_loadings", "weighted_excess_kurtosis", "twin_limit_cost",
    "E6_LIMIT_NODES", "e6_limit_runs", "e6_with_limit", "savings_with_limit",
]

#: The Gauss-Hermite grid of the limit (points per reference coordinate m, u, v, z; 1024 nodes):
#: more points where the pre-activation is set at the start. On the E9 headline job (erf, 200
#: epochs, rate 0.2) its largest overlap error is about 8e-5 (learn/mean_field.py); the chapter
#: measures it again against a finer grid.
LIMIT_NODES = (8, 8, 4, 4)
LARGE_N_ACTIVATIONS = ("erf", "tanh")
_TASK = "flipflop"
_REFERENCES = {"limit": "err_limit", "closure": "err_closure"}


# ----------------------------------------------------------------------------- jobs
def large_n_jobs(N_values, seeds, activations=("erf",), lr: float = 0.2, epochs: int = 200, n_trials: int = 4,
                 dt: float = 0.1, T_max: float = 20.0, epochs_largest: int | None = None,
                 activations_largest=None) -> list[dict]:
    """The E9 jobs of this chapter: flip-flop, one learning rate, float32 full networks, every
    activation x N, ``seeds[i]`` seeds at ``N_values[i]`` (:func:`~lowrank_learning.e9_jobs` with
    ``tasks=("flipflop",)``, ``lrs=(lr,)``; identical parameters give identical cache keys, so the
    E9 chapter's runs are reused). At the largest N only ``activations_largest`` (default: all)
    and ``epochs_largest`` epochs (default ``epochs``)."""
    for i, a in enumerate(activations):
        check_choice(f"large_n_jobs: activations[{i}]", a, LARGE_N_ACTIVATIONS)
    return e9_jobs(N_values, seeds, activations=tuple(activations), tasks=(_TASK,), lrs=(float(lr),),
                   epochs=epochs, n_trials=n_trials, dt=dt, T_max=T_max, epochs_largest=epochs_largest,
                   activations_largest=activations_largest, lrs_largest=None, dtype="float32")


def _initial_sigma(activation: str, N: int, seed: int) -> np.ndarray:
    """The initial overlaps (4, 4) of the E9 network (activation, N, seed): float64."""
    arch = Architecture(activation=activation)
    return overlaps(sample_vectors(arch, N, seed=seed, sigma=sigma_from_named(arch, INIT_OVERLAPS)))


def _limit_end(activation: str, Sigma0, seeds, lr: float, epochs: int, n_trials: int, dt: float, T_max: float,
               nodes, dtype: str) -> dict:
    """The limit (moving quadrature, Gauss-Hermite grid ``nodes``) from each start ``Sigma0``
    (E, 4, 4), member ``i`` fed the trials of seed ``seeds[i]``, in ``dtype``: ``final`` (E, 4, 4)
    overlaps after the last update, ``seconds`` (wall time, compilation included)."""
    arch = Architecture(activation=activation)
    task = e9_task(_TASK, activation, n_trials, dt, T_max)
    t0 = time.perf_counter()
    traj = learn_mean_field_ensemble(arch, np.asarray(Sigma0, dtype=dtype), task, lr, epochs, nodes=tuple(nodes),
                                     seeds=[int(s) for s in seeds], record_every=epochs, progress=False)
    return {"final": np.asarray(traj.final_sigma, dtype=float), "seconds": time.perf_counter() - t0}


def _closure_end(activation: str, Sigma0, seed: int, lr: float, epochs: int, n_trials: int, dt: float,
                 T_max: float) -> np.ndarray:
    """The Gaussian closure's overlaps (4, 4) after the last update, called exactly as
    :func:`~lowrank_learning.compare_nonlinear` calls it (same start, trials and precision)."""
    arch = Architecture(activation=activation)
    task = e9_task(_TASK, activation, n_trials, dt, T_max)
    return np.asarray(learn_overlaps(arch, Sigma0, task, lr, epochs, rule="exact", seed=seed,
                                     progress=False).final_sigma, dtype=float)


def large_n_comparison(runs, nodes=LIMIT_NODES, limit_dtype: str = "float32"):
    """Full networks against the Gaussian closure and the large-N limit, same starts and trials.

    Parameters
    ----------
    runs : DataFrame
        The sweep frame of the networks: ``run_sweep("e9-nonlinear", compare_nonlinear,
        large_n_jobs(...))`` (the E9 chapter's sweep name and job function, so that its cached
        runs are reused), flip-flop only.
    nodes : sequence of 4 ints
        The limit's Gauss-Hermite grid (points per reference coordinate; :data:`LIMIT_NODES`).
    limit_dtype : {"float32", "float64"}
        Precision of the limit.

    For each network the closure (``learn_overlaps``, exact map, called as ``compare_nonlinear``
    calls it) and the limit (``learn_mean_field_ensemble``, all networks of one activation and
    epoch count in one ensemble, cached) start from the network's own initial overlaps and see
    the trials of its seed. The network's final overlaps are the closure's plus the sweep's signed
    difference ``diff_end``.

    Returns
    -------
    DataFrame indexed by (activation, N, seed), columns (10 overlaps in ``overlap_names`` order):

    ``err_closure``  largest ``|sigma_full - sigma_closure|`` after the last update (E9's ``err_end``)
    ``err_limit``    largest ``|sigma_full - sigma_limit|``
    ``err_closure_limit``  largest ``|sigma_closure - sigma_limit|`` (the closure's own error)
    ``sigma_full``, ``sigma_closure``, ``sigma_limit``  (10,) final overlaps
    ``lr``, ``epochs``, ``seconds_full`` (the network's run, when it was computed)

    ``attrs``: ``seconds_limit`` (wall time of the limit runs, compilation included, as when
    first computed) and ``nodes`` (nodes of the grid).
    """
    check_choice("large_n_comparison: limit_dtype", limit_dtype, ("float32", "float64"))
    nodes = tuple(nodes)
    if len(nodes) != 4:
        raise InvalidParameterError(f"large_n_comparison: nodes must be 4 ints (m, u, v, z), got {nodes!r}")
    nodes = tuple(check_int(f"large_n_comparison: nodes[{i}]", k, 1) for i, k in enumerate(nodes))
    if not isinstance(runs, pd.DataFrame) or "diff_end" not in runs.columns:
        raise InvalidParameterError("large_n_comparison: runs must be the frame of a compare_nonlinear sweep")
    df = runs.reset_index()
    if df.empty or set(df.task) != {_TASK}:
        raise InvalidParameterError(f"large_n_comparison: runs must be flip-flop jobs, got tasks {sorted(set(df.task))}")
    rows, seconds_limit = [], 0.0
    keys = ["activation", "lr", "epochs", "n_trials", "dt", "T_max"]
    for (act, lr, ep, nt, dt, T), sub in df.groupby(keys, sort=False):
        arch = Architecture(activation=act)
        S0 = np.stack([_initial_sigma(act, int(r.N), int(r.seed)) for r in sub.itertuples()])
        lim = _cache.memo("large-n-limit", _limit_end, act, S0, tuple(int(s) for s in sub.seed), float(lr), int(ep),
                          int(nt), float(dt), float(T), nodes, limit_dtype)
        seconds_limit += float(lim["seconds"])
        for k, r in enumerate(sub.itertuples()):
            clo = _closure_end(act, S0[k], int(r.seed), float(lr), int(ep), int(nt), float(dt), float(T))
            full = clo + unflatten(arch, np.asarray(r.diff_end, dtype=float))
            f, c, m = (flatten(arch, s) for s in (full, clo, lim["final"][k]))
            rows.append(dict(activation=act, N=int(r.N), seed=int(r.seed), lr=float(lr), epochs=int(ep),
                             err_closure=float(np.max(np.abs(f - c))), err_limit=float(np.max(np.abs(f - m))),
                             err_closure_limit=float(np.max(np.abs(c - m))), sigma_full=f, sigma_closure=c,
                             sigma_limit=m, seconds_full=float(r.seconds_full)))
    out = pd.DataFrame(rows).set_index(["activation", "N", "seed"]).sort_index()
    out.attrs.update(seconds_limit=seconds_limit, nodes=int(np.prod(nodes)))
    return out


# ----------------------------------------------------------------------------- verdicts
def vanishing_error_test(N, err, *, claim: str = "the error vanishes like 1/sqrt(N), without an N-independent part",
                         alpha: float = 0.05, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Verdict:
    """Verdict on "the error ``err`` (n,) at sizes ``N`` (n,) (one point per seed) vanishes as N
    grows, with no N-independent part".

    Two one-sided t-tests of the least-squares slope of ``log err`` on ``log N`` (``n - 2``
    degrees of freedom): the claim holds when the error falls with N (slope significantly below
    0 at ``alpha``) and the test of :func:`~lowrank_learning.analysis.stats.levels_off_test`
    (slope significantly above -1/2, the mark of a systematic part) does not reject. An error
    that stays flat fails the first test; an error ``a / sqrt(N) + b`` with a systematic part
    large enough to flatten the slope over the sizes run fails the second. A systematic part too
    small to flatten it is not seen: the note gives the unconstrained ``b`` with its bootstrap
    interval over seeds, the size of systematic part the data still allow.

    The statistic is the slope with its t interval (``level``); ``p`` is the p-value of "the
    error falls". Not testable with fewer than 3 points.
    """
    alpha, level = _alpha(alpha), _alpha(level)
    flat = levels_off_test(N, err, alpha=alpha, level=level, n_boot=n_boot, seed=seed, claim=claim)
    if flat.verdict == NOT_TESTABLE:
        return flat
    lN, le = np.log(np.asarray(N, dtype=float).ravel()), np.log(np.asarray(err, dtype=float).ravel())
    res = _st.linregress(lN, le)
    slope, se, df = float(res.slope), float(res.stderr), lN.size - 2
    p_fall = (0.0 if slope < 0 else 1.0) if se == 0.0 else float(_st.t.cdf(slope / se, df))
    word = decide(p_fall, alpha)
    test = (f"one-sided t-test of the log-log slope < 0, {lN.size} runs, {df} degrees of freedom; "
            f"and no systematic part: slope > -0.5 not significant (p = {flat.p:.2g})")
    notes = [f"the error falls with N: p = {p_fall:.2g}"]
    if flat.holds:
        word = DOES_NOT_HOLD
        notes.append(f"overruled: the error has an N-independent part (slope above -0.5: p = {flat.p:.2g})")
    return replace(flat, verdict=word, p=p_fall, test=test, note="; ".join(notes + [flat.note]))


def _points(frame, activation: str, column: str):
    """(N, err, excluded, total) of one activation's runs: errors that are not positive and
    finite are left out and counted."""
    df = frame.reset_index()
    sub = df[df.activation == activation]
    if sub.empty:
        raise InvalidParameterError(f"large_n: no runs for activation {activation!r}")
    v = sub[column].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return sub["N"].to_numpy(dtype=float)[ok], v[ok], int(np.sum(~ok)), len(sub)


def _with_excluded(v: Verdict, bad: int, total: int, column: str) -> Verdict:
    if not bad:
        return v
    return replace(v, excluded=bad, note=f"{bad} of {total} runs without a positive finite {column} left out; "
                   + v.note)


def large_n_verdicts(frame, activation: str = "erf", alpha: float = 0.05, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """The chapter's verdicts for one activation of a :func:`large_n_comparison` frame.

    Returns a dict of :class:`~lowrank_learning.analysis.verdicts.Verdict`:

    - ``converges_to_limit``: :func:`vanishing_error_test` of the error against the limit;
    - ``converges_to_closure``: the same against the Gaussian closure;
    - ``closure_levels_off``: :func:`~lowrank_learning.analysis.stats.levels_off_test` of the
      error against the closure ("the closure keeps a systematic part");
    - ``limit_levels_off``: the same against the limit;
    - ``claim1``: :func:`~lowrank_learning.analysis.verdicts.combine` of the first two, the paper's
      claim 1 for nonlinear units, "the overlap theory is the large-N limit of learning" (networks
      converge to a limit, and that limit is the closure).
    """
    out = {}
    for ref, col in _REFERENCES.items():
        name = "the large-N limit (moving quadrature)" if ref == "limit" else "the Gaussian overlap closure"
        N, err, bad, total = _points(frame, activation, col)
        out[f"converges_to_{ref}"] = _with_excluded(vanishing_error_test(
            N, err, alpha=alpha, n_boot=n_boot, seed=seed,
            claim=f"{activation} networks converge to {name} like 1/sqrt(N), without an N-independent part"),
            bad, total, col).with_figure("beyond the paper")
        out[f"{ref}_levels_off"] = _with_excluded(levels_off_test(
            N, err, alpha=alpha, n_boot=n_boot, seed=seed,
            claim=f"the error of {activation} networks against {name} has an N-independent part"),
            bad, total, col).with_figure("beyond the paper")
    out["claim1"] = combine(
        f"for {activation} units learning has a large-N limit and the Gaussian overlap theory is that limit "
        "(paper claim 1)",
        {"full networks converge to the large-N limit": out["converges_to_limit"],
         "the large-N limit is the Gaussian overlap theory": out["converges_to_closure"]}).with_figure("Fig. 4a-c")
    return out


def large_n_scaling(frame, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Fits of ``a / sqrt(N) + b`` of the error against each reference, per activation, with
    percentile-bootstrap intervals over seeds
    (:func:`~lowrank_learning.analysis.stats.bootstrap_error_scaling`).

    Returns a DataFrame indexed by (activation, reference) with columns ``a``, ``b`` (fit with
    ``a, b >= 0``), ``a_free``, ``b_free`` (unconstrained), ``slope``, each with ``_lo`` and
    ``_hi``, and ``runs``, ``excluded``. Activations with fewer than two distinct N are left out.
    """
    rows = {}
    for act in frame.reset_index().activation.unique():
        for ref, col in _REFERENCES.items():
            N, err, bad, _ = _points(frame, act, col)
            if np.unique(N).size < 2:
                continue
            boot = bootstrap_error_scaling(N, err, level=level, n_boot=n_boot, seed=seed)
            row = {}
            for name in ("a", "b", "a_free", "b_free", "slope"):
                row[name], row[name + "_lo"], row[name + "_hi"] = boot[name]
            row.update(runs=int(N.size), excluded=bad)
            rows[(act, ref)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["activation", "reference"])
    return out


# ----------------------------------------------------------------------------- the moved distribution
def weighted_excess_kurtosis(X, weights=None) -> np.ndarray:
    """Excess kurtosis of each column of ``X`` (n, K) under the weights ``weights`` (n,) (default
    equal; normalised to sum 1): ``E[(x - mean)^4] / var^2 - 3``, (K,). 0 for a Gaussian."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise InvalidParameterError(f"weighted_excess_kurtosis: X must be (n, K) with n >= 2, got {X.shape}")
    w = np.full(X.shape[0], 1.0) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (X.shape[0],) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise InvalidParameterError("weighted_excess_kurtosis: weights must be (n,), non-negative, not all 0")
    w = w / w.sum()
    d = X - w @ X
    var = w @ d ** 2
    if np.any(var <= 0):
        raise InvalidParameterError("weighted_excess_kurtosis: a column of X has zero variance")
    return (w @ d ** 4) / var ** 2 - 3.0


def _trained_loadings(activation: str, N: int, seed: int, lr: float, epochs: int, n_trials: int, dt: float,
                      T_max: float, cloud_nodes: int, cloud_seed: int) -> dict:
    arch = Architecture(activation=activation)
    X0 = sample_vectors(arch, N, seed=seed, sigma=sigma_from_named(arch, INIT_OVERLAPS))
    S0 = overlaps(X0)
    task = e9_task(_TASK, activation, n_trials, dt, T_max)
    full = learn_vectors(arch, np.asarray(X0, dtype="float32"), task, lr, epochs, seed=seed, progress=False)
    cloud = mean_field_nodes(arch, S0, cloud_nodes, scheme="qmc", seed=cloud_seed)
    cloud = NodeCloud(cloud.nodes.astype("float32"), cloud.weights.astype("float32"), cloud.scheme)
    traj, moved = learn_mean_field(arch, None, task, lr, epochs, nodes=cloud, seed=seed, return_nodes=True)
    return {"X0": np.asarray(X0), "X_full": np.asarray(full.final_vectors, dtype=float),
            "nodes_start": np.asarray(cloud.nodes, dtype=float),
            "nodes": np.asarray(moved.nodes, dtype=float), "weights": np.asarray(moved.weights, dtype=float),
            "sigma_full": np.asarray(full.final_sigma, dtype=float),
            "sigma_limit": np.asarray(traj.final_sigma, dtype=float)}


def trained_loadings(activation: str, N: int, seed: int = 0, lr: float = 0.2, epochs: int = 200, n_trials: int = 4,
                     dt: float = 0.1, T_max: float = 20.0, cloud_nodes: int = 8192, cloud_seed: int = 0) -> dict:
    """One E9 flip-flop network's trained rows next to the limit's moved nodes (cached).

    The network (float32, rows drawn with covariance ``INIT_OVERLAPS`` from ``seed``) and the
    limit, started from the network's initial overlaps and fed the same trials, learn for
    ``epochs`` epochs at rate ``lr``. The limit here runs on ``cloud_nodes`` scrambled Sobol
    nodes (equal weights; scheme "qmc", seed ``cloud_seed``, float32), so that the marginals of
    the moved nodes can be drawn as histograms; the error comparisons use the Gauss-Hermite grid.

    Returns a dict of arrays (K = 4, columns m, u, v, z): ``X0``, ``X_full`` (N, 4) the initial
    and trained rows; ``nodes_start``, ``nodes`` (cloud_nodes, 4) the limit's nodes before and
    after, ``weights`` (cloud_nodes,); ``sigma_full``, ``sigma_limit`` (4, 4) final overlaps.
    """
    check_choice("trained_loadings: activation", activation, LARGE_N_ACTIVATIONS)
    N, seed = check_int("trained_loadings: N", N, 2), check_seed(seed, "trained_loadings: seed")
    epochs = check_int("trained_loadings: epochs", epochs, 1)
    cloud_nodes = check_int("trained_loadings: cloud_nodes", cloud_nodes, 2)
    return _cache.memo("large-n-loadings", _trained_loadings, activation, N, seed, float(lr), epochs, int(n_trials),
                       float(dt), float(T_max), cloud_nodes, check_seed(cloud_seed, "trained_loadings: cloud_seed"))


# ----------------------------------------------------------------------------- E8 with the limit: cost
def twin_limit_cost(epochs: int = 3, nodes=LIMIT_NODES, members: int = 2, n_trials: int = 128,
                    total_member_epochs: int = 20 * 60000) -> dict:
    """Wall time of the limit on the E8 twin tasks (flip-flop, dt = 0.05, T_max = 20, ``n_trials``
    trials per epoch, erf, float32), measured over ``epochs`` epochs of ``members`` members after
    a first compiled run of one epoch, and extrapolated to ``total_member_epochs`` (the E8
    protocol: 10 pairs, 2 x 30000 epochs). Returns ``seconds_per_member_epoch`` and
    ``seconds_total`` (the extrapolation), ``nodes`` (count)."""
    epochs, members = check_int("twin_limit_cost: epochs", epochs, 1), check_int("twin_limit_cost: members", members, 1)
    arch = Architecture(activation="erf")
    ff, _, _ = twin_tasks(int(n_trials))
    S0 = np.broadcast_to(sigma_from_named(arch, INIT_OVERLAPS), (members, arch.K, arch.K)).astype("float32")
    learn_mean_field_ensemble(arch, S0, ff, 0.01, epochs, nodes=tuple(nodes), seeds=0, progress=False)  # compiles
    t0 = time.perf_counter()
    learn_mean_field_ensemble(arch, S0, ff, 0.01, epochs, nodes=tuple(nodes), seeds=0, progress=False)
    per = (time.perf_counter() - t0) / (epochs * members)
    return {"seconds_per_member_epoch": per, "seconds_total": per * int(total_member_epochs),
            "nodes": int(np.prod(nodes))}


# ----------------------------------------------------------------------------- E6 and E10 with the limit
#: The limit's grid for E6 and E10 (324 nodes): their finite-N differences are 1e-2 and more, so a
#: coarser grid than :data:`LIMIT_NODES` serves; the chapter measures its error against that grid.
E6_LIMIT_NODES = (6, 6, 3, 3)


def e6_limit_runs(Sigma0, seeds, lr: float, epochs: int, n_trials: int, dt: float, T_max: float,
                  nodes=E6_LIMIT_NODES, dtype: str = "float32") -> dict:
    """E6's flip-flop learning (erf units, rank 1, SGD with fresh trials) in the large-N limit.

    Parameters
    ----------
    Sigma0 : array (E, 4, 4)
        Each run's initial overlaps (the limit starts from Gaussian rows with these second moments).
    seeds : sequence of E ints
        Trial seeds, as ``learn_vectors(..., seed=s)``: member ``i`` sees the trials of ``seeds[i]``.
    lr, epochs, n_trials, dt, T_max
        E6's learning rate, epochs and task (``tasks.flip_flop(n_trials, dt, T_max)``).
    nodes : 4 ints
        Gauss-Hermite points per reference coordinate (m, u, v, z).
    dtype : {"float32", "float64"}

    Returns
    -------
    dict: ``loss`` (E, epochs), ``sigma`` (E, epochs + 1, 4, 4) (before every update, then after
    the last), ``seconds`` (wall time, compilation included), ``nodes`` (number of nodes).
    """
    check_choice("e6_limit_runs: dtype", dtype, ("float32", "float64"))
    S0 = np.asarray(Sigma0, dtype=float)
    if S0.ndim != 3 or S0.shape[1:] != (4, 4):
        raise InvalidParameterError(f"e6_limit_runs: Sigma0 must be (E, 4, 4), got {S0.shape}")
    seeds = [check_seed(s) for s in seeds]
    if len(seeds) != len(S0):
        raise InvalidParameterError(f"e6_limit_runs: {len(S0)} starts but {len(seeds)} seeds")
    arch = Architecture(rank=1, activation="erf")
    task = flip_flop(n_trials=check_int("e6_limit_runs: n_trials", n_trials, 1), dt=dt, T_max=T_max)
    t0 = time.perf_counter()
    traj = learn_mean_field_ensemble(arch, S0.astype(dtype), task, float(lr), check_int("e6_limit_runs: epochs", epochs, 1),
                                     nodes=tuple(nodes), seeds=seeds, record_every=1, progress=False)
    sigma = np.concatenate([np.asarray(traj.sigma, float), np.asarray(traj.final_sigma, float)[:, None]], axis=1)
    return {"loss": np.asarray(traj.loss, dtype=float), "sigma": sigma, "seconds": time.perf_counter() - t0,
            "nodes": int(np.prod(nodes))}


def _rms_error(a, b) -> float:
    return float(np.sqrt(np.mean(overlap_error_curve(a, b) ** 2)))


def e6_with_limit(runs, limit: dict, *, tail: int | None = None, alpha: float = 0.05) -> tuple:
    """E6's finite-N comparison with the large-N limit as a second reference.

    Parameters
    ----------
    runs : sequence of (N, seed, full, closure)
        E6's runs: network size, seed, the full network's and the Gaussian closure's
        Trajectory (exact map), all of one length, on the same trials.
    limit : dict
        :func:`e6_limit_runs` from the same starts (``overlaps`` of each run's initial vectors) and
        trial seeds, in the order of ``runs``.
    tail : int, optional
        Epochs averaged for the final losses (default: the last 5%).
    alpha : float
        Level of the finite-size tests.

    Returns
    -------
    (frame, verdicts): a DataFrame with one row per run, columns ``N``, ``seed``, ``err_closure``
    and ``err_limit`` (root-mean-square over epochs of the largest overlap difference of the full
    network from each reference, E6's finite-N error), ``err_closure_limit`` (the same between the
    two references), ``end_closure``, ``end_limit`` (largest difference after the last update),
    ``loss_full``, ``loss_closure``, ``loss_limit`` (final losses); and a dict of two
    :func:`~lowrank_learning.finite_size_scaling` verdicts, ``closure`` and ``limit``: whether the
    full network's difference from each reference shrinks with N.
    """
    runs = list(runs)
    sig = np.asarray(limit["sigma"], dtype=float)
    if sig.shape[0] != len(runs):
        raise InvalidParameterError(f"e6_with_limit: {len(runs)} runs but the limit has {sig.shape[0]} members")
    rows = []
    for k, (N, seed, full, closure) in enumerate(runs):
        f, c, m = (np.asarray(x, dtype=float) for x in (full.sigma_all, closure.sigma_all, sig[k]))
        if not (f.shape == c.shape == m.shape):
            raise InvalidParameterError(f"e6_with_limit: run {k} has overlap histories of shapes {f.shape}, "
                                        f"{c.shape} and {m.shape} (full, closure, limit)")
        t = max(1, f.shape[0] // 20) if tail is None else check_int("e6_with_limit: tail", tail, 1)
        rows.append(dict(N=int(N), seed=int(seed), err_closure=_rms_error(f, c), err_limit=_rms_error(f, m),
                         err_closure_limit=_rms_error(c, m), end_closure=float(np.max(np.abs(f[-1] - c[-1]))),
                         end_limit=float(np.max(np.abs(f[-1] - m[-1]))),
                         loss_full=float(np.mean(np.asarray(full.loss)[-t:])),
                         loss_closure=float(np.mean(np.asarray(closure.loss)[-t:])),
                         loss_limit=float(np.mean(np.asarray(limit["loss"])[k, -t:]))))
    frame = pd.DataFrame(rows)
    claims = {"closure": "E6's full networks approach the Gaussian closure as N grows",
              "limit": "E6's full networks approach the large-N limit as N grows"}
    verdicts = {ref: finite_size_scaling(frame["N"], frame[f"err_{ref}"], claim=claims[ref], alpha=alpha)
                for ref in claims}
    return frame, verdicts


def savings_with_limit(sigma0, task_a, task_b, lr: float, epochs_a: int, epochs_b: int, level: float,
                       nodes=E6_LIMIT_NODES, dtype: str = "float32") -> dict:
    """E10's savings experiment (learn A, then B, then A again) for erf units in the large-N limit.

    The limit's rows start Gaussian with the overlaps ``sigma0`` (E, 4, 4) and are carried from one
    task to the next as moved nodes (no Gaussian closure anywhere). The invisible-reset control of
    :func:`~lowrank_learning.savings_experiment` has no counterpart here: a moved, non-Gaussian
    distribution of rows has no "same visible, reset invisible" state that is defined by the
    overlaps alone.

    Parameters
    ----------
    sigma0 : array (E, 4, 4)
    task_a, task_b : Batch
        Fixed tasks (E10: ``tasks.exponential_filter`` with ``c_A``, ``c_B``).
    lr, epochs_a, epochs_b, level
        As in :func:`~lowrank_learning.savings_experiment`.
    nodes : 4 ints;  dtype : {"float32", "float64"}

    Returns
    -------
    dict: ``loss_first``, ``loss_again`` (E, epochs_a), ``loss_b`` (E, epochs_b); ``end_first``,
    ``end_b``, ``end_again`` (E, 4, 4); ``t_first``, ``t_again``, ``savings`` (E,) (see
    :func:`~lowrank_learning.savings`); ``seconds``; ``nodes``.
    """
    check_choice("savings_with_limit: dtype", dtype, ("float32", "float64"))
    S0 = np.asarray(sigma0, dtype=float)
    if S0.ndim != 3 or S0.shape[1:] != (4, 4):
        raise InvalidParameterError(f"savings_with_limit: sigma0 must be (E, 4, 4), got {S0.shape}")
    epochs_a = check_int("savings_with_limit: epochs_a", epochs_a, 1)
    epochs_b = check_int("savings_with_limit: epochs_b", epochs_b, 1)
    arch = Architecture(rank=1, activation="erf")
    kw = dict(progress=False, return_nodes=True)
    t0 = time.perf_counter()
    a1, cloud = learn_mean_field_ensemble(arch, S0.astype(dtype), task_a, float(lr), epochs_a, nodes=tuple(nodes),
                                          record_every=epochs_a, **kw)
    b, cloud = learn_mean_field_ensemble(arch, None, task_b, float(lr), epochs_b, nodes=cloud, record_every=epochs_b,
                                         **kw)
    a2, _ = learn_mean_field_ensemble(arch, None, task_a, float(lr), epochs_a, nodes=cloud, record_every=epochs_a, **kw)
    s = savings(a1.loss, a2.loss, level)
    return {"loss_first": np.asarray(a1.loss, float), "loss_b": np.asarray(b.loss, float),
            "loss_again": np.asarray(a2.loss, float), "end_first": np.asarray(a1.final_sigma, float),
            "end_b": np.asarray(b.final_sigma, float), "end_again": np.asarray(a2.final_sigma, float),
            "t_first": s["t_first"], "t_again": s["t_again"], "savings": s["savings"],
            "seconds": time.perf_counter() - t0, "nodes": int(np.prod(nodes))}
