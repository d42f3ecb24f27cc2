#!/usr/bin/env bash
# `tessera plan` from the command line: the report, --json's keys, --trace, --search, and clear
# errors (exit 2) naming the option, key or file; `tessera train --cluster FILE`'s mfu metric.
# Usage: plan_cli_test.sh TESSERA SOURCE_DIR WORKDIR
set -uo pipefail
tessera=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
py=${TESSERA_PYTHON:-python3}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tiny="$src/recipes/tiny-moe.yaml" h800="$src/recipes/clusters/h800.yaml"

out=$("$tessera" plan --help 2>&1) || fail "--help exited $?"
grep -q -- "--cluster" <<<"$out" || fail "--help does not mention --cluster"
grep -q -- "--search" <<<"$out" || fail "--help does not mention --search"

out=$("$tessera" plan "$tiny" 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--cluster FILE is required" <<<"$out" || fail "missing --cluster: exit $rc: $out"

printf 'name: x\nnodes: 1\ngpus_per_node: 2\ndevice: {name: d, colour: red}\n' >"$work/bad.yaml"
out=$("$tessera" plan "$tiny" --cluster "$work/bad.yaml" 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "bad.yaml: device.colour: unknown key\|bad.yaml: device.peak_tflops: required" <<<"$out" \
  || fail "bad cluster file: exit $rc: $out"

out=$("$tessera" plan "$tiny" --cluster "$h800" --set parallel.dpp=2 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "parallel.dpp" <<<"$out" || fail "bad --set key: exit $rc: $out"

out=$("$tessera" plan "$tiny" --cluster "$h800" 2>&1) || fail "report exited $?: $out"
grep -q "^step .* s (pipeline" <<<"$out" && grep -q "^memory: fits: rank 0 needs" <<<"$out" \
  || fail "report lacks the step or memory lines: $out"

# --json: one object with the issue's keys; a V3 fp8 plan (dualpipe on 2,048 H800) among them.
"$tessera" plan "$src/recipes/deepseek-v3-671b.yaml" --cluster "$h800" --set precision.compute=fp8 \
  --json >"$work/v3.json" 2>"$work/v3.err" || fail "V3 plan exited $?: $(cat "$work/v3.err")"
"$py" - "$work/v3.json" <<'PY' || fail "V3 --json"
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("step_s", "tokens_per_s", "mfu", "bubble_fraction", "exposed_comm_s", "peak_memory_gib",
          "gpu_hours_per_trillion_tokens", "fits", "verdict"):
    assert k in j, k
assert j["world"] == 2048 and j["schedule"] == "dualpipe" and j["precision"] == "fp8", j
assert 0 < j["mfu"] < 1 and 0 <= j["bubble_fraction"] < 1, j
# GPU-hours per trillion tokens follow from tokens/s and the world, whatever the model predicts.
assert abs(j["gpu_hours_per_trillion_tokens"] - 2048 * 1e12 / j["tokens_per_s"] / 3600) < 1e-6 * j["gpu_hours_per_trillion_tokens"]
PY

# --trace: the trainer's Chrome trace format, one process per stage, every F of every micro-batch
# with its pieces named as the trainer names them, the expert exchanges on their lane.
"$tessera" plan "$tiny" --cluster "$h800" --set model.n_layers=4 --set parallel.pp=2 \
  --set parallel.dp=2 --set parallel.ep=2 --set parallel.micro_batches=4 --trace "$work/t.json" \
  >/dev/null 2>&1 || fail "--trace exited $?"
"$py" - "$work/t.json" <<'PY' || fail "--trace file"
import json, re, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
x = [e for e in ev if e["ph"] == "X"]
lanes = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
assert {e["pid"] for e in x} == {0, 2}, {e["pid"] for e in x}   # stage s's first rank: s * dp
for pid in (0, 2):
    assert sorted(e["args"]["micro_batch"] for e in x if e["pid"] == pid and re.fullmatch(r"F\d+", e["name"])) == [0, 1, 2, 3]
    # tiny-moe's 4 layers, 2 per stage: an attention piece per layer and micro-batch
    assert len([e for e in x if e["pid"] == pid and e["name"] == "F attention"]) == 2 * 4
assert any(lanes[(e["pid"], e["tid"])] == "comm:ep" and e["name"] == "all_to_all_v" for e in x)
PY

out=$("$tessera" plan "$tiny" --cluster "$h800" --search --world 4 --top 3 2>/dev/null) || fail "--search exited $?"
grep -q "layouts considered" <<<"$out" && grep -q "^best: tessera plan" <<<"$out" || fail "--search: $out"

out=$("$tessera" plan "$tiny" --cluster "$work/../bad-missing.yaml" 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "cannot open cluster file" <<<"$out" || fail "missing cluster file: exit $rc: $out"

# train --cluster FILE: metrics report mfu from the planner's FLOP count and the file's peak.
"$tessera" prepare synthetic --vocab 64 --order 1 --tokens 60000 --seed 1 --out "$work/data" --quiet \
  || fail "prepare"
"$tessera" train "$tiny" --cluster "$h800" --set train.steps=2 --set train.eval_every=0 \
  --set data.path="$work/data" --set run.dir="$work/run" --set checkpoint.final=false \
  >"$work/train.log" 2>&1 || fail "train --cluster exited $?: $(tail -5 "$work/train.log")"
"$tessera" plan "$tiny" --cluster "$h800" --json >"$work/tiny.json" 2>/dev/null || fail "tiny plan"
"$py" - "$work/run/metrics.jsonl" "$work/tiny.json" <<'PY' || fail "train --cluster: mfu"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
flops = json.load(open(sys.argv[2]))["training_flops_per_token"]
assert len(lines) == 2, lines
for l in lines:   # fp32 recipe on one rank: H800's fp32 peak, 67 TFLOP/s
    want = flops * l["tokens_per_s"] / 67e12
    assert abs(l["mfu"] - want) <= 1e-9 * want, (l["mfu"], want)
PY
grep -q "mfu " "$work/train.log" || fail "train --cluster: no mfu on the step line"
out=$("$tessera" train "$tiny" --cluster "$work/nope.yaml" --set run.dir="$work/run2" 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "nope.yaml: cannot open cluster file" <<<"$out" \
  || fail "train --cluster missing file: exit $rc: $out"

[ "$failures" -eq 0 ] && echo "plan CLI: all passed"
exit "$failures"
