# Shared by the Slurm tests (sourced): the private cluster's environment, data, a tiny recipe's
# settings, job waiting and failure reporting. Arguments of every test:
#   TESSERA RECIPE WORKDIR CLUSTER_DIR DATA_DIR
set -uo pipefail
tessera=$1 recipe=$2 work=$3 cluster=$4 data=$5
source "$cluster/env.sh" || { echo "FAIL: no cluster at $cluster (cluster.slurm_start)"; exit 1; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
finish() {
  if [ $fails -eq 0 ]; then echo "PASS: $1"; exit 0; fi
  echo "$fails failure(s); slurmctld log tail:"; tail -20 "$cluster/log/slurmctld.log"; exit 1
}
# Tiny, fast settings for recipes/tiny-moe.yaml.
tiny=(--set "data.path=$data" --set train.eval_every=0 --set train.eval_batches=1
      --set slurm.partition=debug --set slurm.time=5 --set slurm.signal_seconds=30)

# wait_job ID SECONDS: until the job (every array task) has left the queue; 1 on timeout.
wait_job() {
  local id=$1 limit=$2 start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] && return 0
    sleep 1
  done
  echo "job $id still queued after $limit s:"; squeue -j "$id"
  scancel "$id"
  return 1
}

# The final state of a job from the jobcomp log (one line per job end, requeues included).
job_states() { grep -o "JobId=$1 .*JobState=[A-Z_]*" "$cluster/log/jobcomp.txt" | sed 's/.*JobState=//'; }

# metric KEY FILE: the last record's KEY for every step, "step value" lines.
metric_by_step() {
  /usr/bin/python3 -c '
import json, sys
last = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    last[r["step"]] = r[sys.argv[1]]
for s in sorted(last):
    print(s, repr(last[s]))' "$1" "$2"
}

# steps_for_seconds SECONDS [MIN_STEPS]: the training steps of the tiny settings that take about
# SECONDS on this machine (two local runs of different lengths, so start-up cost cancels), at
# least MIN_STEPS (default 200), at most 20000. Tests that must interrupt a run use it: a fixed
# step count finished before the interruption on a faster machine.
steps_for_seconds() {
  local seconds=$1 min=${2:-200}
  _run_steps() {
    local begin end
    begin=$(date +%s.%N)
    "$tessera" train "$recipe" "${tiny[@]}" --set run.dir="$work/calib" --set train.steps="$1" \
      --set checkpoint.every_steps=0 --set checkpoint.final=false \
      --set logging.every_steps=1000 --overwrite >/dev/null 2>&1 || fail "calibration run of $1 steps"
    end=$(date +%s.%N)
    rm -rf "$work/calib"
    /usr/bin/python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$begin" "$end"
  }
  local short long
  short=$(_run_steps 20) long=$(_run_steps 120)
  /usr/bin/python3 -c "import sys; t, lo, s, l = map(float, sys.argv[1:]); \
print(int(max(lo, min(20000, round(t / max((l - s) / 100, 1e-4))))))" "$seconds" "$min" "$short" "$long"
}

