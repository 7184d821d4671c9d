"""Sweeps: grids of independent jobs (parameters x seeds), run locally or on a Dask cluster.

A *job* is one call ``fn(**params)`` of a module-level function returning a dict
``name -> number or array``. :func:`run_sweep` runs a list of jobs

* in this process (``workers=1``),
* in local worker processes (``workers > 1``, the default: ``min(2, CPUs)``), or
* on a ``dask.distributed`` cluster (``scheduler="tcp://host:8786"`` or a ``Client``),

and gathers the results into one :class:`pandas.DataFrame` whose index levels are the
parameters and whose columns are the outputs. Every job is cached on its own with the package's
result cache (:mod:`lowrank_learning.core.cache`, key = sweep name, function, parameters, package
code), looked up and written by the calling process: an interrupted sweep resumes where it
stopped, and a sweep on a remote cluster is cached on the machine that asked for it. A job that
raises is reported with its parameters and does not lose the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import itertools
import multiprocessing
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from tqdm import tqdm

from .core import cache as _cache
from .core._atomic import atomic_open
from .core._checks import check_choice, check_int, check_positive
from .core._kernels import use_jax_cache
from .core.errors import InvalidParameterError, LowRankError
from .learn._loop import bars_disabled

__all__ = ["grid", "run_sweep", "write_csv", "JobFailure", "SweepError", "SchedulerUnreachableError", "ERRORS"]

ERRORS = ("raise", "collect")


class SweepError(LowRankError):
    """Some jobs of a sweep failed. ``failures`` lists them; ``frame`` holds the jobs that ran."""

    def __init__(self, message: str, failures, frame):
        super().__init__(message)
        self.failures = list(failures)
        self.frame = frame


class SchedulerUnreachableError(LowRankError, ConnectionError):
    """No Dask scheduler answered at the given address within the timeout."""


@dataclass(frozen=True)
class JobFailure:
    """A job that raised: its parameters, the exception's type and message, and the traceback."""

    params: dict
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"job ({args}) failed: {self.error}"


def grid(**axes) -> list[dict]:
    """The Cartesian product of parameter axes as a list of job parameter dicts.

    ``grid(N=[100, 1000], seed=range(3))`` -> 6 dicts, the last axis varying fastest.
    Every axis must be a non-empty iterable of values.
    """
    if not axes:
        raise InvalidParameterError("grid: give at least one parameter axis, e.g. grid(seed=range(5))")
    values = {}
    for name, vals in axes.items():
        if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
            raise InvalidParameterError(f"grid: axis {name!r} must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise InvalidParameterError(f"grid: axis {name!r} is empty")
        values[name] = vals
    return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]


# ----------------------------------------------------------------------------- one job
def _plain_param(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def _plain_output(v):
    """Numbers -> Python scalars, arrays (numpy/JAX) -> numpy arrays (0-d arrays -> scalars)."""
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    arr = np.asarray(v)
    return arr.item() if arr.ndim == 0 else arr


def _x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def _compute(fn, params: dict, x64: bool):
    """Run one job in a worker: same floating-point precision as the caller, then ``fn(**params)``."""
    if _x64_enabled() != x64:
        jax.config.update("jax_enable_x64", x64)
    out = fn(**params)
    if not isinstance(out, dict) or not out:
        raise InvalidParameterError(
            f"a sweep job must return a non-empty dict name -> number or array, got {type(out).__name__}"
        )
    return {str(k): _plain_output(v) for k, v in out.items()}


def _compute_safe(fn, params: dict, x64: bool):
    """``("ok", result)`` or ``("error", message, traceback)``: a failure never kills the pool."""
    try:
        return ("ok", _compute(fn, params, x64))
    except Exception as exc:  # reported with the job's parameters
        return ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())


@functools.lru_cache(maxsize=1)
def _worker_setup() -> None:
    """Once per local worker process: JAX's persistent compilation cache, so that the workers
    compile each configuration once between them (:func:`~lowrank_learning.core._kernels.use_jax_cache`)."""
    use_jax_cache()


def _worker_compute_safe(fn, params: dict, x64: bool):
    """:func:`_compute_safe` in a local worker process."""
    _worker_setup()
    return _compute_safe(fn, params, x64)


