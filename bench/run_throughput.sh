#!/usr/bin/env bash
# tessera vs PyTorch on the same model (default recipes/bench-moe.yaml), side by side in one run,
# at 1 and 2 threads. Usage: bench/run_throughput.sh [build dir, default build] [recipe]
# STEPS (default 10) sets the timed steps of each.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
recipe=${2:-recipes/bench-moe.yaml}
steps=${STEPS:-10}
printf "%-8s %-8s %12s %12s %10s\n" threads impl tokens/s step_s ratio
for threads in 1 2; do
  t=$("$build/bench/train_throughput" --recipe "$recipe" --threads "$threads" --steps "$steps" | tail -n 1)
  p=$(/usr/bin/python3 bench/pytorch_moe_bench.py --recipe "$recipe" --threads "$threads" --steps "$steps" | tail -n 1)
  /usr/bin/python3 - "$threads" "$t" "$p" <<'PY'
import json, sys
threads, t, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = t["tokens_per_s"] / p["tokens_per_s"]
print(f"{threads:<8} {'tessera':<8} {t['tokens_per_s']:12.0f} {t['step_s']:12.4f} {ratio:9.2f}x"
      f"   ({t['gflops']:.1f} GFLOP/s, {100*t['fraction_of_peak']:.1f}% of measured SGEMM peak {t['sgemm_peak_gflops']:.0f})")
print(f"{threads:<8} {'pytorch':<8} {p['tokens_per_s']:12.0f} {p['step_s']:12.4f} {1.0:9.2f}x   (torch {p['torch']})")
PY
done
