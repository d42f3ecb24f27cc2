#!/usr/bin/env python3
"""Overlap benchmark (issue: DualPipe): trains recipes/bench-moe.yaml widened so that its expert
all-to-all is comparable to its compute, over K emulated nodes with shaped links
(cluster/emulate_nodes.sh), under several schedules at the same world size, and prints one row
per run:

  tokens/s (median over the steps after warm-up), the measured bubble and the registry's
  prediction, expert all-to-all time per step (summed post-to-completion time of the EP
  exchanges, averaged over ranks), exposed all-to-all (time the compute thread waited on them)
  and its share, and bytes the expert exchanges sent across nodes per step.

Each layout runs with node-aware dispatch on, and the dualpipev rows also with FB overlap off
(parallel.overlap=false: the same FB pairs as F then B) and with node-aware dispatch off, side
by side in the same invocation. dualpipe runs where pp is even (its stages mirror).

--balanced routes every token to every expert (top_k = n_experts): expert loads are equal, so a
rank never waits for a busier peer and the exposed share measures communication alone (with
learned routing, a few steps in, loads differ by 2-4x and the lighter ranks' waits for the
loaded one count as exposed).

Rows go to stdout and, as JSON lines, to --out. Report the CPU model with the figures: on a
2-core machine compute, progress threads and the emulated links' kernel work share the cores,
so exposed communication includes time a rank waited for a core.

Contract with `tessera train`: run.dir/metrics.jsonl holds per-step tokens_per_s,
expert_comm_s, expert_exposed_comm_s, bubble_fraction, bubble_predicted and
expert_cross_node_bytes."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

kWarmupSteps = 2


def layouts(nodes, mb, ranks):
    """(name, pp, dp, ep, mb) with the EP group spanning every node, `ranks` ranks in all."""
    rows = [(f"pp1_dp{ranks}_ep{ranks}_mb{mb}", 1, ranks, ranks, mb)]
    if nodes == 4 and ranks == 4:  # one rank per node: a stage's EP pair spans two nodes
        rows.append((f"pp2_dp2_ep2_mb{mb}", 2, 2, 2, mb))
    return rows


def ep_nodes(nodes, ep, ranks):
    """Nodes one EP group spans: stage-major ranks put an EP group on ep consecutive ranks, and
    the launcher places ranks / nodes consecutive ranks on each node."""
    per_node = ranks // nodes
    return -(-ep // per_node) if per_node < ep else 1


def run(args, nodes, name, pp, dp, ep, mb, schedule, extra):
    run_dir = os.path.join(args.work, f"n{nodes}_{name}_{schedule}" + "".join(
        "_" + e.split(".")[-1].replace("=", "") for e in extra))
    shutil.rmtree(run_dir, ignore_errors=True)
    groups = ep_nodes(nodes, ep, args.ranks)
    sets = [f"run.dir={run_dir}", f"data.path={args.data}", f"train.steps={args.steps}",
            "checkpoint.every_steps=0", "checkpoint.final=false", f"parallel.pp={pp}",
            f"parallel.dp={dp}", f"parallel.ep={ep}", f"parallel.micro_batches={mb}",
            f"parallel.schedule={schedule}", f"model.dim={args.dim}",
            f"model.moe_inter_dim={args.dim}", f"model.n_layers={args.layers}",
            f"model.n_group={groups}",
            f"model.topk_group={groups if args.balanced else max(1, groups // 2)}",
            f"train.global_batch={dp * mb}", f"train.seq_len={args.seq_len}"] + extra
    if args.balanced:  # every token to every expert: equal expert loads, so no rank waits for a
        sets.append(f"model.top_k={args.experts}")  # busier one (skew is not exposed comm)
    sets.append(f"model.n_experts={args.experts}")
    cmd = [args.emulate, "--nodes", str(nodes), "--ranks-per-node", str(args.ranks // nodes),
           "--rate", args.rate, "--", args.tessera, "train", args.recipe]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=args.timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        return {"error": f"exit {proc.returncode}: {tail}"}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f][kWarmupSteps:]
    med = lambda k: statistics.median(s.get(k, 0.0) for s in steps)
    a2a, exposed = med("expert_comm_s"), med("expert_exposed_comm_s")
    return {"tokens_per_s": med("tokens_per_s"), "bubble": med("bubble_fraction"),
            "bubble_predicted": steps[0].get("bubble_predicted"), "a2a_s": a2a,
            "exposed_a2a_s": exposed, "exposed_share": exposed / a2a if a2a > 0 else 0.0,
            "cross_node_mb": med("expert_cross_node_bytes") / 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--recipe", default="recipes/bench-moe.yaml")
    ap.add_argument("--emulate", default="cluster/emulate_nodes.sh")
    ap.add_argument("--data", default="data-cache/markov-v256-o1")
    ap.add_argument("--work", default="runs/overlap-bench")
    ap.add_argument("--nodes", default="2,4", help="emulated node counts (each dividing --ranks)")
    ap.add_argument("--ranks", type=int, default=4,
                    help="ranks in all: 4 (pp1 dp4 ep4, and pp2 dp2 ep2 on 4 nodes) or 2 (pp1 "
                         "dp2 ep2, one rank per core on a 2-core machine)")
    ap.add_argument("--rate", default="1gbit", help="each node's link rate (tc units)")
    ap.add_argument("--schedules", default="1f1b,zb1p,dualpipev,dualpipe")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--dim", type=int, default=384, help="model width (and expert width)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--experts", type=int, default=8, help="routed experts (model.n_experts)")
    ap.add_argument("--micro-batches", type=int, default=4, help="per replica per step")
    ap.add_argument("--balanced", action="store_true",
                    help="route every token to every expert (top_k = n_experts): equal loads, so "
                         "the exposed share measures communication, not load imbalance")
    ap.add_argument("--out", default="", help="also append JSON lines here")
    args = ap.parse_args()
    if args.ranks not in (2, 4):
        ap.error(f"--ranks must be 2 or 4, got {args.ranks}")
    for n in args.nodes.split(","):
        if not n.isdigit() or int(n) < 1 or args.ranks % int(n) != 0:
            ap.error(f"--nodes: each count must be >= 1 and divide --ranks {args.ranks}, got '{n}'")
    os.makedirs(args.work, exist_ok=True)
    if not os.path.isfile(os.path.join(args.data, "manifest.yaml")):
        subprocess.run([args.tessera, "prepare", "synthetic", "--vocab", "256", "--order", "1",
                        "--tokens", "2000000", "--seed", "1", "--out", args.data, "--quiet"],
                       check=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown CPU")
    print(f"# {cpu}, {os.cpu_count()} cores; links {args.rate}; width {args.dim}, "
          f"{args.layers} layers, seq {args.seq_len}, {args.experts} experts"
          + (", every token to every expert (balanced)" if args.balanced else ""))
    header = (f"{'nodes':>5} {'layout':<18} {'schedule':<10} {'variant':<14} {'tok/s':>8} "
              f"{'bubble':>7} {'predict':>7} {'a2a s':>7} {'exposed':>8} {'share':>6} "
              f"{'xnode MB':>9}")
    print(header)
    failures = 0
    for nodes in (int(n) for n in args.nodes.split(",")):
        for name, pp, dp, ep, mb in layouts(nodes, args.micro_batches, args.ranks):
            for schedule in args.schedules.split(","):
                variants = [("", [])]
                if schedule == "dualpipev":
                    variants += [("no overlap", ["parallel.overlap=false"]),
                                 ("flat dispatch", ["parallel.node_aware_dispatch=off"])]
                for label, extra in variants:
                    if schedule == "dualpipe" and pp % 2 != 0:
                        r = {"error": "skipped: dualpipe needs an even parallel.pp"}
                    else:
                        r = run(args, nodes, name, pp, dp, ep, mb, schedule, extra)
                    row = {"nodes": nodes, "layout": name, "schedule": schedule,
                           "variant": label or "overlap", "cpu": cpu, "rate": args.rate, **r}
                    if "error" in r:
                        print(f"{nodes:>5} {name:<18} {schedule:<10} {row['variant']:<14} "
                              f"{r['error']}")
                        failures += not r["error"].startswith("skipped")
                    else:
                        pred = r["bubble_predicted"]
                        print(f"{nodes:>5} {name:<18} {schedule:<10} {row['variant']:<14} "
                              f"{r['tokens_per_s']:>8.0f} {r['bubble']:>7.3f} "
                              f"{pred if pred is not None else float('nan'):>7.3f} "
                              f"{r['a2a_s']:>7.3f} {r['exposed_a2a_s']:>8.3f} "
                              f"{r['exposed_share']:>6.1%} {r['cross_node_mb']:>9.2f}", flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(row) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
