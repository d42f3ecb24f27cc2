#!/usr/bin/env bash
# A bad parallel layout under mpirun makes EVERY rank exit non-zero within 30 seconds, with the
# error printed once (by rank 0) and naming the recipe key, before any model memory is allocated.
# Usage: cli_bad_layout_test.sh TESSERA MPIRUN RECIPE WORKDIR
set -uo pipefail
tessera=$1 mpirun=$2 recipe=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
"$tessera" prepare synthetic --vocab 64 --order 1 --tokens 20000 --seed 1 --out "$work/data" --quiet \
  || { echo "FAIL: cannot prepare data"; exit 1; }
failures=0 passed=0

expect_layout_error() {  # NAME NP EXPECTED_SUBSTRING OVERRIDES...
  local name=$1 np=$2 want=$3
  shift 3
  local args=(train "$recipe" --set "data.path=$work/data" --set "run.dir=$work/$name")
  for o in "$@"; do args+=(--set "$o"); done
  local start out rc elapsed
  start=$(date +%s%N)
  out=$(timeout 60 "$mpirun" --oversubscribe -np "$np" "$tessera" "${args[@]}" 2>&1)
  rc=$?
  elapsed=$(( ($(date +%s%N) - start) / 1000000 ))  # milliseconds
  local count
  count=$(grep -cF -- "$want" <<<"$out")
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "FAIL $name: exit $rc, expected every rank to fail"; failures=$((failures + 1)); return
  fi
  if [ "$elapsed" -ge 30000 ]; then
    echo "FAIL $name: took ${elapsed} ms (limit 30 s)"; failures=$((failures + 1)); return
  fi
  if [ "$count" -ne 1 ]; then
    echo "FAIL $name: '$want' printed $count times (want exactly once):"; echo "$out" | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  if [ -e "$work/$name/logs" ]; then  # nothing started: no rank got as far as its log
    echo "FAIL $name: ranks started training before rejecting the layout"; failures=$((failures + 1)); return
  fi
  echo "ok   $name (${elapsed} ms): $(grep -F -- "$want" <<<"$out")"; passed=$((passed + 1))
}

expect_layout_error world_mismatch 4 "world size is 4" parallel.dp=2
expect_layout_error ep_not_dividing_dp 4 "parallel.ep" parallel.dp=4 parallel.ep=3
expect_layout_error experts_not_divisible 4 "model.n_experts" parallel.dp=4 parallel.ep=4 model.n_experts=6 model.n_group=1
expect_layout_error too_many_stages 3 "parallel.pp" parallel.pp=3
expect_layout_error chunks_exceed_layers 4 "model.n_layers" parallel.pp=2 parallel.dp=2 \
  parallel.schedule=interleaved parallel.virtual_stages=2 parallel.micro_batches=2
expect_layout_error stage_layers_sum 2 "parallel.stage_layers" parallel.pp=2 parallel.stage_layers=2,1
expect_layout_error stage_layers_text 2 "parallel.stage_layers" parallel.pp=2 parallel.stage_layers=one,1
expect_layout_error interleaved_micro_batches 2 "parallel.micro_batches" parallel.pp=2 \
  parallel.schedule=interleaved parallel.virtual_stages=2 model.n_layers=4 parallel.micro_batches=3 \
  train.global_batch=12
expect_layout_error dualpipe_micro_batches 2 "dualpipe needs an even parallel.micro_batches >= 2 x parallel.pp" \
  parallel.pp=2 parallel.schedule=dualpipe parallel.micro_batches=2
expect_layout_error dualpipe_odd_pp 3 "dualpipe needs an even parallel.pp" \
  parallel.pp=3 parallel.schedule=dualpipe parallel.micro_batches=6 model.n_layers=4 \
  train.global_batch=12
expect_layout_error dualpipev_micro_batches 2 "dualpipev needs parallel.micro_batches >= 2 x parallel.pp = 4, got 3" \
  parallel.pp=2 parallel.schedule=dualpipev parallel.micro_batches=3 model.n_layers=4 \
  train.global_batch=12
# Node-limited routing: an EP group spanning 2 nodes (parallel.ranks_per_node=2 plays the nodes)
# needs model.n_group=2; an EP group split 3 + 1 over two nodes is refused whatever n_group.
expect_layout_error node_limited_n_group 4 "model.n_group: must be 2, got 1: each EP group (parallel.ep=4) spans 2 nodes" \
  parallel.dp=4 parallel.ep=4 parallel.ranks_per_node=2 model.n_group=1
expect_layout_error node_limited_uneven 4 "spans 2 nodes unevenly with parallel.ranks_per_node=3" \
  parallel.dp=4 parallel.ep=4 parallel.ranks_per_node=3 model.n_group=2
# No GPU (or no CUDA in this build), or on a GPU machine a device training cannot use yet: one
# line from rank 0 naming run.device, every rank out.
expect_layout_error cuda_unavailable 2 "run.device: cuda" parallel.dp=2 run.device=cuda

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
