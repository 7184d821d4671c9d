"""Import and diagnosis of a large network: ``ll.from_vectors`` + ``ll.diagnose`` at N = 10^5, rank 3.

The network: rank 3, 2 inputs, 1 output, erf units, Gaussian vectors (float64), given as arrays in
another codebase's convention (readout not divided by N, tau = 0.1, dt = 0.02). The import runs
its default check (2 trials of 20 steps against the original equations); the diagnosis its default
non-Gaussianity test (39 Gaussian draws of 4096 rows) and the sliced distance of all N rows, with
no task and no start. The first call includes JAX's compilation of the check; the warm calls are
the median of the repeats. Goal: <= 5 s for import + diagnosis, warm.

Usage: python benchmarks/bench_own_network.py [--N N] [--repeats R] [--json FILE]
(`benchmarks/results/own_network-cpu.json` holds the reference machine's run.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

import lowrank_learning as ll

GOAL_S = 5.0
CONV = dict(readout_scale="1", tau=0.1, dt=0.02)


def one(arrays):
    t0 = time.perf_counter()
    net = ll.from_vectors(*arrays.values(), activation="erf", **CONV)
    t1 = time.perf_counter()
    d = ll.diagnose(net.arch, net.X)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, d


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    arch = ll.Architecture(rank=3, n_in=2, n_out=1, activation="erf")
    X = ll.sample_vectors(arch, args.N, seed=0)
    arrays = ll.to_convention(arch, X, **CONV)
    load = os.getloadavg()[0]
    cold = one(arrays)
    warm = [one(arrays) for _ in range(args.repeats)]
    imp = [w[0] for w in warm]
    dia = [w[1] for w in warm]
    total = [a + b for a, b in zip(imp, dia)]
    res = {"kind": "own_network", "device": jax.devices()[0].platform, "jax": jax.__version__,
           "cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d"), "load": round(load, 1), "N": args.N, "rank": arch.rank,
           "n_in": arch.n_in, "n_out": arch.n_out, "activation": arch.activation, "goal_s": GOAL_S,
           "cold_import_s": cold[0], "cold_diagnose_s": cold[1], "import_s": imp, "diagnose_s": dia,
           "total_median_s": float(np.median(total)), "total_best_s": float(np.min(total)),
           "meets_goal": bool(np.median(total) <= GOAL_S),
           "verdict_on_gaussian_rows": cold[2].gaussian_verdict.verdict}
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
