#!/usr/bin/env bash
# Runs an abort test program under mpirun and checks that the job exits non-zero within 30 s,
# prints the expected message exactly once and leaves no process behind.
# usage: run_abort_mpitest.sh <mpiexec> <np> <abort_mpitest binary> <mode> <expected message>
set -u
mpiexec=$1 np=$2 binary=$3 mode=$4 expected=$5

start_ns=$(date +%s%N)
output=$(timeout 60 "$mpiexec" --oversubscribe -np "$np" "$binary" "$mode" 2>&1)
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
count=$(grep -cF -- "$expected" <<<"$output")

echo "$output"
echo "---- exit status $rc after ${elapsed_ms} ms; expected message seen $count time(s)"
fail=0
if [ "$rc" -eq 0 ]; then echo "FAIL: mpirun exited 0"; fail=1; fi
if [ "$rc" -eq 124 ]; then echo "FAIL: mpirun still running after 60 s"; fail=1; fi
if [ "$elapsed_ms" -ge 30000 ]; then echo "FAIL: took ${elapsed_ms} ms (limit 30 s)"; fail=1; fi
if [ "$count" -ne 1 ]; then echo "FAIL: expected message printed $count times, wanted once: $expected"; fail=1; fi
if grep -q "finished without the failure" <<<"$output"; then echo "FAIL: a rank finished"; fail=1; fi
# No rank left behind (a stopped one included): give the launcher's kills a moment.
for _ in $(seq 50); do pgrep -f -- "^$binary $mode" >/dev/null || break; sleep 0.2; done
if pgrep -fa -- "^$binary $mode"; then
  echo "FAIL: processes left behind"; pkill -CONT -f -- "^$binary $mode"; pkill -KILL -f -- "^$binary $mode"
  fail=1
fi
exit $fail
