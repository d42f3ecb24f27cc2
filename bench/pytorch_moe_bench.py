#!/usr/bin/python3
"""PyTorch throughput peer of tessera's training benchmark: the same model, the same step.

Trains the model of a tessera recipe (its `model:` section; `train.seq_len`, `train.global_batch`;
`optimizer:` hyper-parameters) in float32 on the CPU with the independent reference implementation
(tests/reference/reference_model.py, the math of DESIGN.md). Each timed iteration is a full training
step: forward, loss (cross-entropy + sequence balance loss when enabled), backward, global grad-norm
clip, torch.optim.AdamW step (decay on weight matrices only, as tessera), zero_grad, and the
aux-loss-free gate-bias update. Tokens are uniform random ids (throughput does not depend on them).

Tuning, as a careful PyTorch CPU user would do it: torch and BLAS threads pinned to --threads (the
Debian torch calls the system OpenBLAS, which takes its thread count from OPENBLAS_NUM_THREADS and
ignores torch.set_num_threads), OMP_WAIT_POLICY=PASSIVE unless set (OpenMP's spinning threads
otherwise fight the pthreads of OpenBLAS for the cores), glibc malloc told to keep freed memory instead of returning it to the
kernel (a fresh page costs ~11 us to fault in here), AdamW's multi-tensor (foreach) path, and experts
computed on contiguous slices of expert-sorted tokens (one gather, one index_add).

Prints one JSON line last:
  {"impl": "pytorch", "tokens_per_s": ..., "step_s": ..., "threads": N, "torch": "..."}
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))


def _parse_scalar(text):
    return yaml.safe_load(text)


def load_recipe(path, overrides):
    """The recipe as a dict, with `--set section.key=value` overrides applied (value parsed as YAML)."""
    with open(path) as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict):
        raise SystemExit(f"{path}: expected a mapping at the top level")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set {item}: expected section.key=value")
        section, name = key.split(".", 1)
        recipe.setdefault(section, {})
        if not isinstance(recipe[section], dict):
            raise SystemExit(f"--set {item}: {section} is not a section")
        recipe[section][name] = _parse_scalar(value)
    return recipe


def tune_malloc():
    """Keep freed memory in the heap (no trim, no per-allocation mmap): steady-state steps then
    reuse already-faulted pages, as a caching allocator would."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1  # the largest glibc accepts
    ok = libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", required=True, help="tessera recipe YAML (model/train/optimizer)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a recipe key, as tessera's --set")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and BLAS threads (default: the recipe's run.cpu_threads, else 1)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS threads (default: --threads)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--no-malloc-tuning", action="store_true")
    args = ap.parse_args()

    recipe = load_recipe(args.recipe, args.set)
    threads = args.threads or int((recipe.get("run") or {}).get("cpu_threads", 1))
    blas_threads = args.blas_threads or threads
    if threads < 1 or blas_threads < 1 or args.steps < 1 or args.warmup < 0:
        raise SystemExit("--threads, --blas-threads and --steps must be >= 1, --warmup >= 0")
    # Before torch loads libblas: OpenBLAS and OpenMP read these once, at load time.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    # torch's OpenMP threads and OpenBLAS's own pthreads take turns on the same cores; OpenMP's
    # default spin-wait then steals the cores from the GEMM (measured: 4x slower on 2 threads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    malloc_tuned = False if args.no_malloc_tuning else tune_malloc()

    import torch
    import reference_model as rm

    torch.set_num_threads(threads)
    cfg = rm.model_config(recipe.get("model"))
    train = recipe.get("train") or {}
    seq_len = int(train.get("seq_len", 64))
    batch = int(train.get("global_batch", 8))
    seed = int(train.get("seed", 1234))
    opt_cfg = recipe.get("optimizer") or {}
    lr = float(opt_cfg.get("lr", 1e-3))
    betas = (float(opt_cfg.get("beta1", 0.9)), float(opt_cfg.get("beta2", 0.95)))
    eps = float(opt_cfg.get("eps", 1e-8))
    weight_decay = float(opt_cfg.get("weight_decay", 0.1))
    grad_clip = float(opt_cfg.get("grad_clip", 1.0))
    gamma = cfg["bias_update_gamma"]

    torch.manual_seed(seed)
    params = rm.init_params(cfg, torch.Generator().manual_seed(seed), torch.float32)
    for name, t in params.items():
        t.requires_grad_(rm.is_trainable(name))
    trainable = [t for n, t in params.items() if rm.is_trainable(n)]
    decay = [t for n, t in params.items() if rm.is_trainable(n) and t.dim() >= 2]
    no_decay = [t for n, t in params.items() if rm.is_trainable(n) and t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps, foreach=True)
    biases = {i: params[rm.block_prefix(cfg, i) + "moe.gate.bias"] for i in rm.moe_layers(cfg)}
    n_experts = cfg["n_experts"]

    gen = torch.Generator().manual_seed(seed + 1)
    # Rows carry seq_len + 1 + mtp_depth tokens (the MTP targets).
    pool = [torch.randint(0, cfg["vocab_size"], (batch, seq_len + 1 + cfg["mtp_depth"]), generator=gen)
            for _ in range(4)]

    def train_step(step):
        loss, ce, info = rm.forward(cfg, params, pool[step % len(pool)])
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if gamma > 0:
            with torch.no_grad():
                for i, b in biases.items():
                    load = torch.bincount(info[i]["used"].flatten(), minlength=n_experts).to(b.dtype)
                    b.add_(torch.sign(load.mean() - load), alpha=gamma)
        return loss.item()

    load_before = os.getloadavg()[0]
    for s in range(args.warmup):
        train_step(s)
    times, cpu_times = [], []
    for s in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        last_loss = train_step(args.warmup + s)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    step_s = statistics.median(times)
    n_params = sum(t.numel() for t in params.values())
    result = {
        "impl": "pytorch",
        "tokens_per_s": round(batch * seq_len / step_s, 1),
        "step_s": round(step_s, 6),
        "step_s_mean": round(statistics.fmean(times), 6),
        "step_s_min": round(min(times), 6),
        # CPU seconds of all this process's threads per step (median): with --threads 1 a timing
        # less sensitive to other processes than the wall clock.
        "step_cpu_s": round(statistics.median(cpu_times), 6),
        "threads": threads,
        "torch": torch.__version__,
        "blas_threads": blas_threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "seq_len": seq_len,
        "global_batch": batch,
        "params": n_params,
        "loss": round(last_loss, 6),
        "malloc_tuned": malloc_tuned,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT", ""),
        # Other processes on the machine distort timings: the 1-minute load before and after.
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
