#!/usr/bin/env bash
# Planned (train --dry-run) vs measured memory for four layouts of the benchmark model: the
# largest planned per-rank total against the largest peak of any rank's backend allocations
# (device_peak_mib: what the plan predicts) and its peak resident memory (peak_rss_mib: also the
# process itself, binary, MPI, HDF5, loader cache), and the planned vs allocated pipeline buffers
# from the rank logs.
# Usage: bench/run_memory_check.sh [build dir, default build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tessera=$build/tessera
recipe=recipes/bench-moe.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=data-cache/markov-v256-o1
[ -d "$data" ] || "$tessera" prepare synthetic --vocab 256 --order 1 --tokens 2000000 --seed 1 \
  --out "$data" --quiet
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $recipe, 3 steps"
printf "%-22s %5s %12s %12s %12s %s\n" layout ranks "planned MiB" "device MiB" "peak RSS MiB" \
  "pipeline buffers planned/allocated (per rank)"
check() {  # NAME NP OVERRIDES...
  local name=$1 np=$2; shift 2
  local run=$work/$name
  "$tessera" train "$recipe" --dry-run "$@" > "$run.plan"
  mpirun --oversubscribe -np "$np" "$tessera" train "$recipe" --set train.steps=3 \
    --set run.dir="$run" --set checkpoint.every_steps=0 --set train.eval_every=0 "$@" \
    > "$run.log" 2>&1 || { echo "$name: training failed, see below"; tail -20 "$run.log"; exit 1; }
  local planned device rss buffers
  planned=$(awk 'NR > 2 {print $NF}' "$run.plan" | sort -g | tail -n 1)
  read -r device rss < <(/usr/bin/python3 -c 'import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
print(*(max(l[key] for l in lines) for key in ("device_peak_mib", "peak_rss_mib")))' \
    "$run/metrics.jsonl")
  buffers=$(for log in "$run"/logs/rank-*.log; do
              p=$(sed -n 's/.*pipeline buffers planned (at most) \([0-9]*\).*/\1/p' "$log")
              a=$(sed -n 's/.*pipeline buffers after the first step: \([0-9]*\).*/\1/p' "$log")
              printf "%s/%s " "$p" "$a"
            done)
  printf "%-22s %5s %12s %12.1f %12.1f %s\n" "$name" "$np" "$planned" "$device" "$rss" "$buffers"
}
check "1 rank" 1
check "dp2 ep2" 2 --set parallel.dp=2 --set parallel.ep=2
check "pp2 mb4 1f1b" 2 --set parallel.pp=2 --set parallel.micro_batches=4 --set parallel.schedule=1f1b
check "pp2 dp2 ep2 mb2 1f1b" 4 --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 \
  --set parallel.micro_batches=2 --set parallel.schedule=1f1b
