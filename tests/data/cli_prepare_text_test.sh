#!/usr/bin/env bash
# `tessera prepare text` on input that is not UTF-8: refused with exit 1, naming the file, byte
# offset and line, writing nothing; with --replace-invalid-utf8 it succeeds and says how many
# sequences became U+FFFD.
# Usage: cli_prepare_text_test.sh TESSERA WORKDIR
set -uo pipefail
tessera=$1 work=$2
rm -rf "$work" && mkdir -p "$work/corpus"
failures=0 passed=0

check() {  # check NAME EXPECTED_EXIT EXPECTED_SUBSTRING CMD...
  local name=$1 want_rc=$2 want=$3
  shift 3
  local out rc
  out=$(timeout 60 "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ]; then
    echo "FAIL $name: exit $rc, expected $want_rc"; echo "$out" | tail -n 5 | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  if [ -n "$want" ] && ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL $name: output lacks '$want'"; echo "$out" | tail -n 5 | sed 's/^/    /'
    failures=$((failures + 1)); return
  fi
  echo "ok   $name"; passed=$((passed + 1))
}

printf 'first document, valid: h\xc3\xa9llo\n' > "$work/corpus/a.txt"
printf 'second document\nline two has \xff here\n' > "$work/corpus/b.txt"   # offset 29, line 2

check help_names_flag 0 "--replace-invalid-utf8" "$tessera" prepare text --help
check refused 1 "$work/corpus/b.txt: invalid UTF-8 at byte offset 29 (line 2)" \
  "$tessera" prepare text --quiet --out "$work/out" "$work/corpus"
if [ -e "$work/out" ]; then
  echo "FAIL refused_writes_nothing: $work/out exists"; failures=$((failures + 1))
else
  echo "ok   refused_writes_nothing"; passed=$((passed + 1))
fi
check replaced 0 "replaced 1 invalid UTF-8 sequence(s) with U+FFFD" \
  "$tessera" prepare text --quiet --replace-invalid-utf8 --out "$work/out" "$work/corpus"
check replaced_noted_in_manifest 0 "1 invalid sequence(s) replaced with U+FFFD" cat "$work/out/manifest.yaml"

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
