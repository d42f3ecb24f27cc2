#!/usr/bin/env bash
# Tracing end to end: `tessera train` on 2 MPI ranks (dp=2, ep=2: expert all-to-alls) with
# logging.trace_steps "2-3" writes run.dir/trace.json with events of both ranks on the compute
# lane and their communicators' lanes (and per-rank files); `tessera trace plot` draws it as a PNG; bad values
# and bad traces are errors naming the key or the file.
# Usage: cli_trace_test.sh TESSERA MPIRUN RECIPE WORKDIR
set -uo pipefail
tessera=$1 mpirun=$2 recipe=$3 work=$4
python=${TESSERA_PYTHON:-python3}
rm -rf "$work" && mkdir -p "$work"
CHECK_TIMEOUT=300 CHECK_TAIL=8
# shellcheck source-path=SCRIPTDIR source=cli_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_check.sh"  # check, expect, check_summary

check prepare 0 "tokens" "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 40000 --seed 1 \
  --out "$work/data"
run=(--set parallel.dp=2 --set parallel.ep=2 --set train.steps=3 --set data.path="$work/data"
     --set checkpoint.final=false)
check train_traced 0 "trace of steps 2-3 written to $work/run/trace.json" \
  "$mpirun" --oversubscribe -np 2 "$tessera" train "$recipe" "${run[@]}" --set run.dir="$work/run" \
  --set logging.trace_steps=2-3
check rank_files 0 "" test -s "$work/run/trace/rank-00000.json" -a -s "$work/run/trace/rank-00001.json"

# The merged trace: both ranks, named with their coordinates; each rank's expert all-to-alls on
# its comm:ep lane with their bytes, and its F, B, W pieces on the compute lane; every tid named.
check trace_contents 0 "trace ok" "$python" - "$work/run/trace.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["displayTimeUnit"] == "ms", doc.get("displayTimeUnit")
events = doc["traceEvents"]
threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
           if e["ph"] == "M" and e["name"] == "thread_name"}
procs = {e["pid"]: e["args"]["name"] for e in events
         if e["ph"] == "M" and e["name"] == "process_name"}
assert procs == {0: "rank 0 (pp=0, dp=0, ep=0)", 1: "rank 1 (pp=0, dp=1, ep=1)"}, procs
complete = [e for e in events if e["ph"] == "X"]
assert {e["pid"] for e in complete} == {0, 1}, "events of both ranks"
for e in complete:
    assert (e["pid"], e["tid"]) in threads, ("unnamed lane", e)
    assert e["dur"] >= 0 and isinstance(e["ts"], (int, float)), e
for pid in (0, 1):
    lanes = {threads[(e["pid"], e["tid"])] for e in complete if e["pid"] == pid}
    assert any(l.startswith("comm:") for l in lanes), (pid, lanes)
    a2a = [e for e in complete if e["pid"] == pid and e["name"] == "all_to_all_v"]
    assert a2a, ("no all_to_all_v on rank", pid)
    assert all(threads[(pid, e["tid"])].startswith("comm:ep") for e in a2a), pid
    assert all(e["cat"] == "comm" and e["args"]["bytes"] >= 0 for e in a2a), pid
    assert any(e["name"] == "reduce_scatter" for e in complete if e["pid"] == pid), pid
    # The model's pieces on the compute lane, named "<F|B|W> <piece>".
    kinds = {e["name"].split(" ")[0] for e in complete
             if e["pid"] == pid and threads[(pid, e["tid"])] == "compute"}
    assert {"F", "B", "W"} <= kinds, (pid, kinds)
print("trace ok:", len(complete), "events")
PY

check plot 0 "wrote $work/run/trace.png" "$tessera" trace plot "$work/run"
check png_signature 0 "png ok" "$python" -c '
import os, sys
p = sys.argv[1]
with open(p, "rb") as f: sig = f.read(8)
assert sig == b"\x89PNG\r\n\x1a\n", sig
assert os.path.getsize(p) > 0
print("png ok", os.path.getsize(p))' "$work/run/trace.png"
check plot_out_width 0 "wrote $work/narrow.png" "$tessera" trace plot "$work/run" --out "$work/narrow.png" \
  --width 400
check trace_help 0 "--width" "$tessera" trace plot --help
check trace_no_subcommand 2 "expected \`plot RUN_DIR\`" "$tessera" trace "$work/run"
check plot_missing_trace 1 "$work/nowhere/trace.json" "$tessera" trace plot "$work/nowhere"
mkdir -p "$work/bad" && echo '{"traceEvents": [' > "$work/bad/trace.json"
check plot_malformed_trace 1 "$work/bad/trace.json: malformed trace" "$tessera" trace plot "$work/bad"
mkdir -p "$work/empty" && echo '{"traceEvents": []}' > "$work/empty/trace.json"
check plot_empty_trace 1 "$work/empty/trace.json: the trace holds no complete" \
  "$tessera" trace plot "$work/empty"

check bad_trace_steps 2 "logging.trace_steps: '3-2'" "$tessera" train "$recipe" "${run[@]}" \
  --set run.dir="$work/bad-run" --set logging.trace_steps=3-2
check untraced_run 0 "step 3/3" "$tessera" train "$recipe" "${run[@]}" --set parallel.dp=1 \
  --set parallel.ep=1 --set run.dir="$work/plain"
if [ -e "$work/plain/trace.json" ] || [ -e "$work/plain/trace" ]; then
  echo "FAIL untraced_run_writes_no_trace"; failures=$((failures + 1))
else
  echo "ok   untraced_run_writes_no_trace"; passed=$((passed + 1))
fi

check_summary
