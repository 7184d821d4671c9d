"""Time per epoch of the overlap dynamics (independent of N) vs the full network (grows with N).

Calls ``ll.scaling_benchmark`` (linear units on the E1 task, erf units on E9's flip-flop) and
``ll.crossover_size``, and writes the result, with the machine, to a JSON file that the
performance chapter reads for its paper profile and ``python benchmarks/report.py`` turns into
the scaling tables of ``benchmarks/README.md``.

Usage: python benchmarks/bench_scaling.py [--sizes 100 1000 10000 100000] [--float64]
                                          [--json benchmarks/results/scaling-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax

import lowrank_learning as ll


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--epochs-largest", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--float64", action="store_true", help="time in float64 (default float32)")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "scaling-cpu.json"))
    args = p.parse_args(argv)
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    t0 = time.perf_counter()
    res = ll.scaling_benchmark(args.sizes, epochs=args.epochs, repeats=args.repeats,
                               epochs_largest=args.epochs_largest)
    res.update(jax=jax.__version__, cores=os.cpu_count(), processor=platform.processor() or platform.machine(),
               load_average=list(os.getloadavg()), note=args.note, wall_s=time.perf_counter() - t0,
               date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    for act in ("linear", "erf"):
        r = res[act]
        r["crossover_N"] = ll.crossover_size(res["N"], r["full_s"], r["overlap_s"])
        print(f"{act}: overlap {1e3 * r['overlap_s']:.3f} ms/epoch; full " +
              ", ".join(f"N={n}: {1e3 * t:.2f} ms" for n, t in zip(res["N"], r["full_s"])))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
