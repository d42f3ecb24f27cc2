#!/usr/bin/env bash
# tessera vs PyTorch on the same model (default recipes/bench-moe.yaml), side by side in one run,
# at 1 and 2 threads. Usage: bench/run_throughput.sh [build dir, default build] [recipe]
# STEPS (default 10) sets the timed steps of each; RUNS (default 1) repeats the whole comparison
# and ends with each thread count's median and worst over the runs (a shared machine's slow
# periods move one run's figures by several points).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
recipe=${2:-recipes/bench-moe.yaml}
steps=${STEPS:-10}
runs=${RUNS:-1}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
printf "%-8s %-8s %12s %12s %10s\n" threads impl tokens/s step_s ratio
for ((run = 1; run <= runs; run++)); do
  ((runs > 1)) && echo "# run $run of $runs"
  for threads in 1 2; do
    t=$("$build/bench/train_throughput" --recipe "$recipe" --threads "$threads" --steps "$steps" |
        tail -n 1)
    p=$(/usr/bin/python3 bench/pytorch_moe_bench.py --recipe "$recipe" --threads "$threads" \
        --steps "$steps" | tail -n 1)
    /usr/bin/python3 - "$threads" "$t" "$p" "$results" <<'PY'
import json, sys
threads, t, p, results = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
ratio = t["tokens_per_s"] / p["tokens_per_s"]
print(f"{threads:<8} {'tessera':<8} {t['tokens_per_s']:12.0f} {t['step_s']:12.4f} {ratio:9.2f}x"
      f"   ({t['gflops']:.1f} GFLOP/s, {100*t['fraction_of_peak']:.1f}% of measured SGEMM peak {t['sgemm_peak_gflops']:.0f})")
print(f"{threads:<8} {'pytorch':<8} {p['tokens_per_s']:12.0f} {p['step_s']:12.4f} {1.0:9.2f}x   (torch {p['torch']})")
with open(results, "a") as f:
    f.write(json.dumps({"threads": int(threads), "ratio": ratio,
                        "fraction_of_peak": t["fraction_of_peak"]}) + "\n")
PY
  done
done
if ((runs > 1)); then
  /usr/bin/python3 - "$results" "$runs" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"# over {sys.argv[2]} runs: median (worst)")
for threads in sorted({r["threads"] for r in rows}):
    mine = [r for r in rows if r["threads"] == threads]
    peak = [100 * r["fraction_of_peak"] for r in mine]
    ratio = [r["ratio"] for r in mine]
    print(f"{threads:<8} tessera  {statistics.median(ratio):.2f}x ({min(ratio):.2f}x) PyTorch, "
          f"{statistics.median(peak):.1f}% ({min(peak):.1f}%) of the measured SGEMM peak")
PY
fi
