#!/usr/bin/env python3
"""Convergence: the tiny recipe on order-1 Markov data reaches a validation loss within 0.05 nats of
the data's exact entropy floor. Also checks metrics.jsonl's per-step keys, the checkpoint layout,
and that `tessera eval` on the final checkpoint reproduces the final validation loss."""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import yaml

REQUIRED_KEYS = ["step", "loss", "lr", "grad_norm", "tokens_per_s", "expert_load_max_over_mean"]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        sys.exit(f"FAIL: command exited {proc.returncode}")
    return proc.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    data = os.path.join(args.work, "markov")
    run_dir = os.path.join(args.work, "run")
    run([args.tessera, "prepare", "synthetic", "--vocab", "64", "--order", "1", "--tokens", "2000000",
         "--seed", "1", "--out", data])
    with open(os.path.join(data, "manifest.yaml")) as f:
        manifest = yaml.safe_load(f)
    floor = float(manifest["entropy_rate_nats"])
    run([args.tessera, "train", args.recipe, "--set", f"data.path={data}", "--set", f"run.dir={run_dir}"])

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    problems = []
    with open(args.recipe) as f:
        recipe = yaml.safe_load(f)
    steps = recipe["train"]["steps"]
    mtp_depth = recipe["model"].get("mtp_depth", 0)
    if len(rows) != steps:
        problems.append(f"metrics.jsonl has {len(rows)} lines, expected {steps}")
    for key in REQUIRED_KEYS:
        if any(key not in r or r[key] is None for r in rows):
            problems.append(f"metrics.jsonl: some step lacks '{key}'")
    evals = [r for r in rows if "val_loss" in r]
    if not evals:
        sys.exit("FAIL: no validation loss in metrics.jsonl")
    final_val = evals[-1]["val_loss"]
    gap = final_val - floor
    print(f"entropy floor {floor:.4f}, final val_loss {final_val:.4f}, gap {gap:.4f} nats "
          f"(first loss {rows[0]['loss']:.4f}, ln V {math.log(64):.4f})")
    if not gap <= 0.05:
        problems.append(f"val_loss {final_val:.4f} is {gap:.4f} nats above the floor {floor:.4f} (> 0.05)")
    if mtp_depth > 0:
        # Depth k predicts t_{i+k+1} knowing t_{i+k}: on an order-1 source its floor is the same.
        if any(len(r.get("mtp_loss") or []) != mtp_depth for r in rows):
            problems.append(f"metrics.jsonl: some step lacks mtp_loss with {mtp_depth} depths")
        else:
            tail = rows[-20:]
            for d in range(mtp_depth):
                mean = sum(r["mtp_loss"][d] for r in tail) / len(tail)
                print(f"MTP depth {d + 1}: mean training loss of the last {len(tail)} steps {mean:.4f}")
                if not mean - floor <= 0.08:
                    problems.append(f"MTP depth {d + 1} loss {mean:.4f} is more than 0.08 nats above "
                                    f"the floor {floor:.4f}")

    ckpt = os.path.join(run_dir, "checkpoints", f"step-{steps:08d}", "model.h5")
    if not os.path.isfile(ckpt):
        problems.append(f"missing final checkpoint {ckpt}")
    out = run([args.tessera, "eval", args.recipe, "--checkpoint", os.path.join(run_dir, "checkpoints"),
               "--data", data, "--set", f"data.path={data}"])
    last = json.loads(out.strip().splitlines()[-1])
    if abs(last["loss"] - final_val) > 1e-4 * final_val:
        problems.append(f"eval loss {last['loss']} differs from the run's final val_loss {final_val}")
    if last["tokens"] <= 0:
        problems.append("eval reported no tokens")

    for p in problems:
        print("FAIL:", p)
    print("convergence:", "PASS" if not problems else f"FAIL ({len(problems)} problems)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
