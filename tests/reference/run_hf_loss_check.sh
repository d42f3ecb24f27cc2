#!/usr/bin/env bash
# The Hugging Face export, read by hf_loss.py (PyTorch, float64, Hugging Face names and config.json
# keys only, no tessera code), gives tessera's losses on the same tokens, for an MLA model with
# q_lora_rank > 0, group-limited routing and MTP depth 2:
#   1. main CE: `tessera eval` of a checkpoint on the validation split vs hf_loss.py on the same
#      rows, read from the dataset's HDF5 shards by dataset_rows.py (the unshuffled loader's order);
#   2. main CE and both MTP depths' CE: the training metrics of the step that ran on the checkpoint's
#      parameters vs hf_loss.py on the training split. The split holds exactly train.global_batch
#      samples, so every step's batch is the whole split (in a shuffled order, which a mean over
#      tokens does not see). `tessera eval` reports the main CE only, hence this route for MTP.
# fp32 export: within 1e-6 relative (tessera computes in fp32; measured 1e-9 to 2e-8 here, while
# scaling one routed expert's down_proj by 1.1 moves the main CE by 1.2e-5); bf16 export: within
# 1e-2 (measured up to 6e-4). On a mismatch the script prints hf_routing_margin.py's smallest
# routing margin: below ~1e-6, fp32 and float64 may route a token differently (not an export bug).
# Last, a negative control: a copy of the fp32 export with one MTP tensor scaled must fail.
# Usage: run_hf_loss_check.sh TESSERA WORKDIR [RECIPE]   (RECIPE: recipes/tiny-moe.yaml by default)
set -euo pipefail
tessera=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
recipe=${3:-$here/../../recipes/tiny-moe.yaml}
python=${TESSERA_PYTHON:-/usr/bin/python3}
rm -rf "$work" && mkdir -p "$work"

seq_len=16 batch=4 depth=2 eval_batches=2 steps=30
# MLA with mutually different widths (a swapped split cannot pass), q_lora_rank > 0, 8 experts in
# 4 groups (2 kept), MTP depth 2. n_layers is 2, so the MTP modules are HF layers 2 and 3.
model=(--set model.dim=32 --set model.n_heads=2 --set model.inter_dim=48 --set model.moe_inter_dim=16
       --set model.n_experts=8 --set model.n_group=4 --set model.topk_group=2 --set model.top_k=3
       --set model.route_scale=2.5
       --set model.attention=mla --set model.q_lora_rank=9 --set model.kv_lora_rank=10
       --set model.qk_nope_head_dim=6 --set model.qk_rope_head_dim=4 --set model.v_head_dim=5
       --set model.mtp_depth=$depth --set model.mtp_lambda=0.3
       --set train.seq_len=$seq_len --set train.global_batch=$batch --set train.eval_batches=1
       --set data.path="$work/data")

step() { echo "--- $*"; }
quiet() {  # quiet LOG CMD...: runs CMD with its output in $work/LOG, shown if it fails
  local log=$work/$1
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "FAIL: exit $? from: $*"; tail -n 20 "$log" | sed 's/^/    /'; exit 1
  fi
}

# 240 tokens: validation = round(0.7 * 240) = 168 tokens -> (168 - 3) / 16 = 10 samples (2 eval
# batches of 4); train = 72 tokens -> (72 - 3) / 16 = 4 samples = global_batch. Shards of 50 tokens,
# so rows span shard boundaries.
step "dataset"
quiet prepare.log "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 240 --val-fraction 0.7 \
  --shard-tokens 50 --seed 3 --out "$work/data"

# A checkpoint after every step: step $steps's metrics are the losses of step $((steps - 1))'s
# checkpoint (parameters and routing biases) on the whole train split. 30 steps take the losses well
# below log(64), so they depend on the weights (near the initialisation they barely do).
step "train $steps steps"
quiet train.log "$tessera" train "$recipe" "${model[@]}" --set train.steps=$steps \
  --set checkpoint.every_steps=1 --set checkpoint.keep_last=2 --set run.dir="$work/run"
ckpt=$work/run/checkpoints/step-$(printf %08d $((steps - 1)))
[ -d "$ckpt" ] || { echo "FAIL: no checkpoint $ckpt"; exit 1; }

step "export fp32 and bf16"
quiet export32.log "$tessera" checkpoint export "$ckpt" --format hf --out "$work/hf32" --dtype fp32 \
  --shard-mb 0.05
