"""Where the overlap theory holds (E9): full network vs theory, error decomposition, non-Gaussianity.

The measures (non-Gaussianity, the error-scaling fit, the loss-drop epoch) are in
:mod:`lowrank_learning.analysis.stats`; this module holds the E9 tasks, jobs, grid and tables.

Sweep jobs (module-level, for :func:`lowrank_learning.sweeps.run_sweep`)
-----------------------------------------------------------------------
* :func:`linear_exactness`: exact overlap map vs the full linear network.
* :func:`compare_nonlinear`: learn_overlaps (rule="exact") vs learn_vectors for erf/tanh on
  flip-flop or a teacher task, with the errors before, at and after the loss drop.

:func:`e9_jobs` builds the E9 grid from the chapter's parameters (its sizes live in the E9 notebook
and ``notebooks/profiles.yml`` only; :mod:`lowrank_learning.named_sweeps` reads them for the CLI).
"""

from __future__ import annotations

import time
from dataclasses import replace

import jax
import numpy as np
import pandas as pd

from ..analysis.stats import (
    bootstrap_error_scaling,
    excess_kurtosis,
    fit_error_scaling,
    gaussian_distance,
    levels_off_test,
    loss_drop_epoch,
    overlap_error_curve,
)
from ..core._checks import check_choice, check_int, check_seed
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ..core.latent import run_latent
from ..core.overlaps import flatten, overlaps, sample_vectors, sigma_from_named
from ..learn.overlap_space import learn_overlaps
from ..learn.vectors import learn_vectors
from ..tasks import exponential_filter, flip_flop

__all__ = [
    "teacher_batch", "e9_task", "linear_exactness", "compare_nonlinear", "e9_jobs",
    "INIT_OVERLAPS", "TEACHER_OVERLAPS", "E9_TASKS", "seed_summary", "scaling_table", "levels_off_verdict",
]

# Initial overlaps of the E9 networks: the vectors are drawn with Gaussian rows of this
# covariance, so the trajectory does not depend on N except through finite-size fluctuations
# (an isotropic draw would start at cross overlaps O(1/sqrt(N)), i.e. at an N-dependent point).
INIT_OVERLAPS = dict(zm=0.1, zu=0.1, vm=0.1, vu=0.3, mu=0.0, zv=0.0, mm=1.0, uu=1.0, vv=1.0, zz=1.0)
# The teacher network of the teacher task (positive definite; same activation as the student).
TEACHER_OVERLAPS = dict(zm=0.5, zu=0.8, vm=0.8, vu=0.9, mu=0.3, zv=0.3, mm=1.0, uu=1.2, vv=1.5, zz=1.5)
E9_TASKS = ("flipflop", "teacher")


# ----------------------------------------------------------------------------- tasks
def teacher_batch(activation: str, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                  seed: int = 1234, input_std: float = 1.5):
    """A fixed teacher batch: white-noise inputs ``input_std * N(0, 1)`` per step (drawn from
    ``seed``), targets the mean-field outputs of a teacher with overlaps :data:`TEACHER_OVERLAPS`
    and the given activation (``run_latent``), mask all ones, ``masked_mean`` loss.
    Shapes: inputs, targets, mask (n_trials, T_max/dt, 1)."""

    arch = Architecture(activation=activation)
    T = int(round(T_max / dt))
    x = input_std * np.random.default_rng(seed).standard_normal((int(n_trials), T, 1))
    y = np.asarray(run_latent(arch, sigma_from_named(arch, TEACHER_OVERLAPS), x, dt))
    return Batch(x, y, np.ones_like(y), dt, "masked_mean")


def e9_task(task: str, activation: str, n_trials: int, dt: float, T_max: float):
    """The E9 task: ``"flipflop"`` (fresh trials each epoch) or ``"teacher"`` (a fixed batch)."""

    check_choice("task", task, E9_TASKS)
    if task == "flipflop":
        return flip_flop(n_trials=int(n_trials), dt=float(dt), T_max=float(T_max))
    return teacher_batch(activation, n_trials, dt, T_max)


