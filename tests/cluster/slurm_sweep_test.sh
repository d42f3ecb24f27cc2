#!/usr/bin/env bash
# tessera sweep on the private Slurm: 3 points (dp 1, dp 2, dp 2 with ep 2) as one job array
# (%2), then `tessera sweep report`: report.csv has one complete row per point with the right
# layout and world size, and the three PNGs are PNG files.
source "$(dirname "$0")/slurm_lib.sh"
cat > sweep.yaml <<YAML
base: $recipe
dir: $work/sweep
concurrency: 2
set:
  data.path: $data
  train.steps: 4
  train.eval_every: 0
  train.eval_batches: 1
  slurm.partition: debug
  slurm.ntasks_per_node: 2
  slurm.time: 5
  slurm.signal_seconds: 30
zip:
  parallel.dp: [1, 2, 2]
  parallel.ep: [1, 1, 2]
YAML
t0=$SECONDS
id=$("$tessera" sweep sweep.yaml) || { fail "sweep"; finish sweep; }
echo "job array $id"
grep -q '^#SBATCH --array=0-2%2$' sweep/job.sh || fail "job.sh lacks --array=0-2%2"
wait_job "$id" 180 || fail "array $id did not finish"
echo "array took $((SECONDS - t0)) s"
for i in 0 1 2; do
  [ -e "sweep/points/$i/run/DONE" ] || { fail "point $i not done"; tail -5 sweep/points/$i/slurm-*.out; }
  grep -q "array task $i" sweep/points/$i/slurm-"${id}"_$i.out || fail "point $i: no array task log"
done
"$tessera" sweep report sweep || fail "sweep report"
cat sweep/report.csv
/usr/bin/python3 - sweep/report.csv <<'PY' || fail "report.csv content"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 3, rows
want = [("pp1 dp1 ep1 1f1b mb1", "1"), ("pp1 dp2 ep1 1f1b mb1", "2"), ("pp1 dp2 ep2 1f1b mb1", "2")]
for row, (layout, world) in zip(rows, want):
    assert row["layout"] == layout and row["world"] == world, row
    assert row["status"] == "done" and row["steps"] == "4", row
    for key in ("tokens_per_s", "tokens_per_s_per_rank", "scaling_efficiency", "final_loss",
                "bubble_fraction", "exposed_comm_s"):
        float(row[key])
    assert abs(float(row["tokens_per_s"]) / int(world) - float(row["tokens_per_s_per_rank"])) < 1e-3 * float(row["tokens_per_s"])
assert float(rows[0]["scaling_efficiency"]) == 1.0
PY
for png in throughput scaling_efficiency loss; do
  head -c 8 "sweep/$png.png" 2>/dev/null | grep -q PNG || fail "sweep/$png.png is not a PNG"
done
finish "sweep as a job array + report ($((SECONDS - t0)) s)"
