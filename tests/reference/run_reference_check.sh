#!/usr/bin/env bash
# Dumps several model variants with tessera and checks each against the PyTorch reference.
# Usage: run_reference_check.sh DUMP_TOOL RECIPE WORKDIR
set -euo pipefail
dump=$1 recipe=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
python=${TESSERA_PYTHON:-/usr/bin/python3}
rm -rf "$work" && mkdir -p "$work"

# name | overrides
cases=(
  "base|"
  "no_shared_experts|--set model.n_shared_experts=0"
  "group_limited|--set model.n_experts=8 --set model.n_group=4 --set model.topk_group=2 --set model.top_k=3"
  "balance_loss|--set model.seq_aux_alpha=0.01"
  "all_moe_route_scale|--set model.first_dense_layers=0 --set model.route_scale=2.5 --set model.n_shared_experts=2"
)
failed=0
for c in "${cases[@]}"; do
  name=${c%%|*}
  sets=${c#*|}
  echo "=== case $name ${sets}"
  # shellcheck disable=SC2086
  "$dump" "$recipe" --out "$work/$name" --batch 3 $sets
  if ! "$python" "$here/compare.py" "$work/$name"; then
    failed=$((failed + 1))
  fi
done
echo "reference cases failed: $failed"
[ "$failed" -eq 0 ]