# ----------------------------------------------------------------------------- jobs
def linear_exactness(N: int, seed: int, lr: float = 5e-3, epochs: int = 100, dt: float = 0.05,
                     T_max: float = 20.0) -> dict:
    """Exact overlap map vs full linear network on the E1 task (impulse response, c = 0.2).

    Returns ``error`` (largest ``|sigma_full - sigma_theory|`` over overlaps and epochs, relative to
    the largest ``|sigma|``), ``loss_error`` (largest relative loss difference) and ``N``, ``seed``.
    """

    N, seed, epochs = check_int("N", N, 1), check_seed(seed), check_int("epochs", epochs, 1)
    arch = Architecture(activation="linear")
    X0 = sample_vectors(arch, N, seed=seed)
    task = exponential_filter(c=0.2, dt=dt, T_max=T_max)
    full = learn_vectors(arch, X0, task, lr, epochs, progress=False)
    theory = learn_overlaps(arch, overlaps(X0), task, lr, epochs, rule="exact", progress=False)
    scale = np.max(np.abs(full.sigma_all))
    err = np.max(np.abs(full.sigma_all - theory.sigma_all)) / scale
    loss_err = np.max(np.abs(full.loss - theory.loss) / np.abs(full.loss))
    return {"error": float(err), "loss_error": float(loss_err)}


def _check_dtype(dtype, where: str) -> None:
    """The full network's precision in the E9 jobs: "float32" or "float64"."""
    check_choice(f"{where}: dtype", dtype, ("float32", "float64"))


def compare_nonlinear(activation: str, task: str, N: int, lr: float, seed: int, epochs: int = 300,
                      n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                      dtype: str = "float32", redraw_every: int | None = None) -> dict:
    """Full network (learn_vectors) vs overlap theory (learn_overlaps, rule="exact"), same trials.

    The vectors are drawn with Gaussian rows of covariance :data:`INIT_OVERLAPS` (seed ``seed``);
    the theory starts from their actual overlaps, so every difference comes from learning.
    ``dtype`` is the precision of the full network ("float32" or "float64"; float64 needs
    ``jax_enable_x64``); the theory runs in JAX's default float type. The comparison is statistical
    (finite-N errors of 1e-3 and more), so float32 is the default: its rounding moves the full
    network's overlaps far less than those errors (the E9 notebook compares the two precisions),
    and it costs less.

    Returns a dict with (K = 4, 10 overlaps, E = epochs)

    ``err_end``      largest ``|sigma_full - sigma_theory|`` after the last update
    ``err_max``      largest over the run
    ``err_curve``    (E + 1,) largest difference per epoch
    ``diff_end``     (10,) signed full - theory after the last update, ``overlap_names`` order
    ``loss_full``, ``loss_theory``  (E,) the two loss curves
    ``loss_rel_end`` ``|L_full - L_theory| / L_theory`` at the last epoch
    ``drop_full``, ``drop_theory``, ``drop_shift``  loss-drop epochs (NaN if no drop) and full - theory
    ``err_before``   largest difference before 0.8 x the theory's drop epoch (NaN if no drop)
    ``err_at_drop``  difference at the theory's drop epoch
    ``err_end_aligned`` difference at the end with the theory shifted by the drop shift (rounded)
    ``kurtosis_end``, ``kurtosis_start``  (4,) excess kurtosis of each vector's entries
    ``kurtosis_max`` largest ``|excess kurtosis|`` after training
    ``gauss_dist_end``, ``gauss_dist_start``  :func:`gaussian_distance` of the rows of X
    ``seconds_full``, ``seconds_theory``  wall time of the two runs (compilation included)

    ``redraw_every = k`` redraws the full network's vectors Gaussian with the same overlaps every
    ``k`` epochs (:func:`~lowrank_learning.learn_vectors`; E9's causal test); None trains them plainly.
    """

    check_choice("compare_nonlinear: task", task, E9_TASKS)
    check_choice("compare_nonlinear: activation", activation, ("erf", "tanh"))
    _check_dtype(dtype, "compare_nonlinear")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise InvalidParameterError("compare_nonlinear: dtype='float64' needs jax_enable_x64")
    N, seed = check_int("compare_nonlinear: N", N, 1), check_seed(seed, "compare_nonlinear: seed")
    epochs = check_int("compare_nonlinear: epochs", epochs, 1)
    if redraw_every is not None:
        redraw_every = check_int("compare_nonlinear: redraw_every", redraw_every, 1)
    arch = Architecture(activation=activation)
    X0 = sample_vectors(arch, N, seed=seed, sigma=sigma_from_named(arch, INIT_OVERLAPS))
    tk = e9_task(task, activation, n_trials, dt, T_max)
    t0 = time.perf_counter()
    full = learn_vectors(arch, np.asarray(X0, dtype=dtype), tk, lr, epochs, seed=seed, progress=False,
                         redraw_every=redraw_every)
    t1 = time.perf_counter()
    theory = learn_overlaps(arch, overlaps(X0), tk, lr, epochs, rule="exact", seed=seed, progress=False)
    t2 = time.perf_counter()
    return {**_full_vs_theory(arch, X0, full, theory), "seconds_full": t1 - t0, "seconds_theory": t2 - t1}