quiet export16.log "$tessera" checkpoint export "$ckpt" --format hf --out "$work/hf16" --dtype bf16

step "tessera eval ($eval_batches batches of $batch)"
quiet eval.log "$tessera" eval "$recipe" "${model[@]}" --checkpoint "$ckpt" --data "$work/data" \
  --batches $eval_batches
eval_json=$(grep "^{" "$work/eval.log" | tail -n 1)
echo "$eval_json"

step "token rows from the HDF5 shards"
"$python" "$here/dataset_rows.py" "$work/data" validation $seq_len $depth $((eval_batches * batch)) \
  >"$work/validation_rows.json"
"$python" "$here/dataset_rows.py" "$work/data" train $seq_len $depth $batch >"$work/train_rows.json"

step "hf_loss.py"
for export in hf32 hf16; do
  for rows in validation train; do
    "$python" "$here/hf_loss.py" "$work/$export" "$work/${rows}_rows.json" >"$work/$export.$rows.json"
    echo "$export $rows: $(cat "$work/$export.$rows.json")"
  done
done

# compare.py-style verdicts; exit 1 naming every loss off by more than its tolerance.
compare() {  # compare EXPORT_DIR_TAG TOLERANCE
  "$python" - "$work" "$1" "$2" "$eval_json" $batch $depth $steps <<'EOF'
import json, sys
work, tag, tol, eval_json = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
batch, depth, last = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
load = lambda p: json.load(open(p))
steps = {m["step"]: m for m in map(json.loads, open(f"{work}/run/metrics.jsonl"))}
train_rows, val, train = (load(f"{work}/train_rows.json"), load(f"{work}/{tag}.validation.json"),
                          load(f"{work}/{tag}.train.json"))
if train_rows["samples_in_split"] != batch:  # else a step's batch is not the whole split
    sys.exit(f"FAIL: the train split has {train_rows['samples_in_split']} samples, not {batch}")
m = steps[last]
pairs = [("eval main CE (validation)", eval_json["loss"], val["ce"]),
         (f"step-{last} main CE (train)", m["ce_loss"], train["ce"])]
if len(m["mtp_loss"]) != depth or len(train["mtp"]) != depth:
    sys.exit(f"FAIL: MTP depths: metrics {m['mtp_loss']}, hf_loss {train['mtp']}")
pairs += [(f"step-{last} MTP depth {d + 1} CE (train)", m["mtp_loss"][d], train["mtp"][d])
          for d in range(depth)]
bad = 0
for name, tessera, hf in pairs:
    rel = abs(tessera - hf) / abs(hf)
    ok = rel <= tol
    bad += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {tag} {name}: tessera {tessera:.9f}  hf {hf:.9f}  "
          f"rel {rel:.2e} (tol {tol:g})")
sys.exit(1 if bad else 0)
EOF
}

step "compare"
failed=0
compare hf32 1e-6 || failed=1
compare hf16 1e-2 || failed=1
if [ "$failed" -ne 0 ]; then
  for rows in validation train; do
    echo "smallest routing margin on the $rows rows (fp32 export):" \
      "$("$python" "$here/hf_routing_margin.py" "$work/hf32" "$work/${rows}_rows.json")"
  done
  echo "FAIL: the Hugging Face export does not reproduce tessera's losses (see above)"
  exit 1
fi

# Negative control: scale depth 2's eh_proj in a copy of the fp32 export; the check must fail.
step "negative control: a corrupted MTP tensor must be caught"
cp -r "$work/hf32" "$work/hf_bad"
"$python" - "$work/hf_bad" <<'EOF'
import json, os, struct, sys
import numpy as np
d, name = sys.argv[1], "model.layers.3.eh_proj.weight"
path = os.path.join(d, json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"][name])
with open(path, "r+b") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    begin, end = json.loads(f.read(size))[name]["data_offsets"]
    f.seek(8 + size + begin)
    w = np.frombuffer(f.read(end - begin), dtype="<f4") * np.float32(1.1)
    f.seek(8 + size + begin)
    f.write(w.astype("<f4").tobytes())
EOF
for rows in validation train; do
  "$python" "$here/hf_loss.py" "$work/hf_bad" "$work/${rows}_rows.json" >"$work/hf_bad.$rows.json"
done
if compare hf_bad 1e-6; then
  echo "FAIL: the check passed on an export with model.layers.3.eh_proj.weight scaled by 1.1"
  exit 1
fi
echo "ok   the corrupted export was caught"
echo "PASS: the Hugging Face export reproduces tessera's main and MTP losses"
