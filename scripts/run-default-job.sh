#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the default training job, recipes/tiny-moe.yaml,
# on a synthetic order-1 Markov dataset whose entropy floor the run reports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dataset=data-cache/markov-v64-o1
if [ ! -f "$dataset/manifest.yaml" ]; then
  build/tessera prepare synthetic --vocab 64 --order 1 --tokens 4000000 --seed 1 --out "$dataset"
fi
# Each run of this script starts the job over in runs/tiny-moe (a fresh run into a used run.dir
# is refused without --overwrite); pass --resume auto to continue the previous one instead.
case " $* " in
  *" --resume"*|*" --overwrite "*) build/tessera train recipes/tiny-moe.yaml "$@" ;;
  *) build/tessera train recipes/tiny-moe.yaml --overwrite "$@" ;;
esac
