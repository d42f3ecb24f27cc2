#!/usr/bin/env bash
# tessera submit on the private Slurm: a 4-task tiny run (dp 4, ep 2) goes through sbatch and srun
# to completion: DONE, every step's metrics, a checkpoint, one log per rank whose layout line
# shows the rank layout taken from Slurm's variables (4 ranks on the node). Its run.dir holds
# $(...) and a backtick, which must stay literal.
source "$(dirname "$0")/slurm_lib.sh"
run_dir="$work/run-"'$(touch${IFS}PWN)-`touch${IFS}PWN2`'
t0=$SECONDS
id=$("$tessera" submit "$recipe" "${tiny[@]}" --set "run.dir=$run_dir" --set train.steps=6 \
     --set checkpoint.every_steps=3 --set parallel.dp=4 --set parallel.ep=2 \
     --set slurm.ntasks_per_node=4) || { fail "submit"; finish submit; }
echo "job $id"
wait_job "$id" 180 || fail "job $id did not finish"
echo "job took $((SECONDS - t0)) s"
log="$run_dir/job/slurm-$id.out"
cat "$log" | grep -v "^tessera: step" | tail -20
[ -e "$run_dir/DONE" ] || fail "no DONE"
[ "$(job_states "$id" | tail -1)" = COMPLETED ] || fail "job state: $(job_states "$id")"
grep -q "training complete" "$log" || fail "job log lacks 'training complete'"
steps=$(metric_by_step loss "$run_dir/metrics.jsonl" | wc -l)
[ "$steps" = 6 ] || fail "$steps steps in metrics.jsonl, expected 6"
[ -e "$run_dir/checkpoints/latest" ] || fail "no checkpoints/latest"
ls "$run_dir/checkpoints" | grep -q step-00000006 || fail "no step-6 checkpoint: $(ls "$run_dir/checkpoints")"
for r in 0 1 2 3; do
  [ -f "$run_dir/logs/rank-$r.log" ] || fail "no logs/rank-$r.log"
done
grep -q "of 4: world=4 pp=1 dp=4 ep=2 .*ranks/node=4" "$run_dir/logs/rank-0.log" ||
  fail "rank 0 layout line: $(grep -m1 'world=' "$run_dir/logs/rank-0.log")"
[ -f "$run_dir/job/recipe.yaml" ] || fail "no pinned recipe"
[ -z "$(find "$work" -name 'PWN*')" ] || fail "a command embedded in run.dir ran"
finish "submit through srun ($((SECONDS - t0)) s)"
