#!/usr/bin/env bash
# One run at a time owns a run.dir, end to end: a fresh run into a used run.dir is refused (exit 2,
# naming --resume auto and --overwrite) and changes nothing; --overwrite starts over; a run.dir
# whose lock another process holds is refused (exit 1) naming the holder's host and pid, on every
# rank of a 2-rank mpirun too (the message once, no rank left waiting); a live run's lock names its
# pid and dies with it (SIGKILL); run.cpu_threads above 4 x the hardware threads is refused;
# --resume auto with nothing to resume keeps the earlier attempt's metrics aside.
# No step depends on timing: the holders are flock(1) or a training process stopped with SIGSTOP.
# Usage: cli_run_dir_test.sh TESSERA MPIRUN RECIPE WORKDIR
set -uo pipefail
tessera=$1 mpirun=$2 recipe=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
CHECK_TIMEOUT=180 CHECK_TAIL=8
# shellcheck source-path=SCRIPTDIR source=cli_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_check.sh"  # check, expect, check_summary
live_pid=""
trap '[ -n "$live_pid" ] && kill -KILL "$live_pid" 2>/dev/null' EXIT

count_in_out() { grep -cF -- "$1" <<<"$out"; }
lines() { wc -l < "$1"; }

check prepare 0 "tokens" "$tessera" prepare synthetic --vocab 64 --order 1 --tokens 20000 --seed 1 \
  --out "$work/data"
small=(--set model.dim=32 --set model.n_heads=2 --set model.inter_dim=48 --set model.moe_inter_dim=16
       --set train.seq_len=16 --set train.global_batch=4 --set train.eval_every=0
       --set train.eval_batches=1 --set data.path="$work/data" --set checkpoint.every_steps=1)
mpi=("$mpirun" --oversubscribe -np 2 --mca btl_vader_single_copy_mechanism none)

check help_lists_overwrite 0 "--overwrite" "$tessera" train --help
check first_run 0 "step 2/2" "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 \
  --set run.dir="$work/run"

# A fresh run into it: refused, naming the directory and both ways on; nothing removed.
check fresh_refused 2 "run.dir $work/run already holds a training run" \
  "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 --set run.dir="$work/run"
check fresh_refused_says_how 2 "pass \`--resume auto\` to continue it, or \`--overwrite\`" \
  "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 --set run.dir="$work/run"
expect refused_run_kept_its_checkpoints test -f "$work/run/checkpoints/step-00000002/model.h5"
expect refused_run_kept_its_metrics [ "$(lines "$work/run/metrics.jsonl")" -eq 2 ]
check fresh_refused_on_every_rank 2 "already holds a training run" \
  "${mpi[@]}" "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 --set run.dir="$work/run" \
  --set parallel.dp=2
expect fresh_refusal_printed_once [ "$(count_in_out "already holds a training run")" -eq 1 ]
check overwrite_with_resume_is_usage 2 "--overwrite starts over and --resume continues" \
  "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/run" --overwrite --resume auto

check resume_auto_continues 0 "resumed from $work/run/checkpoints/step-00000002" \
  "$tessera" train "$recipe" "${small[@]}" --set train.steps=3 --set run.dir="$work/run" --resume auto
check overwrite_starts_over 0 "step 1/1" "$tessera" train "$recipe" "${small[@]}" --set train.steps=1 \
  --set run.dir="$work/run" --overwrite
expect overwrite_removed_old_checkpoints [ "$(ls "$work/run/checkpoints")" = "$(printf 'latest\nstep-00000001')" ]
expect overwrite_restarted_metrics [ "$(lines "$work/run/metrics.jsonl")" -eq 1 ]

# Another process holds the lock (flock(1) around the command: the file names a holder).
lock=$work/run/.tessera.lock
echo "otherhost 4242" > "$lock"
check locked_refused 1 "run.dir $work/run is in use by another training run (host otherhost, pid 4242" \
  flock "$lock" "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/run" --resume auto
