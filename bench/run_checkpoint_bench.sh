#!/usr/bin/env bash
# Checkpoint benchmark (issue 5): save/load throughput against the disk's sequential write speed
# (build/bench/checkpoint_bench, same run, same directory), then the training stall of
# asynchronous saves: a short training run saving every 2 steps with checkpoint.async on and off,
# reporting checkpoint_stall_s as a fraction of the median step time.
# Usage: bench/run_checkpoint_bench.sh [NP] [--set k=v ...]   (default NP 2: parallel.dp=NP)
set -euo pipefail
cd "$(dirname "$0")/.."
np=${1:-2}
shift || true
build=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
recipe=recipes/bench-moe.yaml
# A wider model than bench-moe's default, so the checkpoint (~350 MB) is worth timing.
size=(--set model.dim=512 --set model.moe_inter_dim=512 --set model.inter_dim=2048)
data=data-cache/markov-v256-o1
[ -d "$data" ] || "$build/tessera" prepare synthetic --vocab 256 --order 1 --tokens 2000000 --seed 1 \
  --out "$data" --quiet
mpi=(mpirun --oversubscribe -np "$np")
"${mpi[@]}" "$build/bench/checkpoint_bench" "$recipe" --set parallel.dp="$np" "${size[@]}" "$@" \
  --dir runs/bench-checkpoint/files
for async in false true; do
  run=runs/bench-checkpoint/train-async-$async
  rm -rf "$run"
  "${mpi[@]}" "$build/tessera" train "$recipe" --set parallel.dp="$np" "${size[@]}" "$@" \
    --set run.dir="$run" --set train.steps=9 --set checkpoint.every_steps=2 \
    --set checkpoint.async=$async --set train.eval_every=0 > "$run.log" 2>&1 \
    || { tail -20 "$run.log"; exit 1; }
  /usr/bin/python3 - "$run/metrics.jsonl" "$async" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
step = statistics.median(r["step_s"] for r in rows[1:])
stalls = [r["checkpoint_stall_s"] for r in rows if "checkpoint_stall_s" in r]
print(f"train, checkpoint.async={sys.argv[2]}: median step {step:.3f} s; stall per save "
      + ", ".join(f"{s:.3f}" for s in stalls)
      + f" s = {100 * statistics.median(stalls) / step:.1f}% of a step (median)")
PY
done
