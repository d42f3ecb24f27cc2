#!/usr/bin/env bash
# tessera submit: hostile recipe values are rejected (exit 2, the message names the key) or reach
# the job script single-quoted. The script passes `bash -n` and, run with sbatch/srun/scontrol
# replaced by recorders on PATH, passes every value literally, runs no embedded command, and takes
# the right branch after the step: complete, requeue, give up, failure, forwarded USR1.
#   submit_quoting_test.sh TESSERA RECIPE WORKDIR          (needs no Slurm)
set -uo pipefail
tessera=$1 recipe=$2 work=$3
rm -rf "$work" && mkdir -p "$work/bin" && cd "$work" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- Rejected: each value, the key its message must name ----
reject() {  # key-in-message, --set arguments...
  local want=$1; shift
  local out
  out=$("$tessera" submit "$recipe" --dry-run --set data.path=d "$@" 2>&1 >/dev/null)
  local status=$?
  [ $status -eq 2 ] || fail "$* exited $status, expected 2"
  grep -qF -- "$want" <<<"$out" || fail "$*: message lacks '$want': $out"
}
reject "slurm.partition" --set 'slurm.partition=debug;rm -rf ~'
reject "slurm.partition" --set 'slurm.partition=$(reboot)'
reject "slurm.account" --set 'slurm.account=`id`'
reject "slurm.qos" --set 'slurm.qos="a b"'
reject "slurm.job_name" --set 'slurm.job_name="x\ntouch PWN0"'
reject "slurm.time" --set 'slurm.time=$(reboot)'
reject "slurm.time" --set 'slurm.time="10\n"'
reject "slurm.extra" --set 'slurm.extra=--comment=a b'
reject "slurm.extra" --set 'slurm.extra=--comment="x"'
reject "slurm.extra" --set 'slurm.extra="--comment=x\n#SBATCH --wrap=id"'
reject "slurm.extra" --set 'slurm.extra=--output=/tmp/x'
reject "slurm.extra" --set 'slurm.extra=-C gpu'
reject "slurm.env" --set 'slurm.env=BAD NAME=1'
reject "slurm.env" --set 'slurm.env=$(id)=1'
reject "slurm.env" --set 'slurm.env=tessera=/bin/evil'
reject "slurm.modules" --set 'slurm.modules=ok;$(id)'
reject "slurm.signal_seconds" --set slurm.time=1 --set slurm.signal_seconds=60
reject "slurm.ntasks_per_node" --set parallel.dp=2
reject "the job's output file" --set 'run.dir=runs/a b'
reject "the job's output file" --set 'run.dir="runs/x\ny"'
reject "the job's output file" --set 'run.dir=runs/50%'
reject "the job's output file" --set "run.dir=runs/it's"

# ---- Quoted: hostile values that are valid reach bash as literal words ----
run_dir="$work/"'r-$(touch${IFS}PWN1)-`touch${IFS}PWN2`-;touch${IFS}PWN3'
env_value='$(touch PWN4) `touch PWN5` '"'"'sq'"'"' "dq" \back && touch PWN6 | x > y'
yaml_env=${env_value//\\/\\\\}   # as a YAML double-quoted string: \ -> \\, " -> \"
yaml_env=${yaml_env//\"/\\\"}
settings=(--set data.path='data/$(touch PWN7)'
          --set "run.dir=$run_dir"
          --set slurm.env="\"EVIL=$yaml_env;NL=line1\\nline2 \$(touch PWN8)\""
          --set slurm.ntasks_per_node=2 --set parallel.dp=2
          --set slurm.max_restarts=2)
"$tessera" submit "$recipe" --dry-run "${settings[@]}" > job.sh || fail "dry run of the hostile recipe"
bash -n job.sh || fail "bash -n job.sh"
grep -q '^#SBATCH --requeue$' job.sh || fail "no --requeue"
grep -q '^#SBATCH --open-mode=append$' job.sh || fail "no --open-mode=append"
grep -q '^#SBATCH --signal=B:USR1@120$' job.sh || fail "no --signal=B:USR1@120"
grep -q '^#SBATCH --ntasks-per-node=2$' job.sh || fail "no --ntasks-per-node=2"

# Recorders: srun/mpirun write their argv and the job's environment, then act as $MODE says.
cat > bin/srun <<'REC'
#!/usr/bin/env bash
{ printf '%s\n' "$@"; printf 'EVIL=%s\n' "$EVIL"; printf 'NL=%s\n' "$NL"; } > "$RECORD/srun.args"
run_dir=$(sed -n 's/^  dir: //p' "${@: -3:1}" | head -1)
case $MODE in
  done) : > "$RECORD/done-marker" ;;
  stopped) exit 0 ;;
  failed) exit 7 ;;
  signal) trap 'echo got-usr1 > "$RECORD/step-signal"; exit 0' USR1; touch "$RECORD/step-started"
          for _ in $(seq 100); do sleep 0.1; done; exit 9 ;;
