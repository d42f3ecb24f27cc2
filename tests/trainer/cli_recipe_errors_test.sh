#!/usr/bin/env bash
# Each class of bad recipe input makes `tessera train` exit non-zero with a message naming the key
# (and the file or --set it came from), before any work starts.
# Usage: cli_recipe_errors_test.sh TESSERA RECIPE WORKDIR
set -uo pipefail
tessera=$1 recipe=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
failures=0 passed=0

expect_error() {  # expect_error NAME EXPECTED_SUBSTRING ARGS...
  local name=$1 want=$2
  shift 2
  local out rc
  out=$(timeout 60 "$tessera" train "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "FAIL $name: exit $rc, expected an error"; failures=$((failures + 1)); return
  fi
  if ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL $name: message lacks '$want':"; echo "$out" | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  echo "ok   $name: $(head -n 1 <<<"$out")"; passed=$((passed + 1))
}

bad() {  # bad NAME: copy of the recipe with one sed edit
  sed "$2" "$recipe" > "$work/$1.yaml"
  echo "$work/$1.yaml"
}

expect_error unknown_key "model.dimm" "$(bad unknown_key 's/^  dim: [0-9]*/  dimm: 64/')"
expect_error unknown_key_names_file "unknown_key.yaml" "$work/unknown_key.yaml"
expect_error unknown_section "optimiser" "$(bad unknown_section 's/^optimizer:/optimiser:/')"
expect_error wrong_type_int "model.dim" "$(bad wrong_type_int 's/^  dim: [0-9]*/  dim: sixty-four/')"
expect_error wrong_type_float_for_int "train.steps" "$(bad wrong_type_float 's/^  steps: [0-9]*/  steps: 2.5/')"
expect_error wrong_type_bool "checkpoint.async" "$(bad wrong_type_bool 's/^  async: false/  async: maybe/')"
expect_error topk_gt_experts "model.top_k" "$recipe" --set model.top_k=9
expect_error heads_not_dividing_dim "model.n_heads" "$recipe" --set model.n_heads=5
expect_error ep_not_dividing_dp "parallel.ep" "$recipe" --set parallel.dp=2 --set parallel.ep=3
expect_error batch_not_divisible "train.global_batch" "$recipe" --set parallel.micro_batches=3
expect_error negative_lr "optimizer.lr" "$recipe" --set optimizer.lr=-1
expect_error norm_eps_absurd "model.norm_eps: must be <= 1, got 1.0e+30" "$recipe" --set model.norm_eps=1e30
expect_error adam_eps_absurd "optimizer.eps: must be <= 1, got 2.0" "$recipe" --set optimizer.eps=2
expect_error cpu_threads_absurd "run.cpu_threads: must be in [1, 1024], got 100000" "$recipe" \
  --set run.cpu_threads=100000
expect_error unknown_override_key "--set" "$recipe" --set model.nope=1
expect_error override_missing_equals "model.dim" "$recipe" --set model.dim
expect_error override_empty_key "--set =5: expected key=value" "$recipe" --set =5
expect_error missing_recipe_file "no-such.yaml" "$work/no-such.yaml"
expect_error yaml_syntax "syntax.yaml" "$(bad syntax 's/^model:/model: [/')"
expect_error multi_process_layout "parallel.pp" "$recipe" --set parallel.pp=2

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
