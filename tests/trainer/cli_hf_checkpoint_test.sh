#!/usr/bin/env bash
# `tessera checkpoint export --format hf` and `checkpoint import` end to end: a short training
# run exported (fp32 and bf16), imported back as a checkpoint that verifies, evaluates to the
# same loss as the original (fp32 is bit exact) and that `train --resume` continues; usage errors
# and a recipe that does not match config.json (naming the key).
# Usage: cli_hf_checkpoint_test.sh TESSERA RECIPE WORKDIR
set -uo pipefail
tessera=$1 recipe=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
CHECK_TIMEOUT=300 CHECK_TAIL=5
# shellcheck source-path=SCRIPTDIR source=cli_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_check.sh"  # check, expect, check_summary

small=(--set model.dim=32 --set model.n_heads=2 --set model.inter_dim=48 --set model.moe_inter_dim=16
       --set model.n_experts=4 --set train.seq_len=16 --set train.global_batch=4
       --set train.eval_batches=1 --set data.path="$work/data" --set checkpoint.every_steps=0)

check help_lists_export 0 "checkpoint export|import" "$tessera" --help
check checkpoint_help 0 "--format hf" "$tessera" checkpoint --help
check export_help 0 "--shard-mb" "$tessera" checkpoint export --help
check import_help 0 "--recipe" "$tessera" checkpoint import --help
check prepare 0 "" "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 20000 --seed 1 --out "$work/data"
check train 0 "step 2/2" "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 --set run.dir="$work/run"

check export_needs_out 2 "missing --out" "$tessera" checkpoint export "$work/run" --format hf
check export_bad_format 2 "--format must be hf" "$tessera" checkpoint export "$work/run" --format gguf --out "$work/x"
check export_bad_dtype 2 "--dtype must be bf16 or fp32" "$tessera" checkpoint export "$work/run" --format hf --out "$work/x" --dtype fp16
check export_fp32 0 "tensors written" "$tessera" checkpoint export "$work/run" --format hf --out "$work/hf32" --dtype fp32 --shard-mb 0.05
check export_index 0 '"weight_map"' cat "$work/hf32/model.safetensors.index.json"
check export_config 0 '"model_type": "deepseek_v3"' cat "$work/hf32/config.json"
check export_into_used_dir 1 "not empty" "$tessera" checkpoint export "$work/run" --format hf --out "$work/hf32"
check export_bf16 0 "" "$tessera" checkpoint export "$work/run" --format hf --out "$work/hf16"
check export_bf16_dtype 0 '"torch_dtype": "bfloat16"' cat "$work/hf16/config.json"

check import_needs_recipe 2 "missing --recipe" "$tessera" checkpoint import "$work/hf32" --out "$work/y"
check import_mismatch_names_key 1 "model.dim" "$tessera" checkpoint import "$work/hf32" --recipe "$recipe" \
  "${small[@]}" --set model.dim=64 --out "$work/y"
check import_fp32 0 "wrote" "$tessera" checkpoint import "$work/hf32" --recipe "$recipe" "${small[@]}" --out "$work/imported"
check import_verifies 0 ": ok" "$tessera" checkpoint verify "$work/imported"
check import_bf16 0 "wrote" "$tessera" checkpoint import "$work/hf16" --recipe "$recipe" "${small[@]}" --out "$work/imported16"

# fp32 round trip: the imported checkpoint is the same model, so it evaluates to the same loss.
check_same_loss() {  # check_same_loss NAME ORIGINAL IMPORTED RECIPE_OPTIONS...
  local name=$1 a=$2 b=$3
  shift 3
  loss() { "$tessera" eval "$recipe" "$@" --data "$work/data" --batches 1 2>/dev/null | grep -o '"loss":[^,]*'; }
  local original imported
  original=$(loss "$@" --checkpoint "$a") imported=$(loss "$@" --checkpoint "$b")
  if [ -n "$original" ] && [ "$original" = "$imported" ]; then
    echo "ok   $name ($original)"; passed=$((passed + 1))
  else
    echo "FAIL $name: original '$original', imported '$imported'"; failures=$((failures + 1))
  fi
}
check_same_loss same_loss_after_round_trip "$work/run" "$work/imported" "${small[@]}"

# The same for an MLA model.
mla=("${small[@]}" --set model.attention=mla --set model.q_lora_rank=8)
check train_mla 0 "step 2/2" "$tessera" train "$recipe" "${mla[@]}" --set train.steps=2 --set run.dir="$work/mla"
check export_mla 0 "" "$tessera" checkpoint export "$work/mla" --format hf --out "$work/hf_mla" --dtype fp32
check export_mla_names 0 "kv_a_proj_with_mqa" cat "$work/hf_mla/model.safetensors.index.json"
check import_mla 0 "wrote" "$tessera" checkpoint import "$work/hf_mla" --recipe "$recipe" "${mla[@]}" --out "$work/imported_mla"
check_same_loss mla_same_loss_after_round_trip "$work/mla" "$work/imported_mla" "${mla[@]}"

check resume_from_import 0 "step 2/2" "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 \
  --set run.dir="$work/resumed" --resume "$work/imported"
check resume_logged 0 "resumed from $work/imported/step-00000000 (step 0" cat "$work/resumed/logs/rank-0.log"

check_summary
