"""The large-N limit by a moving quadrature (``learn_mean_field``): accuracy against nodes, cost per E9 job.

The job: one E9 run in the limit (rank 1, erf units, flip-flop with 4 fresh trials of 200 steps per
epoch, dt 0.1, learning rate 0.2, 200 epochs) from Gaussian rows with E9's initial overlaps.

1. Accuracy against nodes: the overlaps of Gauss-Hermite grids (isotropic n^4, anisotropic
   (a, a, b, b) with more points in the two (m, u) reference coordinates, pruned) against a
   reference grid; the error is the largest |sigma - sigma_ref| over the overlaps and the epochs.
2. Cost per job (compiled, second call; the first call's compile time listed too): the smallest
   grid within 1e-4 in float64 and float32, the Gaussian closure (``learn_overlaps``, rule exact),
   and full networks (``learn_vectors``, float32 as in E9) at several N.
3. A first look at what the full networks approach: the end-of-training overlap error of full
   networks at each N against the limit and against the Gaussian closure (both from E9's
   population overlaps), and the N at which a full network's error against the limit would reach
   1e-4 (fit err = c / sqrt(N)).

Usage: python benchmarks/bench_mean_field.py [--quick] [--json FILE]
(`benchmarks/report.py` summarises benchmarks/results/mean-field-cpu.json in benchmarks/README.md.)
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
from lowrank_learning.learn.mean_field import (
    NodeCloud,
    learn_mean_field,
    learn_mean_field_ensemble,
    mean_field_nodes,
)

LR, EPOCHS = 0.2, 200
GOAL_S = 10.0          # one 200-epoch job in the limit, compiled, at the accuracy below
ACCURACY_GOAL = 1e-4   # largest overlap error against the reference grid


def _job():
    arch = ll.Architecture(activation="erf")
    return arch, ll.sigma_from_named(arch, ll.INIT_OVERLAPS), ll.e9_task("flipflop", "erf", 4, 0.1, 20.0)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _mf(arch, S0, task, grid, prune=0.0, dtype=np.float64, epochs=EPOCHS):
    c = mean_field_nodes(arch, S0, grid, prune=prune)
    cloud = NodeCloud(c.nodes.astype(dtype), c.weights.astype(dtype), c.scheme)
    return learn_mean_field(arch, None, task, LR, epochs, nodes=cloud), cloud.n_nodes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller grids, fewer N, 40 epochs (smoke test)")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    epochs = 40 if args.quick else EPOCHS
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}; load {os.getloadavg()[0]:.1f}")
    arch, S0, task = _job()
    res = {"kind": "mean_field", "device": jax.devices()[0].platform, "jax": jax.__version__,
           "cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d"), "quick": bool(args.quick), "epochs": epochs, "lr": LR,
           "goal_s": GOAL_S, "accuracy_goal": ACCURACY_GOAL}
    t_all = time.perf_counter()

    # 1. accuracy against nodes
    ref_grid = (10, 10, 5, 5) if args.quick else (14, 14, 7, 7)
    grids = ([((4,) * 4, 0.0), ((6,) * 4, 0.0), ((8, 8, 4, 4), 0.0)] if args.quick else
             [((n,) * 4, 0.0) for n in (4, 5, 6, 7)] + [((a, a, b, b), 0.0) for a, b in
                                                       ((6, 4), (8, 3), (8, 4), (10, 4), (10, 5), (12, 6))]
             + [((10, 10, 5, 5), 1e-8)])
    (ref, n_ref), t_ref = _timed(lambda: _mf(arch, S0, task, ref_grid, epochs=epochs))
    print(f"\nreference grid {ref_grid}: {n_ref} nodes, {t_ref:.1f} s")
    rows = []
    print("\n| grid (m, u, v, z) | prune | nodes | max overlap error | end error | loss rel. error | s per job |")
    print("|---|---|---|---|---|---|---|")
    for grid, prune in grids:
        (tr, n), sec = _timed(lambda g=grid, q=prune: _mf(arch, S0, task, g, q, epochs=epochs))
        err = float(np.max(np.abs(tr.sigma_all - ref.sigma_all)))
        end = float(np.max(np.abs(tr.final_sigma - ref.final_sigma)))
        lerr = float(np.max(np.abs(tr.loss - ref.loss) / ref.loss))
        rows.append({"grid": list(grid), "prune": prune, "nodes": n, "err": err, "err_end": end, "loss_err": lerr,
                     "seconds": sec})
        print(f"| {grid} | {prune:g} | {n} | {err:.2e} | {end:.2e} | {lerr:.2e} | {sec:.1f} |")
    res["reference"] = {"grid": list(ref_grid), "nodes": n_ref, "seconds": t_ref}
    res["accuracy"] = rows

    # 2. cost per job
    ok = [r for r in rows if r["err"] <= ACCURACY_GOAL]
    best = min(ok, key=lambda r: r["nodes"]) if ok else min(rows, key=lambda r: r["err"])
    grid, prune = tuple(best["grid"]), best["prune"]
    cost = {}
    for dt_ in (np.float64, np.float32):
        _, first = _timed(lambda d=dt_: _mf(arch, S0, task, grid, prune, d, epochs))
        (tr, n), warm = _timed(lambda d=dt_: _mf(arch, S0, task, grid, prune, d, epochs))
        err = float(np.max(np.abs(tr.sigma_all - ref.sigma_all)))
        cost[f"limit {dt_.__name__}"] = {"first": first, "warm": warm, "nodes": n, "err": err}
    clos = lambda: ll.learn_overlaps(arch, S0, task, LR, epochs, progress=False)
    _, first = _timed(clos)
    closure, warm = _timed(clos)
    cost["Gaussian closure"] = {"first": first, "warm": warm,
                                "err": float(np.max(np.abs(closure.sigma_all - ref.sigma_all)))}

    # 3. full networks against the limit and the closure, both started from each network's own
    # overlaps (as E9 does), so that the first-order effect of the finite sample is removed
    Ns, seeds = ((300, 1000), (2, 1)) if args.quick else ((1000, 10000, 100000), (3, 2, 1))
    full_rows, starts, finals = [], [], []
    for N, ns in zip(Ns, seeds):
        for seed in range(ns):
            X0 = ll.sample_vectors(arch, N, seed=seed, sigma=S0)
            run = lambda X0=X0: ll.learn_vectors(arch, X0.astype(np.float32), task, LR, epochs, seed=0,
                                           progress=False)
            if seed == 0:
                _, first = _timed(run)
            full, warm = _timed(run)
            starts.append(ll.overlaps(X0))
            finals.append(full.final_sigma)
            full_rows.append({"N": N, "seed": seed, "seconds": warm, "first": first})
    cloud = mean_field_nodes(arch, np.stack(starts), grid, prune=prune)
    lim = learn_mean_field_ensemble(arch, None, task, LR, epochs, nodes=cloud, seeds=0)
    clo = ll.learn_overlaps_ensemble(arch, np.stack(starts), task, LR, epochs, seeds=0, progress=False)
    for r, fin, a, b in zip(full_rows, finals, lim.final_sigma, clo.final_sigma):
        r.update(err_limit=float(np.max(np.abs(fin - a))), err_closure=float(np.max(np.abs(fin - b))),
                 limit_minus_closure=float(np.max(np.abs(a - b))))
    res["full"] = full_rows
    Narr = np.array([r["N"] for r in full_rows], float)
    e_lim = np.array([r["err_limit"] for r in full_rows])
    c = float(np.exp(np.mean(np.log(e_lim * np.sqrt(Narr)))))    # err = c / sqrt(N), fitted in log space
    slope = float(np.polyfit(np.log(Narr), np.log(e_lim), 1)[0]) if len(set(Narr)) > 1 else float("nan")
    N_1e4 = (c / 1e-4) ** 2
    sec_per_N = np.median([r["seconds"] / r["N"] for r in full_rows if r["N"] == max(Ns)])
    cost["full network at the N of error 1e-4 (extrapolated)"] = {"N": N_1e4, "warm": float(sec_per_N * N_1e4)}
    res["cost"] = cost
    res["full_fit"] = {"c": c, "slope": slope, "N_for_1e-4": N_1e4}

    print(f"\ncost per job ({epochs} epochs; seconds, compiled; first call includes compilation)")
    print("\n| engine | nodes / N | s per job (warm) | first call | error in the overlaps vs reference |")
    print("|---|---|---|---|---|")
    for k, v in cost.items():
        size = v.get("nodes", v.get("N", "-"))
        size = f"{size:.3g}" if isinstance(size, float) else size
        print(f"| {k} | {size} | {v['warm']:.2f} | {v.get('first', float('nan')):.2f} | {v.get('err', float('nan')):.1e} |")
    print(f"\nlimit minus Gaussian closure: {cost['Gaussian closure']['err']:.2e} (largest over overlaps and epochs)")
    print("\nfull networks (float32) after the last epoch, largest |sigma_full - sigma_ref| over the overlaps;"
          " both references start from the network's own overlaps")
    print("\n| N | seed | vs limit | vs Gaussian closure | limit - closure | s per job |")
    print("|---|---|---|---|---|---|")
    for r in full_rows:
        print(f"| {r['N']} | {r['seed']} | {r['err_limit']:.2e} | {r['err_closure']:.2e} | "
              f"{r['limit_minus_closure']:.2e} | {r['seconds']:.1f} |")
    print(f"\nfit err_vs_limit = c / sqrt(N): c = {c:.3g} (log-log slope {slope:.2f}); 1e-4 at N = {N_1e4:.3g}")
    res["load_average"] = list(os.getloadavg())
    res["wall_s"] = time.perf_counter() - t_all
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
