#!/usr/bin/env bash
# The tessera CLI end to end: --help of every command, usage errors, `prepare text` (byte and BPE)
# feeding a short training run and `eval`, and errors that name the bad path.
# Usage: cli_commands_test.sh TESSERA RECIPE WORKDIR
set -uo pipefail
tessera=$1 recipe=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
CHECK_TIMEOUT=120 CHECK_TAIL=5
# shellcheck source-path=SCRIPTDIR source=cli_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_check.sh"  # check, expect, check_summary

check help 0 "prepare text|synthetic" "$tessera" --help
check no_command 2 "Usage: tessera" "$tessera"
check unknown_command 2 "unknown command 'bogus'" "$tessera" bogus
check train_help 0 "--set" "$tessera" train --help
check eval_help 0 "--checkpoint" "$tessera" eval --help
check prepare_help 0 "synthetic" "$tessera" prepare --help
check prepare_text_help 0 "--tokenizer" "$tessera" prepare text --help
check prepare_synthetic_help 0 "--order" "$tessera" prepare synthetic --help
check train_unknown_option 2 "--bogus" "$tessera" train "$recipe" --bogus
check train_missing_recipe 2 "missing RECIPE" "$tessera" train
check train_extra_argument 2 "unexpected argument 'surplus.yaml'" "$tessera" train "$recipe" surplus.yaml
check help_before_extra_argument 0 "--set" "$tessera" train --help surplus.yaml
check checkpoint_unknown_action 2 "unknown action 'frobnicate'" "$tessera" checkpoint frobnicate "$work"
check checkpoint_verify_two_dirs 2 "expected one DIR, got 2" "$tessera" checkpoint verify "$work" "$work"
check prepare_bad_vocab 2 "--vocab" "$tessera" prepare synthetic --vocab 1 --tokens 1000 --out "$work/x"
check eval_missing_args 2 "--checkpoint" "$tessera" eval "$recipe" --data "$work"

# A small text corpus: two files of several documents.
mkdir -p "$work/corpus"
for i in 1 2 3 4 5 6; do
  printf 'Document %d. The quick brown fox jumps over the lazy dog; héllo wörld %d.\n' "$i" "$i" > "$work/corpus/doc$i.txt"
  for j in $(seq 1 40); do echo "line $j of document $i: tessera trains mixture-of-experts models." >> "$work/corpus/doc$i.txt"; done
done
check prepare_text_byte 0 "tokens" "$tessera" prepare text --tokenizer byte --out "$work/bytes" "$work/corpus"
check byte_vocab_257 0 "vocab_size: 257" cat "$work/bytes/manifest.yaml"
check prepare_text_bpe 0 "tokens" "$tessera" prepare text --tokenizer bpe --vocab 300 --out "$work/bpe" "$work/corpus"
check bpe_vocab_300 0 "vocab_size: 300" cat "$work/bpe/manifest.yaml"

small=(--set model.vocab_size=300 --set model.dim=32 --set model.n_heads=2 --set model.inter_dim=64
       --set model.moe_inter_dim=32 --set train.steps=3 --set train.seq_len=16 --set train.global_batch=4
       --set train.eval_batches=1 --set data.path="$work/bpe" --set run.dir="$work/run"
       --set checkpoint.every_steps=0)
check train_on_bpe 0 "step 3/3" "$tessera" train "$recipe" "${small[@]}"
check metrics_written 0 '"step":3' cat "$work/run/metrics.jsonl"
check eval_on_bpe 0 '"loss":' "$tessera" eval "$recipe" "${small[@]}" --checkpoint "$work/run" --data "$work/bpe" --batches 1
# Runs that fail get run.dirs of their own ($work/run holds a run: a fresh run there is refused).
check vocab_too_small_names_both_keys 1 "model.vocab_size 100" "$tessera" train "$recipe" "${small[@]}" --set model.vocab_size=100 \
  --set run.dir="$work/run-vocab"
check eval_missing_checkpoint 1 "$work/nowhere" "$tessera" eval "$recipe" "${small[@]}" --checkpoint "$work/nowhere" --data "$work/bpe"
check train_missing_dataset 1 "$work/no-data" "$tessera" train "$recipe" "${small[@]}" --set data.path="$work/no-data" \
  --set run.dir="$work/run-no-data"
# A damaged validation shard stops the run at start-up, naming the shard, before any step (it
# used to surface at the final evaluation, after every step had run).
cp -r "$work/bpe" "$work/bpe-bad"
/usr/bin/python3 - "$work/bpe-bad/manifest.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
head, val = text.split("  validation:", 1)
val = re.sub(r"xxh64:[0-9a-f]{16}", "xxh64:0123456789abcdef", val, count=1)
open(sys.argv[1], "w").write(head + "  validation:" + val)
PY
check damaged_validation_shard_at_start 1 "shard-" "$tessera" train "$recipe" "${small[@]}" \
  --set data.path="$work/bpe-bad" --set run.dir="$work/run-bad-val"
if [ -e "$work/run-bad-val/metrics.jsonl" ] && [ -s "$work/run-bad-val/metrics.jsonl" ]; then
  echo "FAIL damaged_validation_shard_at_start: steps ran before the check"; failures=$((failures + 1))
fi

# A model too large for this machine stops before anything is allocated, naming the term.
check too_large_for_memory 2 "largest term is" "$tessera" train "$recipe" "${small[@]}" \
  --set model.dim=65536 --set model.n_heads=256 --set run.dir="$work/run-huge"

# --dry-run plans every rank's memory without mpirun, a device or a dataset, and writes nothing.
layout=(--set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 --set parallel.micro_batches=2
        --set run.dir="$work/dry")
check dry_run_plans_each_rank 0 "   3     1       1       1 |" "$tessera" train "$recipe" "${layout[@]}" \
  --set data.path="$work/no-data" --dry-run
check dry_run_on_cuda_needs_no_gpu 0 "4 rank(s) on cuda" "$tessera" train "$recipe" "${layout[@]}" \
  --set run.device=cuda --dry-run
check dry_run_bad_layout_names_key 2 "parallel.ep" "$tessera" train "$recipe" --set parallel.dp=2 \
  --set parallel.ep=3 --dry-run
if [ -e "$work/dry" ]; then echo "FAIL dry_run_writes_nothing: $work/dry exists"; failures=$((failures + 1)); fi
# Contexts x arena: more micro-batches in flight on stage 0 of 1F1B than on the last stage.
plan=$("$tessera" train "$recipe" "${layout[@]}" --dry-run 2>&1)
ctx0=$(awk '$1 == "0" && $2 == "0" {print $0}' <<<"$plan" | grep -o '(2x[0-9.]*)')
ctx3=$(awk '$1 == "3" {print $0}' <<<"$plan" | grep -o '(1x[0-9.]*)')
if [ -n "$ctx0" ] && [ -n "$ctx3" ]; then
  echo "ok   dry_run_contexts_follow_the_schedule ($ctx0 on stage 0, $ctx3 on stage 1)"; passed=$((passed + 1))
else
  echo "FAIL dry_run_contexts_follow_the_schedule:"; echo "$plan" | sed 's/^/    /'; failures=$((failures + 1))
fi

check_summary
