"""Where the overlap theory holds (E9): full network vs theory, error decomposition, non-Gaussianity.

Measures
--------
* :func:`excess_kurtosis` and :func:`gaussian_distance`: how far the entries of trained vectors
  (rows of X, one sample per neuron) are from the jointly Gaussian population the mean-field
  theory assumes.
* :func:`fit_error_scaling`: ``err(N) = a / sqrt(N) + b`` (finite-size part + systematic part)
  and the log-log slope.
* :func:`loss_drop_epoch`: the (fractional) epoch at which a loss curve drops.

Sweep jobs (module-level, for :func:`lowrank_learning.sweeps.run_sweep`)
-----------------------------------------------------------------------
* :func:`linear_exactness`: exact overlap map vs the full linear network.
* :func:`compare_nonlinear`: learn_overlaps (rule="exact") vs learn_vectors for erf/tanh on
  flip-flop or a teacher task, with the errors before, at and after the loss drop.

:func:`e9_jobs` builds the E9 grid; :data:`E9_PROFILES` holds its quick and paper sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .architecture import Architecture
from .errors import InvalidParameterError, finite_matrix

__all__ = [
    "excess_kurtosis", "gaussian_distance", "ErrorScaling", "fit_error_scaling", "loss_drop_epoch",
    "overlap_error_curve", "teacher_batch", "e9_task", "linear_exactness", "compare_nonlinear",
    "e9_jobs", "E9_PROFILES", "INIT_OVERLAPS", "TEACHER_OVERLAPS", "E9_TASKS", "scaling_benchmark",
    "crossover_size", "named_sweep", "NAMED_SWEEPS", "seed_summary", "scaling_table",
]

# Initial overlaps of the E9 networks: the vectors are drawn with Gaussian rows of this
# covariance, so the trajectory does not depend on N except through finite-size fluctuations
# (an isotropic draw would start at cross overlaps O(1/sqrt(N)), i.e. at an N-dependent point).
INIT_OVERLAPS = dict(zm=0.1, zu=0.1, vm=0.1, vu=0.3, mu=0.0, zv=0.0, mm=1.0, uu=1.0, vv=1.0, zz=1.0)
# The teacher network of the teacher task (positive definite; same activation as the student).
TEACHER_OVERLAPS = dict(zm=0.5, zu=0.8, vm=0.8, vu=0.9, mu=0.3, zv=0.3, mm=1.0, uu=1.2, vv=1.5, zz=1.5)
E9_TASKS = ("flipflop", "teacher")


# ----------------------------------------------------------------------------- measures
def excess_kurtosis(X) -> np.ndarray:
    """Excess kurtosis of each column of ``X`` (N, K) -> (K,) (0 for a Gaussian; Fisher's
    definition, biased estimator). For N Gaussian samples its standard error is ``sqrt(24/N)``."""
    from scipy.stats import kurtosis

    return np.atleast_1d(kurtosis(finite_matrix(X, "excess_kurtosis: X", min_rows=4, shape="(N, K)"), axis=0, fisher=True, bias=True))


def gaussian_distance(X, n_projections: int = 64, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between the rows of ``X`` (N, K) and a Gaussian with the
    same mean and covariance, in units of each projection's standard deviation (scale-free).

    For each of ``n_projections`` random unit directions ``w`` (drawn from ``seed``), the
    projections ``X w`` are standardised and their sorted values compared with the standard
    normal quantiles at ``(i + 1/2) / N``; the mean absolute difference is the 1-d
    Wasserstein distance to the Gaussian (no Gaussian sample is drawn). Returns the average over
    directions: 0 for an exactly Gaussian population, ~0.8/sqrt(N) for an i.i.d. Gaussian sample,
    O(1) for strongly non-Gaussian rows (a +-1 coin gives 0.40 in one dimension).
    """
    from scipy.special import ndtri

    X = finite_matrix(X, "gaussian_distance: X", min_rows=4, shape="(N, K)")
    if isinstance(n_projections, bool) or not isinstance(n_projections, (int, np.integer)) or n_projections < 1:
        raise InvalidParameterError(f"gaussian_distance: n_projections must be an integer >= 1, got {n_projections!r}")
    N, K = X.shape
    W = np.random.default_rng(seed).standard_normal((K, int(n_projections)))
    W /= np.linalg.norm(W, axis=0)
    P = (X - X.mean(axis=0)) @ W  # (N, n_projections)
    sd = P.std(axis=0)
    if np.any(sd == 0):
        raise InvalidParameterError("gaussian_distance: a projection of X has zero variance")
    P = np.sort(P / sd, axis=0)
    q = ndtri((np.arange(N) + 0.5) / N)
    return float(np.mean(np.abs(P - q[:, None])))


