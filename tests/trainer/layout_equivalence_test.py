#!/usr/bin/env python3
"""Layout equivalence: the same recipe and seed trained for 3 optimizer steps under every parallel
layout below (pipeline stages with each schedule, data-parallel replicas with ZeRO-1, expert
parallelism, gradient-accumulation micro-batches) gives the single-process run's per-step losses
and gradient norms, final validation loss (evaluated distributed) and final parameters (the
checkpoint every rank wrote its part of) within 1e-5 relative. FB pairs overlapped (the default)
and run F then B (parallel.overlap=false) must agree bit for bit.

Node-limited layouts (NODE_LAYOUTS) pretend one machine is several nodes
(parallel.ranks_per_node) and route with model.n_group = the nodes an EP group spans; they are
compared with a single-process run of that same model (same n_group and topk_group)."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

TOL = 1e-5

def layout(pp, dp, ep, mb, schedule="1f1b", v=1):
    name = f"pp{pp}_dp{dp}_ep{ep}_mb{mb}_{schedule}" + (f"_v{v}" if v > 1 else "")
    return (name, pp * dp, [f"parallel.pp={pp}", f"parallel.dp={dp}", f"parallel.ep={ep}",
                            f"parallel.micro_batches={mb}", f"parallel.schedule={schedule}",
                            f"parallel.virtual_stages={v}"])


# (pp, dp, ep) as the issue lists them, plus gradient accumulation and the other schedules.
LAYOUTS = [
    layout(1, 1, 1, 4),
    layout(2, 1, 1, 2),
    layout(1, 2, 1, 1),
    layout(1, 2, 2, 2),
    layout(2, 2, 2, 2),
    layout(1, 4, 4, 1),
    layout(2, 4, 2, 2),
    # gradient buckets of ~2.6k floats: reduce-scatters start during the backward
    (lambda l: (l[0] + "_buckets", l[1], l[2] + ["parallel.grad_bucket_mb=0.01"]))(layout(2, 2, 2, 2)),
    layout(4, 1, 1, 4, "interleaved", 2),
    layout(2, 2, 1, 2, "zb1p"),
    layout(2, 1, 1, 4, "gpipe"),
    layout(4, 1, 1, 4, "zb1p"),
    # DualPipeV: rank r holds layer blocks r and 2P-1-r; P = 1 keeps the whole V on one rank
    layout(1, 2, 2, 2, "dualpipev"),
    layout(2, 2, 2, 4, "dualpipev"),
    layout(4, 1, 1, 8, "dualpipev"),
    # DualPipe: stages k and pp-1-k both hold blocks k and pp-1-k (mirrored); their dp and
    # expert-dp groups span the pair, which sums the gradients and shards the optimizer state
    layout(2, 1, 1, 4, "dualpipe"),
    layout(4, 1, 1, 8, "dualpipe"),
    layout(2, 2, 2, 4, "dualpipe"),
    # small buckets: each pair posts its reduce-scatters during the backward, in the same order
    (lambda l: (l[0] + "_buckets", l[1], l[2] + ["parallel.grad_bucket_mb=0.01"]))(
        layout(2, 2, 2, 4, "dualpipe")),
    # the same FB pairs run F then B: must equal the overlapped run bit for bit (BITWISE_PAIRS)
    (lambda l: (l[0] + "_no_overlap", l[1], l[2] + ["parallel.overlap=false"]))(
        layout(2, 2, 2, 4, "dualpipev")),
]

# Layouts whose results must be identical, not only within TOL: FB pairs overlapped or not.
BITWISE_PAIRS = [("pp2_dp2_ep2_mb4_dualpipev", "pp2_dp2_ep2_mb4_dualpipev_no_overlap")]

# Node-limited routing with node-aware dispatch: 2 ranks per node, the EP group of 4 spans 2
# nodes, expert group g on node g (model.n_group=2); (name, procs, overrides, model overrides).
def node_layout(pp, dp, ep, mb, topk_group, dispatch="on", per_node=2):
    name, procs, overrides = layout(pp, dp, ep, mb)
    model = ["model.n_group=2", f"model.topk_group={topk_group}"]
    return (f"{name}_{per_node}pernode_tg{topk_group}_{dispatch}", procs,
            overrides + [f"parallel.ranks_per_node={per_node}", f"parallel.node_aware_dispatch={dispatch}"],
            model)


NODE_LAYOUTS = [
    node_layout(1, 4, 4, 1, 1),
    node_layout(1, 4, 4, 2, 2),
    node_layout(1, 4, 4, 1, 2, "off"),
    node_layout(2, 2, 2, 2, 1, "auto", per_node=1),  # each stage's EP pair spans 2 nodes
]

# The DeepSeek-V3 model: MLA with low-rank queries and two MTP modules (their MoE blocks exchange
# rows like the main layers'). With DualPipe/DualPipeV rank 0 holds embedding, head and MTP; with
# 1f1b and interleaved the head's stage keeps a tied copy of the embedding.
V3_MODEL = ["model.attention=mla", "model.q_lora_rank=12", "model.kv_lora_rank=16",
            "model.qk_nope_head_dim=8", "model.qk_rope_head_dim=4", "model.v_head_dim=6",
            "model.mtp_depth=2", "model.mtp_lambda=0.3"]
V3_LAYOUTS = [
    (lambda l: (l[0] + "_v3", l[1], l[2], V3_MODEL))(layout(1, 2, 2, 2)),
    (lambda l: (l[0] + "_v3", l[1], l[2], V3_MODEL))(layout(2, 2, 2, 2)),
    (lambda l: (l[0] + "_v3", l[1], l[2], V3_MODEL))(layout(4, 1, 1, 4, "interleaved", 2)),
    (lambda l: (l[0] + "_v3", l[1], l[2], V3_MODEL))(layout(2, 2, 2, 4, "dualpipev")),
    (lambda l: (l[0] + "_v3", l[1], l[2], V3_MODEL))(layout(2, 1, 1, 4, "dualpipe")),
]


# Low precision (precision.compute): every layout equals one process in the same precision. bf16
# rounds each GEMM input on its own; a value that another summation order moved by one fp32 ulp
# can round to the neighbouring bf16 value (2^-8 apart), so bf16 layouts get BF16_TOL (measured
# worst 8.6e-6 after 3 steps). fp8 scales tiles of 128 values, and the weight gradient's tiles run
# along the tokens: a layout that splits a GEMM's tokens differently (data or expert parallelism,
# other micro-batches) quantises other groups, as on DeepSeek's cluster. So fp8 is held to fp32's
# bound where the GEMMs are the single process's (pipeline layouts with its micro-batches: the
# reference runs 4 micro-batches too; measured 1e-8), and data + expert parallelism within
# FP8_TOL (measured: grad_norm 2e-3, weights 3e-3 after 3 AdamW steps), leaving out the routing
# biases, whose sign-of-load updates flip with any change of an expert's load.
# The bf16 case runs without the routing biases' update (bias_update_gamma 0, in the single
# process too): its sign-of-load step turns one token that a flipped bf16 rounding sent elsewhere
# into a bias change of gamma, and from the next step other tokens route differently, a chaotic
# consequence of rounding that says nothing about the layout (seen: the bf16 GEMM path and the
# attention kernel's summation order each decided whether it happened).
BF16_TOL = 5e-5
FP8_TOL = 1e-2
PRECISION_LAYOUTS = [
    (lambda l: (l[0] + "_bf16", l[1], l[2], ["precision.compute=bf16", "model.bias_update_gamma=0"]))(
        layout(2, 2, 2, 2)),
    (lambda l: (l[0] + "_fp8", l[1], l[2], V3_MODEL + ["precision.compute=fp8", "parallel.micro_batches=4"]))(
        layout(2, 1, 1, 4, "dualpipev")),
    (lambda l: (l[0] + "_fp8", l[1], l[2], V3_MODEL + ["precision.compute=fp8", "parallel.micro_batches=4"]))(
        layout(4, 1, 1, 4)),
    (lambda l: (l[0] + "_fp8_split_tokens", l[1], l[2], ["precision.compute=fp8"]))(layout(2, 2, 2, 2)),
    # node-aware dispatch with fp8 rows on both hops (MoeBlock's wire precision)
    (lambda l: (l[0] + "_fp8_split_tokens", l[1], l[2], l[3] + ["precision.compute=fp8"]))(
        node_layout(1, 4, 4, 1, 2)),
]


def train(args, name, procs, overrides, data):
    run_dir = os.path.join(args.work, name)
    cmd = [args.tessera, "train", args.recipe, "--set", f"data.path={data}", "--set", f"run.dir={run_dir}",
           "--set", "train.steps=3", "--set", "train.eval_every=0", "--set", "train.eval_batches=1",
           "--set", "checkpoint.every_steps=0"]
    for o in overrides:
        cmd += ["--set", o]
    if procs > 1:
        cmd = [args.mpirun, "--oversubscribe", "-np", str(procs),
               "--mca", "btl_vader_single_copy_mechanism", "none"] + cmd
    print("+", " ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    print(proc.stdout[-2000:], flush=True)
    if proc.returncode != 0:
        sys.exit(f"FAIL: layout {name} exited {proc.returncode}")
    print(f"{name}: {time.time() - start:.1f} s", flush=True)
    for rank in range(procs):  # every rank keeps its own log
        log = os.path.join(run_dir, "logs", f"rank-{rank}.log")
        if not os.path.isfile(log) or "step 3/3" not in open(log).read():
            sys.exit(f"FAIL: layout {name}: {log} is missing or lacks the last step")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    losses = [(r["loss"], r["grad_norm"], r.get("val_loss")) for r in records]
    if losses[-1][2] is None:
        sys.exit(f"FAIL: layout {name}: no val_loss at the last step")
    if len(losses) != 3:
        sys.exit(f"FAIL: layout {name}: {len(losses)} metric lines, expected 3")
    for r in records:
        if not 0 <= r["bubble_fraction"] < 1 or r["exposed_comm_s"] < 0:
            sys.exit(f"FAIL: layout {name}: implausible bubble/exposed comm in {r}")
        # A layout whose EP group spans nodes moves expert rows between them.
        if "nodes" in name or "pernode" in name:
            if not r.get("expert_cross_node_bytes", 0) > 0:
                sys.exit(f"FAIL: layout {name}: no expert bytes crossed nodes in {r}")
    params = {}
    with h5py.File(os.path.join(run_dir, "checkpoints", "step-00000003", "model.h5"), "r") as f:
        for name_, ds in f.items():
            if isinstance(ds, h5py.Dataset):
                params[name_] = np.asarray(ds, dtype=np.float64)
    return losses, params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--only", default="", help="run only the layouts whose name contains this")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    data = os.path.join(args.work, "markov")
    subprocess.run([args.tessera, "prepare", "synthetic", "--vocab", "64", "--order", "1", "--tokens",
                    "200000", "--seed", "3", "--out", data, "--quiet"], check=True)
    references = {}  # model overrides -> the single-process run of that model
    ran = {}  # layout name -> (losses, params)
    problems = []
    cases = [l + ([],) for l in LAYOUTS] + NODE_LAYOUTS + V3_LAYOUTS + PRECISION_LAYOUTS
    for name, procs, overrides, model in cases:
        if args.only not in name:
            continue
        if tuple(model) not in references:
            # Numbered: models that differ only after the first 80 characters must not share a
            # run.dir (a fresh run into a used one is refused).
            ref_name = ("single" + "".join("_" + m.split(".")[1].replace("=", "") for m in model)[:80]
                        + f"_{len(references)}")
            references[tuple(model)] = train(args, ref_name, 1, model, data)
        ref_losses, ref_params = references[tuple(model)]
        losses, params = train(args, name, procs, overrides + model, data)
        ran[name] = (losses, params)
        split_tokens = name.endswith("_split_tokens")
        tol = FP8_TOL if split_tokens else BF16_TOL if name.endswith("_bf16") else TOL
        for step, (ref, got) in enumerate(zip(ref_losses, losses), 1):
            for what, a, b in (("loss", ref[0], got[0]), ("grad_norm", ref[1], got[1]),
                               ("val_loss", ref[2], got[2])):
                if a is None and b is None:
                    continue
                rel = abs(a - b) / abs(a)
                if rel > tol:
                    problems.append(f"{name}: step {step} {what} {b} vs single-process {a} (rel {rel:.2e})")
        if set(params) != set(ref_params):
            problems.append(f"{name}: parameter names differ: {sorted(set(params) ^ set(ref_params))}")
            continue
        worst = max((np.linalg.norm(params[k] - ref_params[k]) / max(np.linalg.norm(ref_params[k]), 1e-12), k)
                    for k in ref_params if not (split_tokens and k.endswith("moe.gate.bias")))
        print(f"{name}: (loss, grad_norm, val_loss) per step {losses}; worst parameter rel diff {worst[0]:.2e} ({worst[1]})")
        if worst[0] > tol:
            problems.append(f"{name}: parameter {worst[1]} differs by {worst[0]:.2e} (> {tol})")
    for a, b in BITWISE_PAIRS:
        if a not in ran or b not in ran:
            continue
        (losses_a, params_a), (losses_b, params_b) = ran[a], ran[b]
        if losses_a != losses_b:
            problems.append(f"{b}: losses {losses_b} differ from {a}'s {losses_a} (must be bitwise equal)")
        differing = [k for k in params_a if not np.array_equal(params_a[k], params_b.get(k))]
        if differing:
            problems.append(f"{b}: parameters {differing[:5]} differ from {a}'s (must be bitwise equal)")
        print(f"{a} vs {b}: bitwise {'equal' if losses_a == losses_b and not differing else 'DIFFERENT'}")
    for p in problems:
        print("FAIL:", p)
    print("layout equivalence:", "PASS" if not problems else f"FAIL ({len(problems)} problems)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
