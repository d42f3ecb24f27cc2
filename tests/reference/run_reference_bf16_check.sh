#!/usr/bin/env bash
# precision.compute bf16: tessera's loss and every gradient against the PyTorch reference in bf16
# mode (reference_model.py COMPUTE_PRECISIONS: the same operands rounded at the same points),
# with compare.py's bf16 tolerance and its bf16-vs-fp32 contrast check (compare.py check (d)).
# Usage: run_reference_bf16_check.sh DUMP_TOOL RECIPE WORKDIR
set -euo pipefail
dump=$1 recipe=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
python=${TESSERA_PYTHON:-/usr/bin/python3}
rm -rf "$work" && mkdir -p "$work"

bf16="--set precision.compute=bf16"
# MLA with mutually different widths, q_lora_rank, MTP depth 2 (eh_proj) and the balance loss.
mla="--set model.attention=mla --set model.kv_lora_rank=10 --set model.qk_nope_head_dim=6 --set model.qk_rope_head_dim=4 --set model.v_head_dim=5 --set model.q_lora_rank=9"
# name | overrides
cases=(
  "base|"
  "all_moe_group_limited|--set model.first_dense_layers=0 --set model.n_experts=8 --set model.n_group=4 --set model.topk_group=2 --set model.top_k=3 --set model.route_scale=2.5"
  "mla_mtp2|$mla --set model.mtp_depth=2 --set model.mtp_lambda=0.3 --set model.seq_aux_alpha=0.01"
)
failed=0
for c in "${cases[@]}"; do
  name=${c%%|*}
  sets=${c#*|}
  echo "=== case $name (bf16) ${sets}"
  # shellcheck disable=SC2086
  "$dump" "$recipe" --out "$work/$name" --batch 3 $bf16 $sets
  if ! grep -q "compute: bf16" "$work/$name/model.yaml"; then
    echo "case $name: the dump's recipe does not say precision.compute bf16"
    failed=$((failed + 1))
    continue
  fi
  if ! "$python" "$here/compare.py" "$work/$name"; then
    failed=$((failed + 1))
  fi
done
echo "bf16 reference cases failed: $failed"
[ "$failed" -eq 0 ]
