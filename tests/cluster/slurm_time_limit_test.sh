#!/usr/bin/env bash
# Time limit on the private Slurm: a job with --time=1 (minute) and the warning 50 s before it
# gets USR1 from Slurm 10-40 s into each start, checkpoints, requeues itself and resumes; it
# finishes its ~45 s of training over several starts and is never killed by the limit.
# The step count is calibrated on this machine first, so that the training takes ~45 s however
# fast the machine is (a fixed count finished inside one start on a fast machine).
source "$(dirname "$0")/slurm_lib.sh"
steps=$(steps_for_seconds 45)
echo "calibration: $steps steps for ~45 s of training"
t0=$SECONDS
id=$("$tessera" submit "$recipe" "${tiny[@]}" --set run.dir="$work/run" --set train.steps="$steps" \
     --set checkpoint.every_steps=0 --set logging.every_steps=100 --set slurm.time=1 \
     --set slurm.signal_seconds=50 --set slurm.max_restarts=8) || { fail "submit"; finish time_limit; }
wait_job "$id" 280 || fail "job $id did not finish"
log=$work/run/job/slurm-$id.out
grep -E "^tessera job|stopping after|resum" "$log"
starts=$(grep -c "^tessera job $id: .* start [0-9]* " "$log")
echo "$starts starts in $((SECONDS - t0)) s; states: $(job_states "$id" | tr '\n' ' ')"
[ -e "$work/run/DONE" ] || fail "no DONE"
[ "$starts" -ge 2 ] || fail "finished in $starts start(s): the time limit never struck"
[ "$(grep -c "stopping after step [0-9]* (SIGUSR1)" "$log")" -ge 1 ] || fail "no checkpoint on the warning"
grep -q "got SIGUSR1" "$log" || fail "the batch shell never got the warning"
job_states "$id" | grep -q TIMEOUT && fail "a start hit the time limit"
[ "$(job_states "$id" | tail -1)" = COMPLETED ] || fail "final state $(job_states "$id" | tail -1)"
[ "$(metric_by_step loss "$work/run/metrics.jsonl" | wc -l)" = "$steps" ] || fail "not every step logged"
finish "time limit: done over $starts starts ($((SECONDS - t0)) s)"
