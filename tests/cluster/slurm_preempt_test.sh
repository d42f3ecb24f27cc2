#!/usr/bin/env bash
# Preemption on the private Slurm: a 2-task run is stopped twice mid-run, first by
# `scancel --signal=USR1` (the signal reaches the training step only: it checkpoints and exits 0,
# and the job script requeues the job itself), then by `scontrol requeue` (SIGTERM, Slurm
# requeues). Each time it resumes from the checkpoint (--resume auto) and its per-step losses
# equal those of an uninterrupted run submitted alongside.
source "$(dirname "$0")/slurm_lib.sh"
# Long enough (about 30 s uninterrupted, calibrated here) that both stops land mid-run however
# fast the machine is: a fixed 400 steps finished before the signal arrived on a fast one.
steps=$(steps_for_seconds 30 400)
echo "calibration: $steps steps for ~30 s of training"
common=("${tiny[@]}" --set train.steps="$steps" --set checkpoint.every_steps=0 --set parallel.dp=2
        --set slurm.ntasks_per_node=2 --set logging.every_steps=500)
t0=$SECONDS
ref=$("$tessera" submit "$recipe" "${common[@]}" --set run.dir="$work/reference") || fail "submit reference"
id=$("$tessera" submit "$recipe" "${common[@]}" --set run.dir="$work/preempted") || fail "submit"
log=$work/preempted/job/slurm-$id.out
steps_logged() { [ -f "$work/preempted/metrics.jsonl" ] && wc -l < "$work/preempted/metrics.jsonl" || echo 0; }
wait_for() {  # seconds, description, condition (evaluated again each time)...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until eval "$*"; do
    [ $((SECONDS - start)) -lt "$limit" ] || { fail "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}
wait_for 60 "20 steps" '[ "$(steps_logged)" -ge 20 ]'
echo "scancel --signal=USR1 $id after $(steps_logged) steps ($((SECONDS - t0)) s)"
scancel --signal=USR1 "$id"
wait_for 60 "the second start" 'grep -q "^tessera job $id: .* start 2 " "$log"'
first_stop=$(steps_logged)
wait_for 60 "steps after the restart" '[ "$(steps_logged)" -ge $((first_stop + 15)) ]'
echo "scontrol requeue $id after $(steps_logged) steps ($((SECONDS - t0)) s)"
scontrol requeue "$id"
wait_job "$id" 180 || fail "job $id did not finish"
wait_job "$ref" 60 || fail "reference job $ref did not finish"
echo "both done after $((SECONDS - t0)) s"
grep -E "^tessera job|stopping after|resum" "$log"
[ -e "$work/preempted/DONE" ] || fail "no DONE"
grep -q "^tessera job $id: .* start 3 (SLURM_RESTART_COUNT=2" "$log" || fail "no third start"
# The first stop is scancel's SIGUSR1 (nothing else was sent yet). Rank 0 logs it; when another
# rank saw the signal first the ranks agree to stop at the same step and rank 0 names that.
grep -m 1 "stopping after step" "$log" |
  grep -Eq "stopping after step [0-9]+ \((SIGUSR1|a stop signal on another rank)\)" ||
  fail "no checkpoint on SIGUSR1"
# Rank 0 names SIGTERM, or "a stop signal on another rank" when a peer got it first. Under
# `scontrol requeue` Slurm also cancels the step, and on a fast machine its PMIx server can go
# before the ranks finish that checkpoint (Open MPI then aborts them: "Error handler invoked");
# the requeued job resumes from the USR1 checkpoint instead, which the loss check below covers.
stops=$(grep -c "stopping after step [0-9]* (" "$log")
if [ "$stops" != 2 ]; then
  if [ "$stops" = 1 ] && grep -q "pmix.*Error handler invoked" "$log"; then
    echo "note: the SIGTERM checkpoint was cut short by Slurm tearing the step down (PMIx)"
  else
    fail "not two checkpoints on a stop signal ($stops)"
  fi
fi
grep -q "got SIGTERM" "$log" || fail "the batch shell never saw scontrol requeue's SIGTERM"
grep -q "requeueing, restart 1" "$log" || fail "the job did not requeue itself after USR1"
[ "$(job_states "$id" | tail -1)" = COMPLETED ] || fail "job states: $(job_states "$id" | tr '\n' ' ')"
metric_by_step loss "$work/reference/metrics.jsonl" > reference.loss
metric_by_step loss "$work/preempted/metrics.jsonl" > preempted.loss
[ "$(wc -l < reference.loss)" = "$steps" ] || fail "reference has $(wc -l < reference.loss) steps"
if ! cmp -s reference.loss preempted.loss; then
  fail "per-step losses differ from the uninterrupted run:"; diff reference.loss preempted.loss | head
fi
finish "preemption: USR1 + requeue, resumed to the same losses ($((SECONDS - t0)) s)"