# ----------------------------------------------------------------------------- executors
def _connect(scheduler, timeout: float):
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - the dask extra is installed in dev
        raise InvalidParameterError(
            "scheduler given but dask.distributed is not installed: pip install 'lowrank-learning[dask]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InvalidParameterError(f"scheduler must be an address such as 'tcp://host:8786' or a "
                                    f"dask.distributed.Client, got {scheduler!r}")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnreachableError(
            f"no Dask scheduler answered at {scheduler!r} within {timeout:g} s "
            f"({time.perf_counter() - t0:.1f} s elapsed): {type(exc).__name__}: {exc}"
        ) from None
    return client, True


def _importable(fn) -> bool:
    mod = getattr(fn, "__module__", None)
    return bool(mod) and mod != "__main__" and "<locals>" not in getattr(fn, "__qualname__", "<locals>")


def _share_cores(n_workers: int) -> None:
    """Worker initializer: the numba kernels' threads per worker, the CPUs divided among the
    ``n_workers`` workers (``LOWRANK_KERNEL_THREADS``, unless already set), so that workers
    do not each start a thread per CPU."""
    if "LOWRANK_KERNEL_THREADS" not in os.environ:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        os.environ["LOWRANK_KERNEL_THREADS"] = str(max(1, cpus // max(1, n_workers)))


def _run_pending(fn, pending, x64, workers, scheduler, timeout, on_done):
    """Run ``pending`` [(index, params)], calling ``on_done(index, outcome)`` as each finishes."""
    if scheduler is not None:
        client, own = _connect(scheduler, timeout)
        try:
            from dask.distributed import as_completed

            with client.as_current():
                futures = {client.submit(_compute_safe, fn, params, x64, pure=False): i for i, params in pending}
                for fut in as_completed(futures):
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # the worker died or the task could not be sent
                        outcome = ("error", f"{type(exc).__name__}: {exc}", "")
                    on_done(futures[fut], outcome)
        finally:
            if own:
                client.close()
        return
    if workers == 1 or len(pending) == 1:
        for i, params in pending:
            on_done(i, _compute_safe(fn, params, x64))
        return
    if not _importable(fn):
        raise InvalidParameterError(
            f"workers={workers}: the job function {getattr(fn, '__qualname__', fn)!r} must be defined at "
            "module level in an importable module (worker processes import it); use workers=1 or a "
            "Dask scheduler for functions defined in a notebook"
        )
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    n = min(workers, len(pending))
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_share_cores, initargs=(n,)) as pool:
        futures = {pool.submit(_worker_compute_safe, fn, params, x64): i for i, params in pending}
        try:
            for fut in cf.as_completed(futures):
                try:
                    outcome = fut.result()
                except Exception as exc:  # a worker process died (e.g. out of memory)
                    outcome = ("error", f"{type(exc).__name__}: {exc}", "")
                on_done(futures[fut], outcome)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


# ----------------------------------------------------------------------------- the sweep
def _check_jobs(jobs) -> list[dict]:
    if isinstance(jobs, dict):
        raise InvalidParameterError("jobs must be a list of parameter dicts (use grid(...) to build one), got a dict")
    try:
        jobs = [dict(j) for j in jobs]
    except (TypeError, ValueError):
        raise InvalidParameterError("jobs must be a list of dicts parameter name -> value") from None
    if not jobs:
        raise InvalidParameterError("jobs: the sweep is empty (no parameter combinations)")
    keys = list(jobs[0])
    if not keys:
        raise InvalidParameterError("jobs[0] has no parameters")
    for i, j in enumerate(jobs):
        if set(j) != set(keys):
            raise InvalidParameterError(
                f"jobs[{i}] has parameters {sorted(j)}, jobs[0] has {sorted(keys)}: every job needs the same names"
            )
    seen = {}
    for i, j in enumerate(jobs):
        sig = tuple((k, repr(_plain_param(j[k]))) for k in keys)
        if sig in seen:
            raise InvalidParameterError(f"jobs[{i}] repeats jobs[{seen[sig]}]: {j}")
        seen[sig] = i
    return [{k: _plain_param(j[k]) for k in keys} for j in jobs]


def _frame(jobs, results):
    keys = list(jobs[0])
    rows, index = [], []
    for params, res in zip(jobs, results):
        if res is None:
            continue
        index.append(tuple(params[k] for k in keys))
        rows.append(res)
    if len(keys) == 1:
        idx = pd.Index([t[0] for t in index], name=keys[0])
    else:
        idx = pd.MultiIndex.from_tuples(index, names=keys) if index else \
            pd.MultiIndex.from_arrays([[] for _ in keys], names=keys)
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    data = {c: [r.get(c, np.nan) for r in rows] for c in columns}
    return pd.DataFrame(data, index=idx)


def run_sweep(name: str, fn, jobs, *, scheduler=None, workers: int | None = None,
              progress: bool | None = None, timeout: float = 5.0, errors: str = "raise",
              cache_dir=None):
    """Run ``fn(**params)`` for every ``params`` in ``jobs`` and gather the results.

    Parameters
    ----------
    name : str
        The sweep's name (letters, digits, ``_ . -``): labels the cache entries.
    fn : callable
        A module-level function ``fn(**params) -> dict name -> number or array``.
    jobs : list of dict
        The jobs' parameters (e.g. from :func:`grid`); every job has the same names, no job twice.
    scheduler : str or dask.distributed.Client, optional
        Run on this Dask cluster (``"tcp://host:8786"``) instead of local processes.
    workers : int, optional
        Local worker processes (default ``min(2, CPUs)``; 1 runs in this process). Ignored with a
        scheduler.
    progress : bool or None
        tqdm bar over jobs (None: shown for more than one job to compute).
    timeout : float
        Seconds to wait for the scheduler to answer before :class:`SchedulerUnreachableError`.
    errors : {"raise", "collect"}
        After all jobs ran: ``raise`` a :class:`SweepError` if any job failed (the others are
        cached, so a rerun recomputes only the failed ones); ``collect`` returns the frame of the
        jobs that succeeded with the failures in ``frame.attrs["failures"]`` (list of
        :class:`JobFailure`).
    cache_dir : path, optional
        Overrides the cache directory (``$LOWRANK_LEARNING_CACHE``).

    Returns
    -------
    pandas.DataFrame, one row per successful job in the order of ``jobs``, indexed by the
    parameters (one index level per parameter), one column per output (array outputs are
    stored as numpy arrays in object columns). ``frame.attrs`` holds ``failures``,
    ``computed`` and ``cached`` (job counts).
    """
    _cache.check_name("run_sweep", name)
    if not callable(fn):
        raise InvalidParameterError(f"run_sweep: fn must be callable, got {type(fn).__name__}")
    check_choice("run_sweep: errors", errors, ERRORS)
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    workers = check_int("run_sweep: workers", workers, 1)
    timeout = check_positive("run_sweep: timeout (seconds)", timeout)
    jobs = _check_jobs(jobs)
    x64 = _x64_enabled()
    use_cache = _cache.enabled()

    results: list = [None] * len(jobs)
    keys: list = [None] * len(jobs)
    pending = []
    for i, params in enumerate(jobs):
        if use_cache:
            keys[i] = _cache.cache_key(name, fn, (), params)
            hit, results[i] = _cache.lookup(name, keys[i], cache_dir=cache_dir)
            if hit:
                continue
        pending.append((i, params))

    failures: list[JobFailure] = []
    show = ((len(pending) > 1) if progress is None else bool(progress)) and not bars_disabled()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=f"sweep {name}", unit="job",
               disable=not show, leave=False)

    def on_done(i, outcome):
        if outcome[0] == "ok":
            results[i] = outcome[1]
            if use_cache:
                _cache.store(name, keys[i], outcome[1], cache_dir=cache_dir)
        else:
            failures.append(JobFailure(dict(jobs[i]), outcome[1], outcome[2] if len(outcome) > 2 else ""))
            bar.write(str(failures[-1]))
        bar.update(1)

    try:
        if pending:
            _run_pending(fn, pending, x64, workers, scheduler, timeout, on_done)
    finally:
        bar.close()
    frame = _frame(jobs, results)
    frame.attrs["failures"] = failures
    frame.attrs["computed"] = len(pending) - len(failures)
    frame.attrs["cached"] = len(jobs) - len(pending)
    if failures and errors == "raise":
        lines = "\n".join(f"  {f}" for f in failures)
        raise SweepError(f"sweep {name!r}: {len(failures)} of {len(jobs)} jobs failed (the others are "
                         f"cached; rerunning recomputes only these):\n{lines}", failures, frame)
    return frame


def write_csv(frame, path):
    """Write the scalar columns of a sweep's frame (parameters as columns) to ``path`` atomically.

    Array-valued outputs are left out (CSV holds one number per cell). Returns the path.
    """
    path = Path(path)
    scalar = [c for c in frame.columns
              if not any(isinstance(v, np.ndarray) and v.ndim > 0 for v in frame[c])]
    flat = frame[scalar].reset_index()
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        flat.to_csv(f, index=False)
    return path
