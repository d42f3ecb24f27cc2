#!/usr/bin/env bash
# Dumps several model variants with tessera and checks each against the PyTorch reference.
# Usage: run_reference_check.sh DUMP_TOOL RECIPE WORKDIR
set -euo pipefail
dump=$1 recipe=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
python=${TESSERA_PYTHON:-/usr/bin/python3}
rm -rf "$work" && mkdir -p "$work"

# MLA with mutually different widths, so that a swapped split cannot pass.
mla="--set model.attention=mla --set model.kv_lora_rank=10 --set model.qk_nope_head_dim=6 --set model.qk_rope_head_dim=4 --set model.v_head_dim=5"
# name | overrides
cases=(
  "base|"
  "no_shared_experts|--set model.n_shared_experts=0"
  "group_limited|--set model.n_experts=8 --set model.n_group=4 --set model.topk_group=2 --set model.top_k=3"
  "balance_loss|--set model.seq_aux_alpha=0.01"
  "all_moe_route_scale|--set model.first_dense_layers=0 --set model.route_scale=2.5 --set model.n_shared_experts=2"
  "mla_q0|$mla"
  "mla_qlora|$mla --set model.q_lora_rank=9"
  "mtp1|$mla --set model.mtp_depth=1 --set model.mtp_lambda=0.3"
  "mtp2|$mla --set model.q_lora_rank=9 --set model.mtp_depth=2 --set model.seq_aux_alpha=0.01"
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
