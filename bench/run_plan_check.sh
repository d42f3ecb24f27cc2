#!/usr/bin/env bash
# The planner against measured runs on this machine, side by side in one run: each pass
# calibrates at each rank count used (`tessera plan calibrate`, all ranks measuring at once as
# they train), then for each layout of the benchmark model predicts (`tessera plan --json`),
# trains a few steps and compares the step time (median of the second half of the steps: the
# steady state a plan is for, where routing has settled; on bench-moe with EP the ranks' load
# imbalance is 1.2-1.4 in steps 3-8 and ~1.1 after step 14, and dp2 ep2's step 6% shorter) and
# the peak memory per rank (planned device memory vs the largest peak of any rank's backend
# allocations, the metrics' device_peak_mib; the peak resident set is shown beside it: it also
# holds the process itself, binary, libraries, MPI, HDF5, the loader's cache, oneDNN's kernels
# and heap).
# Usage: [PASSES=3] bench/run_plan_check.sh [build dir, default build] [steps, default 16]
# Run it on an otherwise idle machine: calibration and training must see the same cores.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-16}
tessera=$build/tessera
recipe=recipes/bench-moe.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
py=/usr/bin/python3
data=data-cache/markov-v256-o1
[ -d "$data" ] || "$tessera" prepare synthetic --vocab 256 --order 1 --tokens 2000000 --seed 1 \
  --out "$data" --quiet
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $recipe, $steps steps per layout"
# The benchmark model with every token sent to every expert (top_k = n_experts): balanced
# routing, as the planner prices it; its rows show the time model without the early steps'
# routing imbalance. Calibrated too (its expert GEMMs have other row counts).
balanced=$work/bench-moe-balanced.yaml
experts=$(sed -n 's/^  n_experts: *\([0-9]*\).*/\1/p' "$recipe")
sed "s/^  top_k: [0-9]*/  top_k: $experts/" "$recipe" > "$balanced"
grep -q "^  top_k: $experts\$" "$balanced" ||
  { echo "cannot make the balanced recipe from $recipe"; exit 1; }
