"""Time per training epoch of the compiled learners (float32, CPU unless JAX sees a GPU).

Workloads A-E and their goals are listed in ``workloads.py`` (A, B: linear full network and
overlap map on the E1 task; C: erf overlap dynamics on flip-flop; D: erf full network at E6's
size; E: the ensemble of E8's 20 twin runs). Workload E is also timed as 20 single runs
(``ll.learn_overlaps`` one after the other) and with the XLA adjoint instead of the compiled
CPU kernel (``LOWRANK_KERNEL=xla``), workload D with XLA autodiff instead of the full network's
compiled kernel. Last, the ratio of full-network to overlap-map time per
epoch for N = 10^2 .. 10^5 (linear, E1 task).

Each timing compiles first (one untimed run with the same shapes), then times ``epochs``
epochs and reports the median and best of ``repeats`` runs. ``--json`` writes the results
with the machine; ``python benchmarks/report.py`` turns ``benchmarks/results/*.json`` into
``benchmarks/README.md``.

Usage: python benchmarks/bench_epochs.py [--quick] [--repeats 5] [--json benchmarks/results/NAME.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np
from workloads import GOALS_MS

import lowrank_learning as ll
from lowrank_learning.core import _kernels, _network_kernel


def workloads(quick: bool):
    lin = ll.Architecture()
    erf = ll.Architecture(activation="erf")
    e1 = ll.tasks.exponential_filter(c=0.2, dt=0.05, T_max=20.0)  # 400 steps
    ff_c = ll.tasks.flip_flop(n_trials=128, dt=0.05, T_max=20.0, wait_min=1.0, wait_max=2.0,
                              input_amplitude=2.0, target_amplitude=1.0, mask_after=0.5)
    ff_d = ll.tasks.flip_flop(n_trials=10, dt=0.025, T_max=20.0)  # 800 steps (E6)
    n = 64 if quick else 256
    X_a = ll.sample_vectors(lin, 500, seed=0)
    X_d = ll.sample_vectors(erf, 600, seed=0)
    return {
        "A": (lambda e: ll.learn_vectors(lin, X_a, e1, 5e-3, e, progress=False), n),
        "B": (lambda e: ll.learn_overlaps(lin, ll.overlaps(X_a), e1, 5e-3, e, progress=False), 8 * n),
        "C": (lambda e: ll.learn_overlaps(erf, ll.overlaps(X_d), ff_c, 1e-2, e, progress=False), n),
        "D": (lambda e: ll.learn_vectors(erf, X_d, ff_d, 5e-2, e, progress=False), max(8, n // 8)),
        "E": (lambda e: _ensemble(e), max(8, n // 4)),
    }


def _e8_members():
    ff, dm, _ = ll.twins.twin_tasks(128)
    start = ll.random_overlaps(ll.twins.ARCH, 10, seed=0).sigma.astype(np.float32)
    return ll.twins.ARCH, np.concatenate([start, start]), [ff] * 10 + [dm] * 10


def _ensemble(epochs):
    arch, S0, tasks = _e8_members()
    return ll.learn_overlaps_ensemble(arch, S0, tasks, ll.DropBelow(0.01, 0.015, 5.0), epochs, seeds=0,
                                      record_every=10, progress=False)


def _singles(epochs):
    arch, S0, tasks = _e8_members()
    return [ll.learn_overlaps(arch, S, t, ll.DropBelow(0.01, 0.015, 5.0), epochs, seed=0, progress=False)
            for S, t in zip(S0, tasks)]


def _with_xla(fn):
    """``fn()`` with ``LOWRANK_KERNEL=xla`` (the kernel choice is read when a loop is traced)."""
    old, os.environ["LOWRANK_KERNEL"] = os.environ.get("LOWRANK_KERNEL"), "xla"
    try:
        return fn()
    finally:
        if old is None:
            del os.environ["LOWRANK_KERNEL"]
        else:
            os.environ["LOWRANK_KERNEL"] = old


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs and sizes (smoke test)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, float32")
    results = {"jax": jax.__version__, "device": jax.devices()[0].platform, "cores": os.cpu_count(),
               "processor": platform.processor() or platform.machine(), "dtype": "float32",
               "repeats": args.repeats, "quick": args.quick, "load_average": list(os.getloadavg()),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workloads": {}, "ratio": {}}
    print(f"ms per epoch, median and best of {args.repeats} runs; the goal is judged on the median")
    for name, (run, epochs) in workloads(args.quick).items():
        med, best = (1e3 * t for t in ll.seconds_per_epoch(run, epochs, args.repeats))
        ok = "meets" if med <= GOALS_MS[name] else "MISSES"
        results["workloads"][name] = {"ms_per_epoch_median": med, "ms_per_epoch_best": best,
                                      "goal_ms": GOALS_MS[name]}
        print(f"{name}: median {med:9.4f}  best {best:9.4f} ms/epoch   goal <= {GOALS_MS[name]:g} ms"
              f"  ({ok} the goal)")
    singles = 1e3 * ll.seconds_per_epoch(_singles, 16 if args.quick else 32, max(1, args.repeats // 2))[0]
    ens = results["workloads"]["E"]["ms_per_epoch_median"]
    # the same ensemble on the XLA adjoint (the kernel choice is read when the loop is traced)
    results["kernel_E"] = _kernels.choose("auto", ll.Architecture(activation="erf"), work=20 * 128 * 400)
    xla = _with_xla(lambda: 1e3 * ll.seconds_per_epoch(_ensemble, max(8, (16 if args.quick else 64) // 4),
                                                       max(1, args.repeats // 2))[0])
    results["E_xla_ms"] = xla
    print(f"E with the {results['kernel_E']} kernel: {ens:.2f} ms; with the XLA adjoint: {xla:.2f} ms per epoch")
    # workload D with autodiff instead of the full network's compiled kernel
    run_d, epochs_d = workloads(args.quick)["D"]
    results["kernel_D"] = "numba" if _network_kernel.usable(ll.Architecture(activation="erf"), np.float32) else "xla"
    results["D_xla_ms"] = _with_xla(lambda: 1e3 * ll.seconds_per_epoch(run_d, epochs_d, args.repeats)[0])
    print(f"D with the {results['kernel_D']} kernel: {results['workloads']['D']['ms_per_epoch_median']:.2f} ms; "
          f"with XLA autodiff: {results['D_xla_ms']:.2f} ms per epoch")
    results["ensemble_vs_singles"] = {"ensemble_ms": ens, "singles_ms": singles, "speedup": singles / ens}
    print(f"E vs 20 single runs: {ens:.2f} ms vs {singles:.2f} ms per epoch (x{singles / ens:.1f}); "
          f"E8 (2 x 30000 epochs) at this rate: {2 * 30000 * ens / 6e4:.1f} min")
    lin = ll.Architecture()
    e1 = ll.tasks.exponential_filter()
    sizes = (100, 1000, 10000) if args.quick else (100, 1000, 10000, 100000)
    S0 = ll.overlaps(ll.sample_vectors(lin, 100, seed=0))
    t_ov = ll.seconds_per_epoch(lambda e: ll.learn_overlaps(lin, S0, e1, 5e-3, e, progress=False), 128,
                           args.repeats)[0]
    print(f"\nfull network vs overlap map, linear E1 task (overlap map: {1e3 * t_ov:.4f} ms/epoch, any N)")
    for N in sizes:
        X = ll.sample_vectors(lin, N, seed=0)
        epochs = 64 if N <= 10000 else 16
        t_full = ll.seconds_per_epoch(lambda e: ll.learn_vectors(lin, X, e1, 5e-3, e, progress=False),
                                 epochs, args.repeats)[0]
        results["ratio"][N] = {"full_ms": 1e3 * t_full, "overlap_ms": 1e3 * t_ov, "ratio": t_full / t_ov}
        print(f"  N = {N:>6}: full {1e3 * t_full:9.3f} ms/epoch   ratio full/overlap = {t_full / t_ov:8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
