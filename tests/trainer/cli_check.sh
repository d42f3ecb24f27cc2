# shellcheck shell=bash
# The helpers the end-to-end CLI tests share (tests/trainer/cli_*_test.sh); sourced, not run.
# A script sets CHECK_TIMEOUT (seconds a command may run, default 120) and CHECK_TAIL (lines of
# output shown under a failure, default 5) before or after sourcing, then ends with
# `check_summary`, whose status is the script's.
#
#   check NAME EXPECTED_EXIT EXPECTED_SUBSTRING CMD...   run CMD under timeout; pass when it exits
#                                   EXPECTED_EXIT and its output (stdout and stderr) holds
#                                   EXPECTED_SUBSTRING (empty: anything). The output stays in $out
#                                   for tests of it that follow.
#   expect NAME CONDITION_COMMAND...   a test of state after a check: pass when the command succeeds
#   check_summary                   print "P passed, F failed"; succeeds when none failed

passed=0 failures=0 out=""

check() {
  local name=$1 want_rc=$2 want=$3
  shift 3
  local rc
  out=$(timeout "${CHECK_TIMEOUT:-120}" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ]; then
    echo "FAIL $name: exit $rc, expected $want_rc"
    echo "$out" | tail -n "${CHECK_TAIL:-5}" | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  if [ -n "$want" ] && ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL $name: output lacks '$want'"
    echo "$out" | tail -n "${CHECK_TAIL:-5}" | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  echo "ok   $name"; passed=$((passed + 1))
}

expect() {
  local name=$1
  shift
  if "$@"; then
    echo "ok   $name"; passed=$((passed + 1))
  else
    echo "FAIL $name: $*"; failures=$((failures + 1))
  fi
}

check_summary() {
  echo "$passed passed, $failures failed"
  [ "$failures" -eq 0 ]
}