calibrate() {  # PASS: calibrate at each rank count used, into $work/cal-NP-PASS.yaml
  local np
  for np in 2 4; do
    echo "# pass $1: calibrating with $np ranks ..."
    mpirun --oversubscribe -np "$np" "$tessera" plan calibrate "$recipe" "$balanced" \
      --out "$work/cal-$np-$1.yaml" > "$work/cal-$np-$1.log" 2>&1 ||
      { echo "calibration failed:"; tail -20 "$work/cal-$np-$1.log"; exit 1; }
  done
}
# Step time is predicted twice: for balanced routing, and with the routing imbalance the run
# measured (its metrics' expert_ep_rank_load_max_over_mean, median of the steps compared, given
# to `tessera plan --expert-imbalance`): the first is what a user plans before any run, the
# second checks the time model itself, the run's own routing given. Each pass (PASSES, default
# 3) calibrates, then runs every layout once and compares it with that calibration's plan: this
# machine's pace drifts by minutes (a layout's step moved up to 19% between passes, the same
# calibration's attention and network figures 25% between runs), so a plan is only compared with
# runs of its own minutes. The table has, per layout, the median over the passes of the error,
# the median plan and measured step, and their spreads (largest - smallest, over the median).
passes=${PASSES:-3}
results=$work/results.jsonl
runs=0
check() {  # NAME NP OVERRIDES...   (the recipe: $check_recipe, else the benchmark model)
  local name=$1 np=$2 recipe=${check_recipe:-$recipe}; shift 2
  runs=$((runs + 1))
  local run=$work/run-$runs  # one directory per run ($RANDOM names collided once in 36 runs)
  "$tessera" plan "$recipe" --cluster "$work/cal-$np-$pass.yaml" --json "$@" > "$run.plan.json"
  mpirun --oversubscribe -np "$np" "$tessera" train "$recipe" --set train.steps="$steps" \
    --set run.dir="$run" --set checkpoint.every_steps=0 --set checkpoint.final=false \
    --set train.eval_every=0 --set data.path="$data" "$@" > "$run.log" 2>&1 \
    || { echo "$name: training failed:"; tail -20 "$run.log"; exit 1; }
  local imbalance
  imbalance=$("$py" - "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step_s"' in l]
print("%.3f" % max(1.0, statistics.median(l["expert_ep_rank_load_max_over_mean"]
                                         for l in steps[len(steps) // 2:])))
PY
)
  "$tessera" plan "$recipe" --cluster "$work/cal-$np-$pass.yaml" --json \
    --expert-imbalance "$imbalance" "$@" > "$run.plan-imbalance.json"
  "$py" - "$name" "$np" "$run.plan.json" "$run/metrics.jsonl" "$run.plan-imbalance.json" \
    "$imbalance" >> "$results" <<'PY'
import json, statistics, sys
name, np, plan_path, metrics_path, imbalanced_path, imbalance = sys.argv[1:]
plan = json.load(open(plan_path))
steps = [json.loads(l) for l in open(metrics_path) if '"step_s"' in l]
print(json.dumps({
    "name": name, "np": np, "imbalance": float(imbalance),
    "measured": statistics.median(l["step_s"] for l in steps[len(steps) // 2:]),
    "pred": plan["step_s"], "pred_imbalance": json.load(open(imbalanced_path))["step_s"],
    "pred_mib": plan["peak_memory_gib"] * 1024,
    "alloc": max(l["device_peak_mib"] for l in steps),
    "rss": max(l["peak_rss_mib"] for l in steps)}))
PY
}
for pass in $(seq "$passes"); do
  calibrate "$pass"
  echo "# pass $pass of $passes: training ..."
  check_recipe=
  check "dp2"                          2 --set parallel.dp=2
  check "dp2 ep2"                      2 --set parallel.dp=2 --set parallel.ep=2
  check "pp2 mb4 1f1b"                 2 --set parallel.pp=2 --set parallel.micro_batches=4 \
    --set parallel.schedule=1f1b
  check "pp2 mb4 zb1p"                 2 --set parallel.pp=2 --set parallel.micro_batches=4 \
    --set parallel.schedule=zb1p
  check "pp2 mb4 dualpipev"            2 --set parallel.pp=2 --set parallel.micro_batches=4 \
    --set parallel.schedule=dualpipev
  check "pp2 v2 mb4 interleaved"       2 --set parallel.pp=2 --set parallel.micro_batches=4 \
    --set parallel.virtual_stages=2 --set parallel.schedule=interleaved
  check "pp2 dp2 ep2 mb4 1f1b"         4 --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 \
    --set parallel.micro_batches=4 --set parallel.schedule=1f1b
  check "pp2 dp2 ep2 mb4 dualpipev"    4 --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 \
    --set parallel.micro_batches=4 --set parallel.schedule=dualpipev
  check "pp2 dp2 mb4 zb1p"             4 --set parallel.pp=2 --set parallel.dp=2 \
    --set parallel.micro_batches=4 --set parallel.schedule=zb1p
  check "dp4 ep4"                      4 --set parallel.dp=4 --set parallel.ep=4
  check_recipe=$balanced
  check "dp2 ep2 balanced"             2 --set parallel.dp=2 --set parallel.ep=2
  check "dp4 ep4 balanced"             4 --set parallel.dp=4 --set parallel.ep=4
done
"$py" - "$results" "$(nproc)" <<'PY'
import collections, json, statistics, sys
cores = int(sys.argv[2])
runs = collections.OrderedDict()
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
print("%-28s %5s | %8s %6s %7s %5s %8s %7s | %8s %6s | %8s %9s %6s | %8s" % (
    "layout", "ranks", "pred s", "spread", "err", "imb", "pred s", "err", "meas s", "spread",
    "pred MiB", "alloc MiB", "err", "RSS MiB"))
for name, rs in runs.items():
    med = lambda values: statistics.median(values)
    spread = lambda values: (max(values) - min(values)) / med(values)
    measured = [r["measured"] for r in rs]
    pred, pred_imb = [r["pred"] for r in rs], [r["pred_imbalance"] for r in rs]
    err = med([p / m - 1 for p, m in zip(pred, measured)])  # each pass against its own plan
    err_imb = med([p / m - 1 for p, m in zip(pred_imb, measured)])
    alloc = max(r["alloc"] for r in rs)
    ranks = rs[0]["np"] + ("*" if int(rs[0]["np"]) > cores else " ")
    print("%-28s %5s | %8.3f %5.1f%% %+6.1f%% %5.2f %8.3f %+6.1f%% | %8.3f %5.1f%% | "
          "%8.1f %9.1f %+5.1f%% | %8.1f" % (
        name, ranks, med(pred), 100 * spread(pred), 100 * err,
        med([r["imbalance"] for r in rs]), med(pred_imb), 100 * err_imb, med(measured),
        100 * spread(measured), rs[0]["pred_mib"], alloc, 100 * (rs[0]["pred_mib"] / alloc - 1),
        max(r["rss"] for r in rs)))
if any(int(rs[0]["np"]) > cores for rs in runs.values()):
    print("* more ranks than the %d cores: the ranks time-share them; the planner shares the "
          "cores among the ranks computing at each moment of the pipeline and, with an "
          "imbalance, among the EP group's busiest and done ranks (ideal sharing), and prices "
          "the synchronisation loss of the group of every rank (its plan says so)" % cores)
PY