@dataclass(frozen=True)
class ErrorScaling:
    """Fit of ``err(N) = a / sqrt(N) + b`` (``a, b >= 0``, relative least squares) and the log-log slope.

    Attributes
    ----------
    a : float  finite-size amplitude (error at N = 1 of the 1/sqrt(N) part)
    b : float  systematic, N-independent part
    slope : float  slope of log err against log N (-0.5 for pure finite-size error)
    crossover : float  N at which the two parts are equal, ``(a / b)^2`` (inf if b = 0)
    rms_residual : float  root-mean-square relative residual of the fit
    """

    a: float
    b: float
    slope: float
    crossover: float
    rms_residual: float

    def __call__(self, N):
        return self.a / np.sqrt(np.asarray(N, dtype=float)) + self.b


def fit_error_scaling(N, err) -> ErrorScaling:
    """Fit ``err = a / sqrt(N) + b`` with ``a, b >= 0`` to positive errors ``err`` at sizes ``N``
    (arrays of the same shape; repeated N = several seeds). Residuals are relative (errors span
    decades): minimise ``sum ((a/sqrt(N) + b - err) / err)^2`` by non-negative least squares."""
    from scipy.optimize import nnls

    N = np.asarray(N, dtype=float).ravel()
    err = np.asarray(err, dtype=float).ravel()
    if N.shape != err.shape or N.size < 2:
        raise InvalidParameterError(f"fit_error_scaling: N and err need the same length >= 2, got {N.size} and {err.size}")
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InvalidParameterError(f"fit_error_scaling: N must be positive, got {N}")
    if np.any(~np.isfinite(err)) or np.any(err <= 0):
        raise InvalidParameterError(f"fit_error_scaling: err must be positive and finite, got {err}")
    if np.unique(N).size < 2:
        raise InvalidParameterError("fit_error_scaling: need at least two distinct N")
    A = np.stack([1.0 / np.sqrt(N), np.ones_like(N)], axis=1) / err[:, None]
    (a, b), _ = nnls(A, np.ones_like(N))
    slope = float(np.polyfit(np.log(N), np.log(err), 1)[0])
    resid = (a / np.sqrt(N) + b - err) / err
    cross = float((a / b) ** 2) if b > 0 else float("inf")
    return ErrorScaling(float(a), float(b), slope, cross, float(np.sqrt(np.mean(resid ** 2))))


def loss_drop_epoch(loss, min_ratio: float = 10.0) -> float:
    """Fractional epoch at which ``log(loss)`` first falls halfway from its initial value to its
    minimum (linear interpolation between epochs); NaN if the loss never falls by ``min_ratio``."""
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 1 or loss.size < 2 or np.any(~np.isfinite(loss)) or np.any(loss <= 0):
        raise InvalidParameterError("loss_drop_epoch: loss must be a 1-d array of >= 2 positive finite values")
    lo = float(np.min(loss))
    if loss[0] / lo < min_ratio:
        return float("nan")
    level = 0.5 * (np.log(loss[0]) + np.log(lo))
    ll = np.log(loss)
    e = int(np.argmax(ll <= level))
    if e == 0:
        return 0.0
    return float(e - 1 + (ll[e - 1] - level) / (ll[e - 1] - ll[e]))