expect locked_run_trained_nothing [ "$(lines "$work/run/metrics.jsonl")" -eq 1 ]
# Two ranks: rank 0 finds the lock taken; both exit 1, the message printed once, no rank started.
mkdir -p "$work/mpi-run" && echo "otherhost 4343" > "$work/mpi-run/.tessera.lock"
check locked_refused_on_every_rank 1 "(host otherhost, pid 4343" \
  flock "$work/mpi-run/.tessera.lock" "${mpi[@]}" "$tessera" train "$recipe" "${small[@]}" \
  --set train.steps=2 --set run.dir="$work/mpi-run" --set parallel.dp=2
expect lock_refusal_printed_once [ "$(count_in_out "is in use by another training run")" -eq 1 ]
expect no_rank_started [ ! -e "$work/mpi-run/logs" ]
check unlocked_two_ranks_train 0 "step 2/2" "${mpi[@]}" "$tessera" train "$recipe" "${small[@]}" \
  --set train.steps=2 --set run.dir="$work/mpi-run" --set parallel.dp=2

# A live run holds the lock with its own host and pid; stopped (SIGSTOP) it keeps it, killed
# (SIGKILL, as a crash) it lets go.
"$tessera" train "$recipe" "${small[@]}" --set train.steps=1000000 --set checkpoint.every_steps=0 \
  --set checkpoint.final=false --set run.dir="$work/live" > "$work/live.out" 2>&1 &
live_pid=$!
for _ in $(seq 1 1200); do  # until the run wrote its lock (at most 120 s)
  grep -qs " $live_pid\$" "$work/live/.tessera.lock" && break
  kill -0 "$live_pid" 2>/dev/null || break
  sleep 0.1
done
kill -STOP "$live_pid" 2>/dev/null
check live_lock_names_pid 1 "(host $(hostname), pid $live_pid," "$tessera" train "$recipe" "${small[@]}" \
  --set run.dir="$work/live" --resume auto
kill -KILL "$live_pid" 2>/dev/null; wait "$live_pid" 2>/dev/null; live_pid=""
check lock_freed_by_crash 0 "step 1/1" "$tessera" train "$recipe" "${small[@]}" --set train.steps=1 \
  --set run.dir="$work/live" --overwrite

# run.cpu_threads beyond 4 x the hardware threads (the recipe's bound is 1024).
hw=$(getconf _NPROCESSORS_ONLN)
threads=$((4 * hw + 1))
if [ "$threads" -le 1024 ]; then
  check cpu_threads_over_hardware 2 "run.cpu_threads: $threads is more than 4 x the $hw hardware thread(s)" \
    "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/threads" --set run.cpu_threads="$threads"
  check cpu_threads_on_every_rank 2 "run.cpu_threads: $threads" "${mpi[@]}" "$tessera" train "$recipe" \
    "${small[@]}" --set run.dir="$work/threads" --set run.cpu_threads="$threads" --set parallel.dp=2
  expect cpu_threads_printed_once [ "$(count_in_out "run.cpu_threads: $threads")" -eq 1 ]
  check eval_cpu_threads_over_hardware 2 "run.cpu_threads: $threads" "$tessera" eval "$recipe" \
    "${small[@]}" --set run.cpu_threads="$threads" --checkpoint "$work/run" --data "$work/data"
else
  echo "skip cpu_threads_over_hardware: $hw hardware threads allow the recipe's maximum"
fi
check cpu_threads_absurd 2 "run.cpu_threads: must be in [1, 1024], got 100000" \
  "$tessera" train "$recipe" "${small[@]}" --set run.dir="$work/threads" --set run.cpu_threads=100000

# --resume auto with metrics but no checkpoint (an attempt ended before its first save, as a
# requeued Slurm job's can): it starts fresh, and the earlier lines are kept beside, not lost.
check no_checkpoint_first 0 "step 2/2" "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 \
  --set run.dir="$work/no-ckpt"
rm -r "$work/no-ckpt/checkpoints"
check resume_without_checkpoint_starts_fresh 0 "metrics of the attempt without a checkpoint are kept in $work/no-ckpt/metrics.jsonl.1" \
  "$tessera" train "$recipe" "${small[@]}" --set train.steps=2 --set run.dir="$work/no-ckpt" --resume auto
expect earlier_metrics_kept [ "$(lines "$work/no-ckpt/metrics.jsonl.1")" -eq 2 ]
expect new_metrics_written [ "$(lines "$work/no-ckpt/metrics.jsonl")" -eq 2 ]

check_summary