def _full_vs_theory(arch, X0, full, theory) -> dict:
    """The measures of :func:`compare_nonlinear` but its timings, from the two trajectories."""
    curve = overlap_error_curve(full.sigma_all, theory.sigma_all)
    d_full, d_theory = loss_drop_epoch(full.loss), loss_drop_epoch(theory.loss)
    shift = d_full - d_theory
    err_before, err_at = _errors_around_drop(curve, d_theory)
    kurt_end = excess_kurtosis(full.final_vectors)
    return {
        "err_end": float(curve[-1]), "err_max": float(np.max(curve)), "err_curve": curve,
        "diff_end": flatten(arch, full.final_sigma - theory.final_sigma),
        "loss_full": np.asarray(full.loss), "loss_theory": np.asarray(theory.loss),
        "loss_rel_end": float(abs(full.loss[-1] - theory.loss[-1]) / theory.loss[-1]),
        "drop_full": d_full, "drop_theory": d_theory, "drop_shift": float(shift),
        "err_before": err_before, "err_at_drop": err_at,
        "err_end_aligned": _aligned_end_error(full.sigma_all, theory.sigma_all, shift),
        "kurtosis_end": kurt_end, "kurtosis_start": excess_kurtosis(X0),
        "kurtosis_max": float(np.max(np.abs(kurt_end))),
        "gauss_dist_end": gaussian_distance(full.final_vectors), "gauss_dist_start": gaussian_distance(X0),
    }


def _errors_around_drop(curve, d_theory) -> tuple[float, float]:
    """Largest overlap error before 0.8 x the theory's drop epoch, and the error at that epoch
    (NaN, NaN without a drop)."""
    if not np.isfinite(d_theory):
        return float("nan"), float("nan")
    e_before = int(0.8 * d_theory)
    return float(np.max(curve[:max(1, e_before)])), float(curve[int(round(d_theory))])


def _aligned_end_error(sigma_full, sigma_theory, shift) -> float:
    """Largest overlap difference at the end, with the run whose loss dropped earlier taken
    ``|round(shift)|`` epochs before its end (``shift``: full minus theory drop epoch; NaN when
    either run has no drop)."""
    if not np.isfinite(shift):
        return float("nan")
    s = int(round(shift))
    E = sigma_full.shape[0] - 1
    if s >= 0:
        return float(np.max(np.abs(sigma_full[E] - sigma_theory[E - s])))
    return float(np.max(np.abs(sigma_full[E + s] - sigma_theory[E])))


# ----------------------------------------------------------------------------- the E9 grid
def e9_jobs(N_values, seeds, activations=("erf", "tanh"), tasks=E9_TASKS, lrs=(0.1, 0.2),
            epochs: int = 300, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
            epochs_largest: int | None = None, activations_largest=None, lrs_largest=None,
            dtype: str = "float32") -> list[dict]:
    """Parameters of the E9 nonlinear jobs: every activation x task x lr x N, ``seeds[i]`` seeds at
    ``N_values[i]``. At the largest N (where a full-network epoch is costliest) the run may be
    shortened: ``epochs_largest`` epochs (default ``epochs``), only ``activations_largest`` and
    ``lrs_largest`` (default: all). ``dtype``: the full network's precision (see
    :func:`compare_nonlinear`). The jobs come largest N first."""
    N_values, seeds = list(N_values), list(seeds)
    if not N_values or len(N_values) != len(seeds):
        raise InvalidParameterError(f"e9_jobs: N_values and seeds need the same non-zero length, got {N_values}, {seeds}")
    for i, (N, ns) in enumerate(zip(N_values, seeds)):
        check_int(f"e9_jobs: N_values[{i}]", N, 1)
        check_int(f"e9_jobs: seeds[{i}] (the number of seeds at N_values[{i}])", ns, 1)
    _check_dtype(dtype, "e9_jobs")
    big = max(N_values)
    jobs = []
    for act in activations:
        for task in tasks:
            for lr in lrs:
                for N, ns in zip(N_values, seeds):
                    if N == big and ((activations_largest is not None and act not in activations_largest)
                                     or (lrs_largest is not None and float(lr) not in [float(x) for x in lrs_largest])):
                        continue
                    for seed in range(int(ns)):
                        ep = int(epochs_largest or epochs) if N == big else int(epochs)
                        jobs.append(dict(activation=str(act), task=str(task), N=int(N), lr=float(lr),
                                         seed=seed, epochs=ep, n_trials=int(n_trials), dt=float(dt),
                                         T_max=float(T_max), dtype=str(dtype)))
    # largest N first (a stable sort keeps the order within a size): a job's cost grows with N, so
    # the longest jobs start first and the workers of a sweep finish together instead of one of
    # them running an N = 1e5 job alone at the end
    jobs.sort(key=lambda j: -j["N"])
    return jobs