def overlap_error_curve(sigma_a, sigma_b) -> np.ndarray:
    """Largest absolute overlap difference per epoch: (epochs, K, K) x 2 -> (epochs,)."""
    a, b = np.asarray(sigma_a), np.asarray(sigma_b)
    if a.shape != b.shape or a.ndim != 3:
        raise InvalidParameterError(f"overlap_error_curve: two (epochs, K, K) stacks of one shape, got {a.shape}, {b.shape}")
    return np.max(np.abs(a - b), axis=(1, 2))


# ----------------------------------------------------------------------------- tasks
def teacher_batch(activation: str, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                  seed: int = 1234, input_std: float = 1.5):
    """A fixed teacher batch: white-noise inputs ``input_std * N(0, 1)`` per step (drawn from
    ``seed``), targets the mean-field outputs of a teacher with overlaps :data:`TEACHER_OVERLAPS`
    and the given activation (``run_latent``), mask all ones, ``masked_mean`` loss.
    Shapes: inputs, targets, mask (n_trials, T_max/dt, 1)."""
    from .overlaps import sigma_from_named
    from .reduced import run_latent
    from .tasks import Batch

    arch = Architecture(activation=activation)
    T = int(round(T_max / dt))
    x = input_std * np.random.default_rng(seed).standard_normal((int(n_trials), T, 1))
    y = np.asarray(run_latent(arch, sigma_from_named(arch, TEACHER_OVERLAPS), x, dt))
    return Batch(x, y, np.ones_like(y), dt, "masked_mean")


def e9_task(task: str, activation: str, n_trials: int, dt: float, T_max: float):
    """The E9 task: ``"flipflop"`` (fresh trials each epoch) or ``"teacher"`` (a fixed batch)."""
    from .tasks import flip_flop

    if task == "flipflop":
        return flip_flop(n_trials=int(n_trials), dt=float(dt), T_max=float(T_max))
    if task == "teacher":
        return teacher_batch(activation, n_trials, dt, T_max)
    raise InvalidParameterError(f"task must be one of {E9_TASKS}, got {task!r}")


# ----------------------------------------------------------------------------- jobs
def linear_exactness(N: int, seed: int, lr: float = 5e-3, epochs: int = 100, dt: float = 0.05,
                     T_max: float = 20.0) -> dict:
    """Exact overlap map vs full linear network on the E1 task (impulse response, c = 0.2).

    Returns ``error`` (largest ``|sigma_full - sigma_theory|`` over overlaps and epochs, relative to
    the largest ``|sigma|``), ``loss_error`` (largest relative loss difference) and ``N``, ``seed``.
    """
    from .learning import learn_overlaps, learn_vectors
    from .overlaps import overlaps, sample_vectors
    from .tasks import exponential_filter

    arch = Architecture(activation="linear")
    X0 = sample_vectors(arch, int(N), seed=int(seed))
    task = exponential_filter(c=0.2, dt=dt, T_max=T_max)
    full = learn_vectors(arch, X0, task, lr, int(epochs), progress=False)
    theory = learn_overlaps(arch, overlaps(X0), task, lr, int(epochs), rule="exact", progress=False)
    scale = np.max(np.abs(full.sigma_all))
    err = np.max(np.abs(full.sigma_all - theory.sigma_all)) / scale
    loss_err = np.max(np.abs(full.loss - theory.loss) / np.abs(full.loss))
    return {"error": float(err), "loss_error": float(loss_err)}


def _check_dtype(dtype, where: str) -> None:
    """The full network's precision in the E9 jobs: "float32" or "float64"."""
    if dtype not in ("float32", "float64"):
        raise InvalidParameterError(f"{where}: dtype must be 'float32' or 'float64', got {dtype!r}")


