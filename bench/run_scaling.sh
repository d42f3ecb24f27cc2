#!/usr/bin/env bash
# Scaling benchmark: the default recipe at 1, 2, 4 and 8 ranks (see bench/scaling_bench.py).
# Usage: bench/run_scaling.sh [scaling_bench.py flags, e.g. --ranks 1,2,4 --layouts pp1_dp2_ep1_mb1_1f1b]
# Uses $TESSERA if set, else build/tessera.
set -euo pipefail
cd "$(dirname "$0")/.."
tessera=${TESSERA:-build/tessera}
if [ ! -x "$tessera" ]; then
  echo "run_scaling.sh: no tessera binary at '$tessera' (build it, or set TESSERA=path)" >&2
  exit 1
fi
# The default recipe's dataset, prepared as scripts/run-default-job.sh does.
dataset=data-cache/markov-v64-o1
if [ ! -f "$dataset/manifest.yaml" ]; then
  "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 4000000 --seed 1 --out "$dataset"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec /usr/bin/python3 bench/scaling_bench.py --tessera "$tessera" "$@"
