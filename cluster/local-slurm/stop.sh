#!/usr/bin/env bash
# Stops the private cluster that start.sh started from DIR: cancels its jobs, then TERMs slurmd,
# slurmctld and (only if start.sh started it) munged by their pid files, KILLs after 10 s.
#   cluster/local-slurm/stop.sh DIR
set -uo pipefail
dir=${1:?usage: stop.sh STATE_DIR}
[ -d "$dir" ] || exit 0
export SLURM_CONF=$dir/slurm.conf

if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
  # Let the jobs' processes end before their slurmd goes (KillWait=10 s, then KILL).
  for _ in $(seq 150); do
    [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.1
  done
fi

# TERM every daemon at once (each takes 1-2 s to exit), then wait; KILL what is left after 10 s.
pids=()
names=()
for name in slurmd slurmctld munged; do
  file=$dir/$name.pid
  [ -s "$file" ] || continue
  pid=$(cat "$file")
  rm -f "$file"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    pids+=("$pid")
    names+=("$name")
  fi
done
for _ in $(seq 100); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && exit 0
  sleep 0.1
done
for i in "${!pids[@]}"; do
  if kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "stop.sh: ${names[$i]} (${pids[$i]}) ignored TERM for 10 s: KILL" >&2
    kill -KILL "${pids[$i]}" 2>/dev/null
  fi
done
exit 0