def compare_nonlinear(activation: str, task: str, N: int, lr: float, seed: int, epochs: int = 300,
                      n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                      dtype: str = "float32") -> dict:
    """Full network (learn_vectors) vs overlap theory (learn_overlaps, rule="exact"), same trials.

    The vectors are drawn with Gaussian rows of covariance :data:`INIT_OVERLAPS` (seed ``seed``);
    the theory starts from their actual overlaps, so every difference comes from learning.
    ``dtype`` is the precision of the full network ("float32" or "float64"; float64 needs
    ``jax_enable_x64``); the theory runs in JAX's default float type. The comparison is statistical
    (finite-N errors of 1e-3 and more), so float32 is the default: at N = 10^3 and 10^4 it moves
    the full network's overlaps by at most about 2e-5 from a float64 run, at a third of the cost.

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
    """
    import time

    import jax

    from .learning import learn_overlaps, learn_vectors
    from .overlaps import flatten, overlaps, sample_vectors, sigma_from_named

    if task not in E9_TASKS:
        raise InvalidParameterError(f"compare_nonlinear: task must be one of {E9_TASKS}, got {task!r}")
    if activation not in ("erf", "tanh"):
        raise InvalidParameterError(f"compare_nonlinear: activation must be 'erf' or 'tanh', got {activation!r}")
    _check_dtype(dtype, "compare_nonlinear")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise InvalidParameterError("compare_nonlinear: dtype='float64' needs jax_enable_x64")
    arch = Architecture(activation=activation)
    X0 = sample_vectors(arch, int(N), seed=int(seed), sigma=sigma_from_named(arch, INIT_OVERLAPS))
    tk = e9_task(task, activation, n_trials, dt, T_max)
    t0 = time.perf_counter()
    full = learn_vectors(arch, np.asarray(X0, dtype=dtype), tk, lr, int(epochs), seed=int(seed), progress=False)
    t1 = time.perf_counter()
    theory = learn_overlaps(arch, overlaps(X0), tk, lr, int(epochs), rule="exact", seed=int(seed), progress=False)
    t2 = time.perf_counter()
    curve = overlap_error_curve(full.sigma_all, theory.sigma_all)
    d_full, d_theory = loss_drop_epoch(full.loss), loss_drop_epoch(theory.loss)
    shift = d_full - d_theory
    nan = float("nan")
    if np.isfinite(d_theory):
        e_before = int(0.8 * d_theory)
        err_before = float(np.max(curve[:max(1, e_before)]))
        err_at = float(curve[int(round(d_theory))])
    else:
        err_before = err_at = nan
    if np.isfinite(shift):
        s = int(round(shift))
        E = full.sigma_all.shape[0] - 1
        if s >= 0:
            aligned = np.max(np.abs(full.sigma_all[E] - theory.sigma_all[E - s]))
        else:
            aligned = np.max(np.abs(full.sigma_all[E + s] - theory.sigma_all[E]))
        err_aligned = float(aligned)
    else:
        err_aligned = nan
    kurt_end = excess_kurtosis(full.final_vectors)
    return {
        "err_end": float(curve[-1]), "err_max": float(np.max(curve)), "err_curve": curve,
        "diff_end": flatten(arch, full.final_sigma - theory.final_sigma),
        "loss_full": np.asarray(full.loss), "loss_theory": np.asarray(theory.loss),
        "loss_rel_end": float(abs(full.loss[-1] - theory.loss[-1]) / theory.loss[-1]),
        "drop_full": d_full, "drop_theory": d_theory, "drop_shift": float(shift),
        "err_before": err_before, "err_at_drop": err_at, "err_end_aligned": err_aligned,
        "kurtosis_end": kurt_end, "kurtosis_start": excess_kurtosis(X0),
        "kurtosis_max": float(np.max(np.abs(kurt_end))),
        "gauss_dist_end": gaussian_distance(full.final_vectors), "gauss_dist_start": gaussian_distance(X0),
        "seconds_full": t1 - t0, "seconds_theory": t2 - t1,
    }


