#!/usr/bin/env bash
# What reads a checkpoint checks it, end to end: trainer.yaml edited (step 3 -> 999) is damage for
# verify, info, eval and an explicit --resume (exit 1 naming content_checksum), and --resume auto
# falls back past it saying why; `latest` naming a checkpoint without trainer.yaml is skipped with
# the missing file named; a changed value in model.h5 makes info and eval exit 1 naming the
# dataset; a sound checkpoint whose weights are NaN (imported from a Hugging Face export) makes
# eval exit 1 instead of printing "loss":null.
# Usage: cli_checkpoint_integrity_test.sh TESSERA RECIPE WORKDIR   (python with h5py: TESSERA_PYTHON)
set -uo pipefail
tessera=$1 recipe=$2 work=$3
python=${TESSERA_PYTHON:-python3}
rm -rf "$work" && mkdir -p "$work"
CHECK_TIMEOUT=120 CHECK_TAIL=8
# shellcheck source-path=SCRIPTDIR source=cli_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_check.sh"  # check, expect, check_summary

check prepare 0 "tokens" "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 20000 --seed 1 \
  --out "$work/data"
small=(--set model.dim=32 --set model.n_heads=2 --set model.inter_dim=48 --set model.moe_inter_dim=16
       --set train.seq_len=16 --set train.global_batch=4 --set train.eval_every=0
       --set train.eval_batches=1 --set data.path="$work/data" --set checkpoint.every_steps=1
       --set checkpoint.keep_last=3 --set train.steps=3)
evalargs=(--data "$work/data" --batches 1)
check train 0 "step 3/3" "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/run"
check sound_verify 0 ": ok" "$tessera" checkpoint verify "$work/run"
check sound_info 0 "datasets and trainer.yaml)" "$tessera" checkpoint info "$work/run"
check sound_eval 0 '"loss":' "$tessera" eval "$recipe" "${small[@]}" --checkpoint "$work/run" "${evalargs[@]}"

# trainer.yaml edited: step 3 -> 999 (the content checksum no longer matches).
cp -r "$work/run" "$work/edited"
step3=$work/edited/checkpoints/step-00000003
sed -i 's/^step: 3$/step: 999/' "$step3/trainer.yaml"
check edited_is_edited 0 "step: 999" cat "$step3/trainer.yaml"
check edited_verify 1 "trainer.yaml: content_checksum mismatch" "$tessera" checkpoint verify "$step3"
check edited_info 1 "content_checksum mismatch" "$tessera" checkpoint info "$step3"
check edited_eval 1 "content_checksum mismatch" "$tessera" eval "$recipe" "${small[@]}" \
  --checkpoint "$step3" "${evalargs[@]}"
check edited_explicit_resume 1 "content_checksum mismatch" "$tessera" train "$recipe" "${small[@]}" \
  --set run.dir="$work/edited" --resume "$step3"
check edited_auto_falls_back 0 "after it was written); falling back to $work/edited/checkpoints/step-00000002" \
  "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/edited" --resume auto
check edited_auto_trains_step_3 0 "step 3/3" cat "$work/edited/logs/rank-0.log"

# `latest` names a checkpoint without trainer.yaml: --resume auto says so and takes step 2.
cp -r "$work/run" "$work/partial"
rm "$work/partial/checkpoints/step-00000003/trainer.yaml"
check partial_says_what_is_missing 0 \
  "skipping $work/partial/checkpoints/step-00000003 (named by $work/partial/checkpoints/latest): no trainer.yaml" \
  "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/partial" --resume auto
check partial_resumed_from_step_2 0 "resumed from $work/partial/checkpoints/step-00000002" \
  cat "$work/partial/logs/rank-0.log"

# A value of model.h5 changed (to NaN) behind trainer.yaml's back.
cp -r "$work/run" "$work/damaged"
check damage_model_h5 0 "changed" "$python" -c '
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f["embed.weight"][0, 0] = float("nan")
print("changed")' "$work/damaged/checkpoints/step-00000003/model.h5"
check damaged_verify 1 "embed.weight: checksum mismatch" "$tessera" checkpoint verify "$work/damaged"
check damaged_info 1 "damaged: embed.weight: checksum mismatch" "$tessera" checkpoint info "$work/damaged"
check damaged_eval 1 "checksum mismatch in embed.weight" "$tessera" eval "$recipe" "${small[@]}" \
  --checkpoint "$work/damaged" "${evalargs[@]}"
check damaged_export 1 "embed.weight: checksum mismatch" "$tessera" checkpoint export "$work/damaged" \
  --format hf --out "$work/hf-damaged" --dtype fp32
if [ -e "$work/hf-damaged" ]; then
  echo "FAIL damaged_export_leaves_nothing: $work/hf-damaged exists"; failures=$((failures + 1))
fi

# Sound checksums over NaN weights: export, NaN into the final norm, import, eval.
check export 0 "tensors written" "$tessera" checkpoint export "$work/run" --format hf --out "$work/hf" \
  --dtype fp32
check nan_into_safetensors 0 "nan written" "$python" - "$work/hf" <<'PY'
import json, os, struct, sys
hf = sys.argv[1]
name = "model.norm.weight"
shard = json.load(open(os.path.join(hf, "model.safetensors.index.json")))["weight_map"][name]
with open(os.path.join(hf, shard), "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    entry = json.loads(f.read(n))[name]
    begin, end = entry["data_offsets"]
    assert entry["dtype"] == "F32", entry
    f.seek(8 + n + begin)
    f.write(struct.pack("<f", float("nan")) * ((end - begin) // 4))
print("nan written")
PY
check import_nan 0 "wrote" "$tessera" checkpoint import "$work/hf" --recipe "$recipe" "${small[@]}" \
  --out "$work/nan/checkpoints"
check nan_verifies 0 ": ok" "$tessera" checkpoint verify "$work/nan"
check nan_eval_fails 1 "is not finite" "$tessera" eval "$recipe" "${small[@]}" --checkpoint "$work/nan" \
  "${evalargs[@]}"

check_summary
