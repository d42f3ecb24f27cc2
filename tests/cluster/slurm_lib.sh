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