esac
REC
cat > bin/scontrol <<'REC'
#!/usr/bin/env bash
printf '%s\n' "$@" > "$RECORD/scontrol.args"
REC
cat > bin/sbatch <<'REC'
#!/usr/bin/env bash
printf '%s\n' "$@" > "$RECORD/sbatch.args"
echo "4242;cluster"
REC
chmod +x bin/*

run_job() {  # mode, restart count -> status; output in $RECORD/job.out
  export MODE=$1 RECORD=$work/record-$1
  rm -rf "$RECORD" && mkdir -p "$RECORD"
  if [ "$MODE" = done ]; then mkdir -p "$run_dir" && : > "$run_dir/DONE"; else rm -f "$run_dir/DONE"; fi
  (cd "$work" && SLURM_JOB_ID=99 SLURM_RESTART_COUNT=$2 PATH="$work/bin:$PATH" bash job.sh > "$RECORD/job.out" 2>&1)
}

run_job done 0; status=$?
[ $status -eq 0 ] || fail "done: exit $status"; grep -q "training complete" "$RECORD/job.out" || fail "done: $(cat "$RECORD/job.out")"
args=$(cat "$RECORD/srun.args")
expected=$(printf '%s\n' --ntasks=2 --kill-on-bad-exit=1 "$tessera" train "$run_dir/job/recipe.yaml" --resume auto \
           "EVIL=$env_value" "NL=line1" "line2 \$(touch PWN8)")
[ "$args" = "$expected" ] || fail "srun argv/env differ:
--- got
$args
--- expected
$expected"
[ -f "$run_dir/job/recipe.yaml" ] || fail "pinned recipe missing"
grep -qF "dir: \"$run_dir\"" "$run_dir/job/recipe.yaml" 2>/dev/null || grep -qF "$run_dir" "$run_dir/job/recipe.yaml" || fail "pinned recipe lacks run.dir"
"$tessera" submit "$run_dir/job/recipe.yaml" --dry-run > /dev/null || fail "the pinned recipe does not load back"

run_job stopped 0; status=$?
[ $status -eq 0 ] || fail "stopped: exit $status"
[ "$(cat "$RECORD/scontrol.args" 2>/dev/null)" = "$(printf 'requeue\n99')" ] || fail "stopped: no scontrol requeue 99"
grep -q "requeueing, restart 1 of at most 2" "$RECORD/job.out" || fail "stopped: $(cat "$RECORD/job.out")"

run_job stopped 2; status=$?
[ $status -eq 3 ] || fail "max restarts: exit $status, expected 3"
[ ! -e "$RECORD/scontrol.args" ] || fail "max restarts: requeued anyway"
grep -q "giving up" "$RECORD/job.out" || fail "max restarts: $(cat "$RECORD/job.out")"

run_job failed 0; status=$?
[ $status -eq 7 ] || fail "failed: exit $status, expected 7"
[ ! -e "$RECORD/scontrol.args" ] || fail "failed: requeued a failing run"

# USR1 to the batch shell: forwarded to the step as USR1, then requeue.
export MODE=signal RECORD=$work/record-signal
rm -rf "$RECORD" && mkdir -p "$RECORD" && rm -f "$run_dir/DONE"
(cd "$work" && SLURM_JOB_ID=99 PATH="$work/bin:$PATH" exec bash job.sh > "$RECORD/job.out" 2>&1) &
shell=$!
for _ in $(seq 50); do [ -e "$RECORD/step-started" ] && break; sleep 0.1; done
kill -USR1 $shell
wait $shell; status=$?
[ $status -eq 0 ] || fail "signal: exit $status"
[ -e "$RECORD/step-signal" ] || fail "signal: USR1 not forwarded to the step"
grep -q "got SIGUSR1" "$RECORD/job.out" || fail "signal: $(cat "$RECORD/job.out")"
grep -q "stopped by SIGUSR1" "$RECORD/job.out" || fail "signal: no requeue reason"

# tessera submit itself: sbatch --parsable on run.dir/job/job.sh, the job id on stdout.
id=$(cd "$work" && PATH="$work/bin:$PATH" RECORD=$work "$tessera" submit "$recipe" "${settings[@]}" 2>/dev/null)
[ "$id" = 4242 ] || fail "submit printed '$id', expected 4242"
[ "$(cat "$work/sbatch.args")" = "$(printf '%s\n' --parsable "$run_dir/job/job.sh")" ] || fail "sbatch argv: $(cat "$work/sbatch.args")"
cmp -s "$run_dir/job/job.sh" job.sh || fail "submitted script differs from --dry-run's"

pwned=$(find "$work" / -maxdepth 1 -name 'PWN*' 2>/dev/null; find "$work" -name 'PWN*' 2>/dev/null)
[ -z "$pwned" ] || fail "an embedded command ran: $pwned"
[ -d "$run_dir" ] || fail "run.dir was not created literally"

[ $fails -eq 0 ] && echo "PASS: submit quoting" || { echo "$fails failure(s)"; exit 1; }