# ----------------------------------------------------------------------------- the E9 grid
E9_PROFILES = {
    "quick": dict(N_linear=[10, 100, 1000], N_values=[100, 1000], seeds=[2, 2], activations=["erf"],
                  tasks=["flipflop", "teacher"], lrs=[0.2], epochs=60, n_trials=2, dt=0.1,
                  T_max=10.0, epochs_largest=60),
    "paper": dict(N_linear=[10, 100, 1000, 10000, 100000], N_values=[100, 1000, 10000, 100000],
                  seeds=[5, 5, 5, 2], activations=["erf", "tanh"], tasks=["flipflop", "teacher"],
                  lrs=[0.1, 0.2], epochs=200, n_trials=4, dt=0.1, T_max=20.0, epochs_largest=200,
                  activations_largest=["erf"], lrs_largest=[0.2]),
}


def e9_jobs(N_values, seeds, activations=("erf", "tanh"), tasks=E9_TASKS, lrs=(0.1, 0.2),
            epochs: int = 300, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
            epochs_largest: int | None = None, activations_largest=None, lrs_largest=None,
            dtype: str = "float32") -> list[dict]:
    """Parameters of the E9 nonlinear jobs: every activation x task x lr x N, ``seeds[i]`` seeds at
    ``N_values[i]``. At the largest N (where a full-network epoch is costliest) the run may be
    shortened: ``epochs_largest`` epochs (default ``epochs``), only ``activations_largest`` and
    ``lrs_largest`` (default: all). ``dtype``: the full network's precision (see
    :func:`compare_nonlinear`)."""
    N_values, seeds = list(N_values), list(seeds)
    if not N_values or len(N_values) != len(seeds):
        raise InvalidParameterError(f"e9_jobs: N_values and seeds need the same non-zero length, got {N_values}, {seeds}")
    if any(int(s) < 1 for s in seeds):
        raise InvalidParameterError(f"e9_jobs: every entry of seeds must be >= 1, got {seeds}")
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
    return jobs


def _demo_job(N: int, seed: int) -> dict:
    """The ``demo`` sweep's job: :func:`linear_exactness` for 5 epochs of a 2 s impulse response."""
    return linear_exactness(N=N, seed=seed, epochs=5, T_max=2.0)


# name -> (description, jobs(profile) -> (fn, jobs))
NAMED_SWEEPS = {
    "demo": ("exact map vs full linear network, N = 10 and 100, 2 seeds (seconds)",
             lambda profile: (_demo_job, [dict(N=N, seed=s) for N in (10, 100) for s in range(2)])),
    "e9-linear": ("E9 linear: exact map vs full network for N = 10 .. 10^5",
                  lambda profile: (linear_exactness, [dict(N=int(N), seed=0) for N in E9_PROFILES[profile]["N_linear"]])),
    "e9-nonlinear": ("E9 nonlinear: theory vs full network, erf/tanh x flip-flop/teacher x lr x N x seeds",
                     lambda profile: (compare_nonlinear, e9_jobs(**{k: v for k, v in E9_PROFILES[profile].items()
                                                                   if k != "N_linear"}))),
}


def named_sweep(name: str, profile: str = "paper"):
    """``(fn, jobs)`` of the named sweep (:data:`NAMED_SWEEPS`) at the given profile (quick or paper)."""
    if name not in NAMED_SWEEPS:
        raise InvalidParameterError(f"unknown sweep {name!r}; known: {sorted(NAMED_SWEEPS)}")
    if profile not in E9_PROFILES:
        raise InvalidParameterError(f"unknown profile {profile!r}; known: {sorted(E9_PROFILES)}")
    return NAMED_SWEEPS[name][1](profile)


# ----------------------------------------------------------------------------- cost
def _seconds_per_epoch(run, epochs: int, repeats: int) -> tuple[float, float]:
    import time

    run(epochs)  # compiles (same shapes and chunk size as the timed runs)
    times = []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        run(epochs)
        times.append((time.perf_counter() - t0) / epochs)
    return float(np.median(times)), float(np.min(times))


