#!/usr/bin/env bash
# fp32 vs bf16 vs fp8 (V3's fine-grained recipe, emulated exactly on the CPU) on the tiny
# DeepSeek-V3 recipe, one after the other in one run, same seed and data: final training and
# validation loss (fp8 relative to bf16: V3's report claims below 0.25%), tokens/s, peak memory,
# and the loss curves on one PNG (docs/precision-loss.png by default).
# Usage: bench/run_precision.sh [build dir, default build] [steps, default 2000] [png]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-2000}
png=${3:-docs/precision-loss.png}
recipe=recipes/deepseek-v3-tiny.yaml
data=data-cache/markov-v64-o1
work=runs/precision-bench
[ -d "$data" ] || "$build/tessera" prepare synthetic --vocab 64 --order 1 --tokens 2000000 --seed 1 \
  --out "$data" --quiet
rm -rf "$work" && mkdir -p "$work"
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $recipe, $steps steps, one process, 1 thread"
for p in fp32 bf16 fp8; do
  echo "== precision.compute=$p"
  "$build/tessera" train "$recipe" --set run.dir="$work/$p" --set precision.compute="$p" \
    --set train.steps="$steps" --set train.eval_every=500 --set checkpoint.every_steps=0 \
    --set checkpoint.final=false --set logging.every_steps=500 --set data.path="$data" |
    grep -E "^step|done"
done
/usr/bin/python3 - "$work" "$png" <<'PY'
import json, statistics, subprocess, sys
work, png = sys.argv[1], sys.argv[2]
rows = {p: [json.loads(l) for l in open(f"{work}/{p}/metrics.jsonl")] for p in ("fp32", "bf16", "fp8")}
final = {}
print(f"{'precision':<10}{'train loss (last 100)':>22}{'val_loss':>10}{'tokens/s':>10}{'peak MiB':>10}")
for p, r in rows.items():
    tail = [x["loss"] for x in r[-100:]]
    val = [x["val_loss"] for x in r if x.get("val_loss") is not None][-1]
    final[p] = (statistics.mean(tail), val)
    tps = statistics.median(x["tokens_per_s"] for x in r[10:])
    print(f"{p:<10}{final[p][0]:>22.5f}{val:>10.5f}{tps:>10.0f}{max(x['peak_rss_mib'] for x in r):>10.1f}")
for a, b in (("fp8", "bf16"), ("bf16", "fp32"), ("fp8", "fp32")):
    print(f"{a} vs {b}: train loss {100 * (final[a][0] / final[b][0] - 1):+.3f}%, "
          f"val_loss {100 * (final[a][1] / final[b][1] - 1):+.3f}%")
# Curves: a 50-step moving average of the training loss, and each precision's relative to fp32's.
avg = {}
for p, r in rows.items():
    loss = [x["loss"] for x in r]
    avg[p] = {r[i]["step"]: statistics.mean(loss[i - 49:i + 1]) for i in range(49, len(loss))}
    with open(f"{work}/{p}.dat", "w") as f:
        for step, v in avg[p].items():
            f.write(f"{step} {v} {100 * (v / avg['fp32'][step] - 1)}\n")
plot = (f"set terminal pngcairo size 900,700; set output '{png}'; set multiplot layout 2,1; "
        "set title 'tiny DeepSeek-V3 (MLA, MoE, MTP): training loss, 50-step average'; "
        "set xlabel 'step'; set ylabel 'loss (CE + aux + MTP)'; set key top right; "
        + "plot " + ", ".join(f"'{work}/{p}.dat' using 1:2 with lines lw 2 title '{p}'" for p in rows)
        + "; set title 'relative to fp32 (%)'; set ylabel '%'; "
        + "plot " + ", ".join(f"'{work}/{p}.dat' using 1:3 with lines lw 1 lt {lt} title '{p}'"
                              for lt, p in ((2, "bf16"), (3, "fp8")))
        + "; unset multiplot")
subprocess.run(["gnuplot", "-e", plot], check=True)
print("plot:", png)
PY
