#!/usr/bin/env bash
# Starts a private single-node Slurm cluster (slurmctld + slurmd, and munged if no munge daemon
# answers) for tests: no systemd, no cgroups, 8 CPUs advertised on however many cores exist.
#   cluster/local-slurm/start.sh DIR     (DIR: state, logs, pid files and slurm.conf; created)
# Afterwards `source DIR/env.sh` points sbatch/srun/scontrol at it (SLURM_CONF) and
# cluster/local-slurm/stop.sh DIR stops every daemon this script started, by PID.
# Needs root (slurmd runs jobs as their users) and Debian's slurmctld slurmd slurm-client munge.
# Partitions: debug (default, preemptable: --requeue jobs are requeued) and high (preempts debug).
set -euo pipefail
dir=${1:?usage: start.sh STATE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -e "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
  echo "start.sh: a cluster already runs from $dir (stop it with stop.sh $dir)" >&2
  exit 1
fi
for tool in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged sinfo; do
  command -v "$tool" >/dev/null || { echo "start.sh: $tool not found (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "start.sh: must run as root (slurmd starts jobs as their users)" >&2; exit 1; }

# Whatever fails from here on, leave no daemon behind.
trap 'status=$?; if [ $status -ne 0 ]; then echo "start.sh: failed; stopping what started" >&2; "$here/stop.sh" "$dir" >&2 || true; fi' EXIT

rm -rf "$dir/state" "$dir/spool"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"

# Two free TCP ports (controller, slurmd), so several private clusters can coexist.
listening=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u || true)
port=""
for p in $(seq 16817 2 17815); do
  if ! grep -qx "$p" <<<"$listening" && ! grep -qx "$((p + 1))" <<<"$listening"; then port=$p; break; fi
done
[ -n "$port" ] || { echo "start.sh: no free port pair in 16817-17816" >&2; exit 1; }

host=$(hostname -s)
cat > "$dir/slurm.conf" <<CONF
# Written by cluster/local-slurm/start.sh: a private single-node test cluster.
ClusterName=tessera-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Credentials expire after 10 s: a requeued job restarts after ~11 s instead of 120 s.
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Advertise the configured CPUs, not the cores that exist: several ranks share 2 cores.
SlurmdParameters=config_overrides
MpiDefault=pmix
ReturnToService=2
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
KillWait=10
MinJobAge=300
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=30 State=UP PriorityTier=1 GraceTime=5
PartitionName=high Nodes=ALL MaxTime=30 State=UP PriorityTier=10 PreemptMode=OFF
CONF
printf 'export SLURM_CONF=%q\n' "$dir/slurm.conf" > "$dir/env.sh"
export SLURM_CONF=$dir/slurm.conf

# munge: reuse a running daemon; else start one and remember its pid for stop.sh.
rm -f "$dir/munged.pid"
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$dir/munged.pid"
  munge -n | unmunge >/dev/null
fi

/usr/sbin/slurmctld -c -i -f "$dir/slurm.conf"
/usr/sbin/slurmd -c -f "$dir/slurm.conf"
for _ in $(seq 100); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
if [ "$state" != idle ]; then
  echo "start.sh: node state '$state' after 20 s; see $dir/log/" >&2
  exit 1
fi
echo "start.sh: cluster up (SLURM_CONF=$dir/slurm.conf, ports $port/$((port + 1)))"