# ----------------------------------------------------------------------------- summaries
_GROUP = ["activation", "task", "lr"]


def seed_summary(frame, column: str):
    """Median, min, max and count over seeds of ``column`` of an E9 sweep frame, per
    (activation, task, lr, N): a DataFrame with columns median, min, max, count (finite values)
    and missing (NaN or infinite values, left out of the other four and counted here)."""
    df = frame.reset_index()
    if column not in df.columns:
        raise InvalidParameterError(f"seed_summary: no column {column!r} in the frame")
    vals = pd.to_numeric(df[column], errors="coerce")
    finite = np.isfinite(vals.to_numpy(dtype=float))
    df = df.assign(_v=vals.where(finite), _missing=~finite)
    g = df.groupby(_GROUP + ["N"])
    out = g["_v"].agg(["median", "min", "max", "count"])
    out["missing"] = g["_missing"].sum().astype(int)
    return out


def _finite_positive(sub, column):
    v = sub[column].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    return sub["N"].to_numpy(dtype=float)[ok], v[ok], int(np.sum(~ok))


def levels_off_verdict(frame, key, column: str = "err_end", alpha: float = 0.05, n_boot: int = 2000,
                       seed: int = 0):
    """:func:`~lowrank_learning.analysis.stats.levels_off_test` of ``column`` against N over the
    runs (one per seed) of one (activation, task, lr) ``key`` of an E9 sweep frame. Runs whose value
    is not a positive finite number are left out and counted in the verdict's ``excluded``."""
    df = frame.reset_index()
    act, task, lr = key
    sub = df[(df.activation == act) & (df.task == task) & (df.lr == float(lr))]
    if sub.empty:
        raise InvalidParameterError(f"levels_off_verdict: no runs for {key!r}")
    N, err, bad = _finite_positive(sub, column)
    v = levels_off_test(N, err, alpha=alpha, n_boot=n_boot, seed=seed,
                        claim=f"the {column} error of {act}, {task}, lr = {float(lr):g} has an N-independent part")
    if bad:
        v = replace(v, excluded=bad, note=f"{bad} of {len(sub)} runs without a positive finite {column} left out; "
                    + v.note)
    return v


def scaling_table(frame, column: str = "err_end", level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                  alpha: float = 0.05):
    """Fits of ``column`` against N (every seed a point) per (activation, task, lr) of an E9 sweep frame.

    Columns: ``a``, ``b`` (constrained fit, ``a, b >= 0``), ``a_free``, ``b_free`` (unconstrained),
    ``slope`` (log-log), each with ``_lo`` and ``_hi``: the ``level`` percentile-bootstrap interval
    over seeds (:func:`~lowrank_learning.analysis.stats.bootstrap_error_scaling`); ``crossover`` and
    ``rms_residual`` of the constrained fit; ``runs`` (points fitted) and ``excluded`` (runs whose
    value is NaN, infinite or <= 0, left out and counted); ``levels_off`` (the verdict word of
    :func:`levels_off_verdict`), ``holds`` (whether that word is "holds") and ``p`` (its p-value). Combinations with fewer than two distinct N
    are left out."""
    df = frame.reset_index()
    rows = {}
    for key, sub in df.groupby(_GROUP):
        N, err, bad = _finite_positive(sub, column)
        if np.unique(N).size < 2:
            continue
        fit = fit_error_scaling(N, err)
        boot = bootstrap_error_scaling(N, err, level=level, n_boot=n_boot, seed=seed)
        row = {}
        for name in ("a", "b", "a_free", "b_free", "slope"):
            row[name], row[name + "_lo"], row[name + "_hi"] = boot[name]
        v = levels_off_verdict(frame, key, column, alpha=alpha, n_boot=n_boot, seed=seed)
        row.update(crossover=fit.crossover, rms_residual=fit.rms_residual, runs=int(N.size), excluded=bad,
                   levels_off=v.verdict, holds=v.holds, p=v.p if v.p is not None else float("nan"))
        rows[key] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=_GROUP)
    return out