def scaling_benchmark(N_values, activations=("linear", "erf"), epochs: int = 16, repeats: int = 3,
                      epochs_largest: int | None = None) -> dict:
    """Seconds per training epoch of the overlap dynamics (any N) and of the full network (per N).

    Workloads: ``linear`` on the E1 task (impulse response, 400 steps, one trial); ``erf`` on
    E9's flip-flop (4 fresh trials of 200 steps per epoch). Each timing compiles first with an
    untimed run of the same shapes, then reports the median (and best) of ``repeats`` runs of
    ``epochs`` epochs (``epochs_largest`` at the largest N). Precision: whatever JAX is set to.

    Returns ``{"N": [...], "<act>": {"overlap_s", "overlap_best_s", "full_s" (per N),
    "full_best_s" (per N)}, "device": str, "dtype": str}``.
    """
    import jax

    from .learning import learn_overlaps, learn_vectors
    from .overlaps import sample_vectors, sigma_from_named
    from .tasks import exponential_filter

    N_values = [int(n) for n in N_values]
    if not N_values or min(N_values) < 1:
        raise InvalidParameterError(f"scaling_benchmark: N_values must be integers >= 1, got {N_values}")
    out = {"N": N_values, "device": jax.devices()[0].platform,
           "dtype": "float64" if jax.config.jax_enable_x64 else "float32"}
    big = max(N_values)
    for act in activations:
        arch = Architecture(activation=act)
        if act == "linear":
            task, lr = exponential_filter(c=0.2, dt=0.05, T_max=20.0), 5e-3
        else:
            task, lr = e9_task("flipflop", act, 4, 0.1, 20.0), 0.1
        S0 = sigma_from_named(arch, INIT_OVERLAPS)
        ov = _seconds_per_epoch(lambda e: learn_overlaps(arch, S0, task, lr, e, progress=False), 8 * epochs, repeats)
        rec = {"overlap_s": ov[0], "overlap_best_s": ov[1], "full_s": [], "full_best_s": []}
        for N in N_values:
            X0 = sample_vectors(arch, N, seed=0, sigma=S0)
            ep = int(epochs_largest or epochs) if N == big else int(epochs)
            fu = _seconds_per_epoch(lambda e: learn_vectors(arch, X0, task, lr, e, progress=False), ep, repeats)
            rec["full_s"].append(fu[0])
            rec["full_best_s"].append(fu[1])
        out[act] = rec
    return out


def crossover_size(N, full_s, overlap_s: float) -> float:
    """Smallest N at which the full network costs as much per epoch as the overlap dynamics,
    from a fit ``t_full(N) = c0 + c1 N`` (least squares on relative errors); 0 if the full network
    is slower already at N -> 0 (``c0 >= overlap_s``), NaN if it never becomes slower."""
    N = np.asarray(N, dtype=float)
    t = np.asarray(full_s, dtype=float)
    A = np.stack([np.ones_like(N), N], axis=1) / t[:, None]
    (c0, c1), *_ = np.linalg.lstsq(A, np.ones_like(N), rcond=None)
    if c0 >= overlap_s:
        return 0.0
    if c1 <= 0:
        return float("nan")
    return float((overlap_s - c0) / c1)


# ----------------------------------------------------------------------------- summaries
_GROUP = ["activation", "task", "lr"]


def seed_summary(frame, column: str):
    """Median, min, max and count over seeds of ``column`` of an E9 sweep frame, per
    (activation, task, lr, N): a DataFrame with those four columns, NaN entries ignored."""
    df = frame.reset_index()
    g = df.groupby(_GROUP + ["N"])[column]
    out = g.agg(["median", "min", "max", "count"])
    return out


def scaling_table(frame, column: str = "err_end"):
    """:func:`fit_error_scaling` of ``column`` against N (every seed a point) per (activation,
    task, lr): a DataFrame with columns a, b, slope, crossover, rms_residual."""
    import pandas as pd

    df = frame.reset_index()
    rows = {}
    for key, sub in df.groupby(_GROUP):
        sub = sub[np.isfinite(sub[column]) & (sub[column] > 0)]
        if sub["N"].nunique() < 2:
            continue
        fit = fit_error_scaling(sub["N"].to_numpy(), sub[column].to_numpy())
        rows[key] = dict(a=fit.a, b=fit.b, slope=fit.slope, crossover=fit.crossover, rms_residual=fit.rms_residual)
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=_GROUP)
    return out
