#!/usr/bin/env bash
# GPU check, to run in one go on a machine with an NVIDIA GPU (H100/H200; < 12 min):
#   1. benchmark workloads A-E (benchmarks/bench_epochs.py) on the GPU, float32;
#   2. time per epoch, overlap dynamics vs full network, N = 10^2 .. 10^6 (bench_scaling.py);
#   3. the E9 nonlinear comparison (erf, flip-flop and teacher, eta = 0.2) at N = 10^4 .. 10^6,
#      2 seeds, float64, as a sweep (cached per job; results as CSV).
# Results go to $OUT (default: benchmarks/results/gpu). Needs the CUDA build of jax:
#   pip install -e ".[cuda]"      (this script installs it if jax sees no GPU and pip can reach it)
# The JSON files under benchmarks/results/gpu are then summarised in benchmarks/README.md by
#   python benchmarks/report.py
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export LOWRANK_LEARNING_CACHE="${LOWRANK_LEARNING_CACHE:-$OUT/cache}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if ! "$PY" -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 1)" 2>/dev/null; then
  echo "jax sees no GPU; trying pip install -e .[cuda]" >&2
  "$PY" -m pip install -q -e ".[cuda]" || { echo "no CUDA jax: stop" >&2; exit 1; }
fi
"$PY" -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true

echo "== 1. workloads A-E (float32)"
timeout 180 "$PY" benchmarks/bench_epochs.py --json "$OUT/bench_epochs.json" || echo "bench_epochs failed or timed out" >&2

echo "== 2. scaling, N = 10^2 .. 10^6 (float32)"
timeout 180 "$PY" benchmarks/bench_scaling.py --sizes 100 1000 10000 100000 1000000 --epochs 16 \
  --epochs-largest 4 --note "GPU check" --json "$OUT/scaling-gpu.json" || echo "bench_scaling failed or timed out" >&2

echo "== 3. E9 nonlinear sweep at N = 10^4 .. 10^6 (float64)"
timeout 330 "$PY" - "$OUT" <<'PY' || echo "E9 sweep failed or timed out" >&2
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import lowrank_learning as ll
from lowrank_learning.sweeps import write_csv
out = sys.argv[1]
jobs = ll.e9_jobs([10_000, 100_000, 1_000_000], [2, 2, 2], activations=["erf"], tasks=["flipflop", "teacher"],
                  lrs=[0.2], epochs=150, n_trials=4, dt=0.1, T_max=20.0)
t0 = time.perf_counter()
df = ll.run_sweep("e9-nonlinear", ll.compare_nonlinear, jobs, workers=1, errors="collect")
write_csv(df, f"{out}/e9_gpu.csv")
summary = df.reset_index().groupby(["task", "N"])[["err_end", "err_before", "kurtosis_max", "seconds_full"]].median()
print(summary)
json.dump({"wall_s": time.perf_counter() - t0, "failures": [str(f) for f in df.attrs["failures"]],
           "median": {f"{t}/{n}": row.to_dict() for (t, n), row in summary.iterrows()}},
          open(f"{out}/e9_gpu.json", "w"), indent=1)
PY
echo "done: $OUT (python benchmarks/report.py adds its JSON files to benchmarks/README.md)"
