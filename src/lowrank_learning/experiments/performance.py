"""The cost of learning: seconds per epoch of the overlap dynamics and of full networks (performance chapter)."""

from __future__ import annotations

import time

import jax
import numpy as np

from ..core._checks import check_int, check_positive
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError
from ..core.overlaps import sample_vectors, sigma_from_named
from ..learn.overlap_space import learn_overlaps
from ..learn.vectors import learn_vectors
from ..tasks import exponential_filter
from .validation import INIT_OVERLAPS, e9_task

__all__ = ["seconds_per_epoch", "scaling_benchmark", "crossover_size"]


def seconds_per_epoch(run, epochs: int, repeats: int) -> tuple[float, float]:
    """Median and best seconds per epoch of ``run(epochs)`` over ``repeats`` runs, after an
    untimed run that compiles (same shapes and chunk size as the timed runs). ``run`` is any
    callable taking a number of epochs, e.g. ``lambda e: ll.learn_overlaps(arch, S0, task, lr, e)``."""
    run(epochs)
    times = []
    for _ in range(repeats):
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
    ``epochs`` epochs of the full network (``epochs_largest`` at the largest N) and of
    ``8 * epochs`` epochs of the overlap dynamics (one of its epochs is too short to time alone).
    The full network starts from ``sample_vectors(arch, N, seed=0, sigma=INIT_OVERLAPS)`` and the
    overlap dynamics from ``INIT_OVERLAPS`` itself. Precision: whatever JAX is set to.

    Returns ``{"N": [...], "<act>": {"overlap_s", "overlap_best_s", "full_s" (per N),
    "full_best_s" (per N)}, "device": str, "dtype": str}``.
    """
    N_values = [check_int(f"scaling_benchmark: N_values[{i}]", n, 1) for i, n in enumerate(N_values)]
    if not N_values:
        raise InvalidParameterError("scaling_benchmark: N_values must hold at least one size")
    epochs = check_int("scaling_benchmark: epochs", epochs, 1)
    repeats = check_int("scaling_benchmark: repeats", repeats, 1)
    if epochs_largest is not None:
        epochs_largest = check_int("scaling_benchmark: epochs_largest", epochs_largest, 1)
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
        ov = seconds_per_epoch(lambda e: learn_overlaps(arch, S0, task, lr, e, progress=False), 8 * epochs, repeats)
        rec = {"overlap_s": ov[0], "overlap_best_s": ov[1], "full_s": [], "full_best_s": []}
        for N in N_values:
            X0 = sample_vectors(arch, N, seed=0, sigma=S0)
            ep = (epochs_largest or epochs) if N == big else epochs
            fu = seconds_per_epoch(lambda e: learn_vectors(arch, X0, task, lr, e, progress=False), ep, repeats)
            rec["full_s"].append(fu[0])
            rec["full_best_s"].append(fu[1])
        out[act] = rec
    return out


def crossover_size(N, full_s, overlap_s: float) -> float:
    """Smallest N at which the full network costs as much per epoch as the overlap dynamics,
    from a fit ``t_full(N) = c0 + c1 N`` (least squares on relative errors); 0 if the full network
    is slower already at N -> 0 (``c0 >= overlap_s``), NaN if it never becomes slower."""
    N = np.asarray(N, dtype=float).ravel()
    t = np.asarray(full_s, dtype=float).ravel()
    if t.shape != N.shape:
        raise InvalidParameterError(f"crossover_size: full_s needs one timing per size, got {t.size} for {N.size} sizes")
    if not np.all(np.isfinite(N)) or np.any(N <= 0) or np.unique(N).size < 2:
        raise InvalidParameterError(f"crossover_size: N needs at least two distinct positive sizes, got {N.tolist()}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InvalidParameterError(f"crossover_size: full_s must be positive finite timings, got {t.tolist()}")
    overlap_s = check_positive("crossover_size: overlap_s", overlap_s)
    A = np.stack([np.ones_like(N), N], axis=1) / t[:, None]
    (c0, c1), *_ = np.linalg.lstsq(A, np.ones_like(N), rcond=None)
    if c0 >= overlap_s:
        return 0.0
    if c1 <= 0:
        return float("nan")
    return float((overlap_s - c0) / c1)
