#!/usr/bin/env bash
# tessera plan calibrate: under mpirun -np 2 and -np 4 with --quick it writes a cluster
# description that calibration_check accepts (loads, positive numbers, every GEMM shape of the
# recipe covered, the synchronisation loss where it is measured);
# a single process is refused with the message saying to use mpirun with >= 2 ranks, and writes
# nothing; --help exits 0; a missing --out is a usage error. No timing is asserted.
#   plan_calibrate_test.sh TESSERA MPIEXEC CALIBRATION_CHECK RECIPE WORKDIR
set -uo pipefail
tessera=$1 mpiexec=$2 check=$3 recipe=$4 work=$5
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- Two ranks: the file, and what it covers (fp32, plus fp8 asked for by --precisions).
if "$mpiexec" --oversubscribe -np 2 "$tessera" plan calibrate "$recipe" --quick \
    --precisions fp8 --name test-machine --out "$work/cal.yaml" >"$work/cal.log" 2>&1; then
  grep -q "wrote $work/cal.yaml" "$work/cal.log" || fail "no 'wrote' line: $(cat "$work/cal.log")"
  grep -q "^gemm \[1/" "$work/cal.log" || fail "no progress lines: $(cat "$work/cal.log")"
  "$check" "$work/cal.yaml" 2 fp32,fp8 "$recipe" || fail "calibration_check"
  grep -q "^name: test-machine$" "$work/cal.yaml" || fail "--name not written"
  grep -q "^# .*--quick" "$work/cal.yaml" || fail "the comment does not say --quick"
else
  fail "mpirun -np 2 calibrate exited $?: $(cat "$work/cal.log")"
fi

# ---- Four ranks: groups of 2 and 4; on fewer than 4 cores they time-share them, and the
# synchronisation loss is measured for the group of all 4 only (calibration_check knows which).
if "$mpiexec" --oversubscribe -np 4 "$tessera" plan calibrate "$recipe" --quick \
    --out "$work/cal4.yaml" >"$work/cal4.log" 2>&1; then
  "$check" "$work/cal4.yaml" 4 fp32 "$recipe" || fail "calibration_check (4 ranks)"
else
  fail "mpirun -np 4 calibrate exited $?: $(cat "$work/cal4.log")"
fi

# ---- One process: refused, nothing written.
out=$("$tessera" plan calibrate "$recipe" --quick --out "$work/single.yaml" 2>&1)
status=$?
[ $status -eq 2 ] || fail "singleton exited $status, expected 2: $out"
grep -qF "run it under mpirun with >= 2 ranks" <<<"$out" || fail "singleton message: $out"
[ ! -e "$work/single.yaml" ] || fail "singleton wrote a file"

# ---- Usage.
help=$("$tessera" plan calibrate --help 2>&1) || fail "--help exited $?"
grep -q -- "--quick" <<<"$help" || fail "--help lacks --quick: $help"
grep -q "plan calibrate" <<<"$("$tessera" --help)" || fail "tessera --help lacks plan calibrate"
out=$("$mpiexec" --oversubscribe -np 2 "$tessera" plan calibrate "$recipe" 2>&1)
status=$?
[ $status -eq 2 ] || fail "missing --out exited $status, expected 2"
grep -qF "missing --out" <<<"$out" || fail "missing --out message: $out"

[ $fails -eq 0 ] && echo "plan_calibrate_test: OK"
exit $((fails > 0))
