#!/usr/bin/env python3
"""Scaling benchmark: trains one recipe (default recipes/tiny-moe.yaml) for a few steps under
parallel layouts of 1, 2, 4 and 8 ranks (mpirun) and prints one row per layout: tokens/s (median
over the steps after warm-up, pooled over --repeats runs), speed-up against the 1-rank layout,
the measured and theoretical pipeline bubble, and exposed vs total communication time per step.

Layout names are pp<P>_dp<D>_ep<E>_mb<M>_<schedule>[_v<V>]; --layouts accepts any such name, not
only the defaults. Rows go to stdout and, as JSON lines, to --out. A failed run prints its last
output lines; the script then goes on and exits non-zero at the end.

Contract with `tessera train`: run.dir/metrics.jsonl holds one JSON object per step with
tokens_per_s, step_s, exposed_comm_s, comm_s (per rank, averaged over the ranks) and
bubble_fraction, and
run.dir/logs/rank-0.log says "schedule <name> (theoretical bubble X)" (closed form) or
"schedule <name> (simulated bubble X)" (the registry's simulation, e.g. dualpipev)."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

kWarmupSteps = 2  # first steps pay for allocation and oneDNN primitive creation
kTailLines = 30   # output lines shown for a failed run
kLayoutRe = re.compile(
    r"^pp(\d+)_dp(\d+)_ep(\d+)_mb(\d+)_(gpipe|1f1b|interleaved|zb1p|dualpipev|dualpipe)(?:_v(\d+))?$")
kTheoryRe = re.compile(r"schedule (\S+) \((?:theoretical|simulated) bubble ([0-9.eE+-]+)\)")


def layout_name(pp, dp, ep, mb, schedule="1f1b", v=1):
    return f"pp{pp}_dp{dp}_ep{ep}_mb{mb}_{schedule}" + (f"_v{v}" if v > 1 else "")


# tiny-moe has 2 layers (pp <= 2) and global_batch 16 (divisible by dp * mb).
DEFAULT_LAYOUTS = [
    layout_name(1, 1, 1, 1),
    layout_name(1, 2, 1, 1),
    layout_name(1, 2, 2, 1),
    layout_name(2, 1, 1, 4),
    layout_name(1, 4, 4, 1),
    layout_name(2, 2, 2, 2),
    layout_name(2, 2, 1, 4, "zb1p"),
    layout_name(1, 8, 8, 1),
    layout_name(2, 4, 2, 2),
    layout_name(2, 4, 4, 2),
]


def parse_layout(name):
    m = kLayoutRe.match(name)
    if not m:
        raise ValueError(f"bad layout name '{name}': expected pp<P>_dp<D>_ep<E>_mb<M>_<gpipe|1f1b|"
                         f"interleaved|zb1p|dualpipev|dualpipe>[_v<V>], e.g. pp2_dp2_ep1_mb4_zb1p")
    pp, dp, ep, mb = (int(m.group(i)) for i in range(1, 5))
    return {"name": name, "pp": pp, "dp": dp, "ep": ep, "mb": mb, "schedule": m.group(5),
            "v": int(m.group(6) or 1), "ranks": pp * dp}


def train(args, lay):
    """Runs one layout; returns (metrics records, rank-0 log text) or raises RuntimeError."""
    run_dir = os.path.join(args.work, lay["name"])
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"run.dir={run_dir}", f"train.steps={args.steps}", "checkpoint.every_steps=0",
            "train.eval_every=0", "train.eval_batches=1", "logging.every_steps=100",
            "run.cpu_threads=1", f"parallel.pp={lay['pp']}", f"parallel.dp={lay['dp']}",
            f"parallel.ep={lay['ep']}", f"parallel.micro_batches={lay['mb']}",
            f"parallel.schedule={lay['schedule']}", f"parallel.virtual_stages={lay['v']}"]
    if args.data:
        sets.append(f"data.path={args.data}")
    cmd = [args.tessera, "train", args.recipe]
    for s in sets:
        cmd += ["--set", s]
    if lay["ranks"] > 1:
        cmd = [args.mpirun, "--oversubscribe", "-np", str(lay["ranks"]),
               "--mca", "btl_vader_single_copy_mechanism", "none"] + cmd
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=args.timeout, env=env)
        output, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
        rc = f"timeout after {args.timeout} s"
    if rc != 0:
        tail = "\n".join(output.splitlines()[-kTailLines:])
        raise RuntimeError(f"exited {rc}\n  $ {' '.join(cmd)}\n{tail}")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    with open(metrics_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if len(records) != args.steps:
        raise RuntimeError(f"{metrics_path} has {len(records)} step lines, expected {args.steps}")
    with open(os.path.join(run_dir, "logs", "rank-0.log")) as f:
        log = f.read()
    return records, log


def summarize(lay, runs, log):
    """runs: one metrics list per repeat; statistics pool the post-warm-up steps of all repeats."""
    per_repeat = [[r for r in records if r["step"] > kWarmupSteps] for records in runs]
    steady = [r for rep in per_repeat for r in rep]
    m = kTheoryRe.search(log)
    if not m:
        raise RuntimeError("rank-0.log lacks 'schedule <name> (theoretical|simulated bubble X)'")
    exposed = statistics.mean(r["exposed_comm_s"] for r in steady)
    total = statistics.mean(r["comm_s"] for r in steady)
    return {
        "layout": lay["name"], "ranks": lay["ranks"], "pp": lay["pp"], "dp": lay["dp"],
        "ep": lay["ep"], "micro_batches": lay["mb"], "schedule": m.group(1),
        "virtual_stages": lay["v"], "repeats": len(runs), "steps_measured": len(steady),
        "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
        "tokens_per_s_median_per_repeat": [statistics.median(r["tokens_per_s"] for r in rep)
                                           for rep in per_repeat],
        "step_s_median": statistics.median(r["step_s"] for r in steady),
        "bubble_measured_mean": statistics.mean(r["bubble_fraction"] for r in steady),
        "bubble_theoretical": float(m.group(2)),
        "exposed_comm_s_per_step": exposed, "comm_s_per_step": total,
        "exposed_over_total": exposed / total if total > 0 else None,
    }


kHeader = (f"{'ranks':>5} {'pp/dp/ep/mb/schedule':<22} {'tok/s':>8} {'speedup':>7} {'bubble':>6} "
           f"{'theory':>6} {'exp.comm':>9} {'tot.comm':>9} {'exp/tot':>7}")


def format_row(row):
    sched = row["schedule"] + (f"/v{row['virtual_stages']}" if row["virtual_stages"] > 1 else "")
    lay = f"{row['pp']}/{row['dp']}/{row['ep']}/{row['micro_batches']}/{sched}"
    speedup = "-" if row["speedup_vs_1_rank"] is None else f"{row['speedup_vs_1_rank']:.2f}x"
    frac = "-" if row["exposed_over_total"] is None else f"{row['exposed_over_total']:.2f}"
    return (f"{row['ranks']:>5} {lay:<22} {row['tokens_per_s_median']:>8.0f} {speedup:>7} "
            f"{row['bubble_measured_mean']:>6.3f} {row['bubble_theoretical']:>6.3f} "
            f"{row['exposed_comm_s_per_step']:>9.4f} {row['comm_s_per_step']:>9.4f} {frac:>7}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=os.environ.get("TESSERA", "build/tessera"))
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--recipe", default="recipes/tiny-moe.yaml")
    ap.add_argument("--data", help="override the recipe's data.path")
    ap.add_argument("--steps", type=int, default=12, help="train.steps per layout (first 2 are skipped)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per layout, pooled (oversubscribed runs on 2 cores are noisy)")
    ap.add_argument("--ranks", default="1,2,4,8", help="comma list of world sizes to run")
    ap.add_argument("--layouts", help="comma list of layout names (default: the built-in list)")
    ap.add_argument("--work", default="runs/bench-scaling", help="per-layout run directories go here")
    ap.add_argument("--out", default="runs/bench-scaling/results.jsonl")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per layout")
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit(f"--repeats {args.repeats}: need at least 1")
    if args.steps <= kWarmupSteps:
        sys.exit(f"--steps {args.steps}: need more than the {kWarmupSteps} warm-up steps")
    if not os.access(args.tessera, os.X_OK):
        sys.exit(f"tessera binary '{args.tessera}' is not executable (set --tessera or $TESSERA)")
    try:
        ranks = {int(r) for r in args.ranks.split(",") if r}
        layouts = [parse_layout(n) for n in (args.layouts.split(",") if args.layouts else DEFAULT_LAYOUTS)]
    except ValueError as e:
        sys.exit(f"bad --ranks/--layouts: {e}")
    layouts = [l for l in layouts if l["ranks"] in ranks]
    if not layouts:
        sys.exit(f"no layout has --ranks {args.ranks}")
    layouts.sort(key=lambda l: l["ranks"])  # the 1-rank baseline first

    cores = len(os.sched_getaffinity(0))  # what `nproc` reports
    print(f"scaling bench: {args.recipe}, {args.repeats} x {args.steps} steps per layout (median/mean "
          f"over steps {kWarmupSteps + 1}..{args.steps} of every repeat), run.cpu_threads=1, "
          f"tessera {args.tessera}")
    print(f"this machine has {cores} cores (nproc): runs with more than {cores} ranks are "
          f"oversubscribed and measure correctness and overheads, not scaling")
    print("bubble: measured mean / theoretical; comm: per-rank mean of exposed (compute thread waited) and "
          "total (post-to-completion) seconds per step")
    print(kHeader, flush=True)

    os.makedirs(args.work, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    failures, base, start = [], None, time.time()
    with open(args.out, "w") as out:
        for lay in layouts:
            t0 = time.time()
            try:
                runs = []
                for _ in range(args.repeats):
                    records, log = train(args, lay)
                    runs.append(records)
                row = summarize(lay, runs, log)
            except (RuntimeError, OSError, ValueError, KeyError) as e:
                print(f"FAIL {lay['name']}: {e}", flush=True)
                failures.append(lay["name"])
                continue
            if lay["ranks"] == 1 and base is None:
                base = row["tokens_per_s_median"]
            row["speedup_vs_1_rank"] = row["tokens_per_s_median"] / base if base else None
            row["wall_s"] = round(time.time() - t0, 2)
            row["cores"] = cores
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(format_row(row), flush=True)
    print(f"{len(layouts) - len(failures)}/{len(layouts)} layouts in {time.time() - start:.1f} s; "
          f"rows in {args.out}")
    if failures:
        sys.exit(f"FAILED layouts: {', '.join(failures)}")


if __name__ == "__main__":
    main()
