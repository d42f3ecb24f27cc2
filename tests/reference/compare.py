#!/usr/bin/python3
"""Checks a tessera dump against the independent PyTorch reference (reference_model.py).

Usage:
  compare.py DUMP_DIR [--rel-tol 1e-4] [--tie-tol 1e-5]
  compare.py --self-test

DUMP_DIR (written by tessera's dump tool) holds:
  model.yaml  a full tessera recipe; its `model:` section is the config
  model.h5    float32 parameters as root datasets named as in DESIGN.md (groups/attributes ignored)
  batch.h5    `tokens`: int [B, T+1]
  grads.h5    tessera's gradient of every trainable parameter as root datasets, root attributes
              `loss` and `ce_loss`, group `routing` with `layers.{i}` int [B*T, k] per MoE layer

Checks, all computed in float64 from the float32 parameters:
  (a) routing: per MoE layer and token, the reference's chosen expert set equals tessera's. A
      difference where the reference's decision margin (biased-score gap at the top-k / top-group
      boundary) is below --tie-tol is a precision tie: it is reported and tolerated. The reference
      computes with tessera's routing wherever that is well-formed, so (b) and (c) check the math
      given the routing while (a) checks the routing itself;
  (b) |loss_t - loss_ref| / |loss_ref| <= rel_tol, same for ce_loss;
  (c) per parameter ||g_t - g_ref|| / max(||g_ref||, 1e-12) <= rel_tol; a gradient missing on
      either side is a failure naming it.
Prints a table and `reference: PASS` or `reference: FAIL (<n> problems)`; exits 0 only on PASS
(1 on FAIL, 2 when the dump cannot be read).
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as rm  # noqa: E402

DEFAULT_REL_TOL = 1e-4
DEFAULT_TIE_TOL = 1e-5


class DumpError(Exception):
    """The dump is unreadable or inconsistent with its recipe; the message names file and item."""


# ---------------------------------------------------------------------------------------------
# Reading a dump

def _root_datasets(path):
    """{name: array} of the datasets directly under '/', and the root attributes."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DumpError(f"{path}: cannot open: {e}") from e
    with f:
        data = {name: obj[()] for name, obj in f.items() if isinstance(obj, h5py.Dataset)}
        attrs = {k: f.attrs[k] for k in f.attrs}
        groups = {name for name, obj in f.items() if isinstance(obj, h5py.Group)}
        routing = {}
        if "routing" in groups:
            routing = {n: o[()] for n, o in f["routing"].items() if isinstance(o, h5py.Dataset)}
    return data, attrs, routing


def load_dump(dump_dir):
    """Returns (cfg, params, tokens, tessera) with tessera = {grads, loss, ce_loss, routing, notes}."""
    recipe_path = os.path.join(dump_dir, "model.yaml")
    try:
        with open(recipe_path) as f:
            recipe = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise DumpError(f"{recipe_path}: cannot read: {e}") from e
    if not isinstance(recipe, dict) or "model" not in recipe:
        raise DumpError(f"{recipe_path}: no `model:` section")
    try:
        cfg = rm.model_config(recipe["model"])
    except rm.ConfigError as e:
        raise DumpError(f"{recipe_path}: {e}") from e
    notes = []
    precision = (recipe.get("precision") or {}).get("compute", "fp32")
    if precision != "fp32":
        notes.append(f"note: precision.compute is {precision}; tolerances assume fp32")

    model_path = os.path.join(dump_dir, "model.h5")
    stored, _, _ = _root_datasets(model_path)
    shapes = rm.param_shapes(cfg)
    params = {}
    for name, shape in shapes.items():
        if name not in stored:
            raise DumpError(f"{model_path}: parameter {name} is missing")
        if tuple(stored[name].shape) != shape:
            raise DumpError(f"{model_path}: {name} has shape {tuple(stored[name].shape)}, the "
                            f"recipe's model says {shape}")
        params[name] = torch.from_numpy(np.asarray(stored[name], dtype=np.float32))
    for name in sorted(set(stored) - set(shapes)):
        notes.append(f"note: {model_path}: dataset {name} is not a parameter of this model; ignored")

    batch_path = os.path.join(dump_dir, "batch.h5")
    batch, _, _ = _root_datasets(batch_path)
    if "tokens" not in batch:
        raise DumpError(f"{batch_path}: dataset tokens is missing")
    tokens = np.asarray(batch["tokens"])
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise DumpError(f"{batch_path}: tokens must be [B, T+1] with T >= 1, got {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= cfg["vocab_size"]:
        raise DumpError(f"{batch_path}: token ids must lie in [0, {cfg['vocab_size']}), got "
                        f"[{tokens.min()}, {tokens.max()}]")

    grads_path = os.path.join(dump_dir, "grads.h5")
    grads, attrs, routing = _root_datasets(grads_path)
    for key in ("loss", "ce_loss"):
        if key not in attrs:
            raise DumpError(f"{grads_path}: root attribute {key} is missing")
    tessera = {
        "grads": grads,
        "loss": float(np.asarray(attrs["loss"]).reshape(())),
        "ce_loss": float(np.asarray(attrs["ce_loss"]).reshape(())),
        "routing": routing,
        "notes": notes,
    }
    return cfg, params, torch.from_numpy(tokens.astype(np.int64)), tessera


# ---------------------------------------------------------------------------------------------
# Comparing

def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def _check_routing_shapes(cfg, routing, n_tokens, problems):
    """Validated tessera routing {layer: int64 tensor [N, k]} for the MoE layers that have it."""
    valid = {}
    expected = {f"layers.{i}": i for i in rm.moe_layers(cfg)}
    for name in sorted(set(routing) - set(expected)):
        problems.append(f"routing: grads.h5 has routing/{name}, which is not an MoE layer")
    for name, i in expected.items():
        if name not in routing:
            problems.append(f"routing: grads.h5 lacks routing/{name}")
            continue
        r = np.asarray(routing[name])
        want = (n_tokens, cfg["top_k"])
        if r.shape != want:
            problems.append(f"routing/{name}: shape {r.shape}, expected {want}")
            continue
        if r.min() < 0 or r.max() >= cfg["n_experts"]:
            problems.append(f"routing/{name}: expert ids outside [0, {cfg['n_experts']})")
            continue
        if any(len(set(row)) != len(row) for row in r.tolist()):
            problems.append(f"routing/{name}: a token selects the same expert twice")
            continue
        valid[i] = torch.from_numpy(r.astype(np.int64))
    return valid


def compare_dump(dump_dir, rel_tol=DEFAULT_REL_TOL, tie_tol=DEFAULT_TIE_TOL, log=print):
    """Runs every check on DUMP_DIR; returns the list of problems (empty = pass). Raises DumpError."""
    cfg, params, tokens, tess = load_dump(dump_dir)
    for note in tess["notes"]:
        log(note)
    problems = []
    bsz, seq = tokens.shape[0], tokens.shape[1] - 1
    n_tokens = bsz * seq
    t_routing = _check_routing_shapes(cfg, tess["routing"], n_tokens, problems)

    # Follow tessera's routing where it gave a valid one (near-ties may legitimately differ); the
    # reference's own choice is still computed per layer on the same inputs and checked below.
    details = {}
    loss, ce, grads, own = rm.reference_step(cfg, params, tokens, forced_routing=t_routing,
                                             details=details)

    # (a) routing sets
    n_ties = 0
    for i in rm.moe_layers(cfg):
        if i not in t_routing:
            continue
        ref_sets = torch.sort(own[i], dim=1).values
        t_sets = torch.sort(t_routing[i], dim=1).values
        bad = (ref_sets != t_sets).any(dim=1).nonzero().flatten().tolist()
        margin = details[i]["margin"]
        real = [n for n in bad if not margin[n].item() < tie_tol]
        n_ties += len(bad) - len(real)
        if real:
            n = real[0]
            union = sorted(set(own[i][n].tolist()) | set(t_routing[i][n].tolist()))
            scores = ", ".join(f"{e}: {details[i]['biased'][n, e].item():.8f}" for e in union)
            problems.append(
                f"routing: layer {i}: {len(real)} of {n_tokens} tokens choose other experts; first "
                f"token {n} (sequence {n // seq}, position {n % seq}): reference "
                f"{sorted(own[i][n].tolist())}, tessera {sorted(t_routing[i][n].tolist())}, biased "
                f"scores {{{scores}}}, reference margin {margin[n].item():.3e}")
    if n_ties:
        log(f"routing: {n_ties} token(s) differ within a biased-score margin < {tie_tol:g} "
            f"(precision ties); the reference followed tessera there")

    # (b) losses
    for key, ref in (("loss", loss), ("ce_loss", ce)):
        err = _rel(tess[key], ref)
        log(f"{key}: tessera {tess[key]:.10f} reference {ref:.10f} rel err {err:.3e}")
        if not err <= rel_tol:
            problems.append(f"{key}: tessera {tess[key]!r} vs reference {ref!r}, rel err {err:.3e} "
                            f"> {rel_tol:g}")

    # (c) gradients
    t_grads = tess["grads"]
    for name in sorted(set(t_grads) - set(grads)):
        problems.append(f"grad {name}: tessera has a gradient the reference does not train")
    width = max(len(n) for n in grads)
    log(f"{'parameter':<{width}}  {'||g_ref||':>11}  {'rel err':>9}")
    for name, g_ref in grads.items():
        if name not in t_grads:
            problems.append(f"grad {name}: missing from grads.h5")
            log(f"{name:<{width}}  {g_ref.norm().item():11.4e}  {'MISSING':>9}")
            continue
        g_t = np.asarray(t_grads[name])
        if tuple(g_t.shape) != tuple(g_ref.shape):
            problems.append(f"grad {name}: shape {g_t.shape}, expected {tuple(g_ref.shape)}")
            log(f"{name:<{width}}  {g_ref.norm().item():11.4e}  {'SHAPE':>9}")
            continue
        ref_norm = g_ref.norm().item()
        diff = (torch.from_numpy(g_t.astype(np.float64)) - g_ref).norm().item()
        err = diff / max(ref_norm, 1e-12)
        flag = "" if err <= rel_tol else "  <-- FAIL"
        log(f"{name:<{width}}  {ref_norm:11.4e}  {err:9.2e}{flag}")
        if not err <= rel_tol:
            problems.append(f"grad {name}: rel err {err:.3e} > {rel_tol:g}")
    return problems


def run_compare(dump_dir, rel_tol, tie_tol):
    try:
        problems = compare_dump(dump_dir, rel_tol, tie_tol)
    except DumpError as e:
        print(f"reference: ERROR: {e}")
        return 2
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"reference: FAIL ({len(problems)} problems)")
        return 1
    print("reference: PASS")
    return 0


# ---------------------------------------------------------------------------------------------
# Self-test: the reference against finite differences and a naive loop implementation, and the
# checker against dumps it must pass and dumps it must fail.

SELF_TEST_MODEL = {
    "vocab_size": 37, "dim": 16, "n_layers": 3, "n_heads": 2, "attention": "mha", "inter_dim": 24,
    "moe_inter_dim": 8, "n_experts": 8, "n_shared_experts": 1, "top_k": 2, "n_group": 4,
    "topk_group": 2, "route_scale": 2.5, "first_dense_layers": 1, "norm_eps": 1e-6,
    "rope_theta": 10000.0, "init_std": 0.3, "bias_update_gamma": 0.001, "seq_aux_alpha": 0.05,
}
SELF_TEST_BATCH, SELF_TEST_SEQ = 2, 7


def write_dump(dump_dir, model_section, train_section, params, tokens, grads, loss, ce, routing):
    """Writes a dump in tessera's format (see the module doc), plus decoys the reader must ignore."""
    os.makedirs(dump_dir, exist_ok=True)
    with open(os.path.join(dump_dir, "model.yaml"), "w") as f:
        yaml.safe_dump({"model": model_section, "train": train_section,
                        "precision": {"compute": "fp32"}}, f, sort_keys=False)
    with h5py.File(os.path.join(dump_dir, "model.h5"), "w") as f:
        for name, t in params.items():
            f.create_dataset(name, data=np.asarray(t, dtype=np.float32))
        f.create_dataset("optimizer/m/embed.weight", data=np.zeros(2, np.float32))
        f.attrs["step"] = 0
    with h5py.File(os.path.join(dump_dir, "batch.h5"), "w") as f:
        f.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))
    with h5py.File(os.path.join(dump_dir, "grads.h5"), "w") as f:
        for name, g in grads.items():
            f.create_dataset(name, data=np.asarray(g, dtype=np.float32))
        f.attrs["loss"] = np.float64(loss)
        f.attrs["ce_loss"] = np.float64(ce)
        for i, r in routing.items():
            f.create_dataset(f"routing/layers.{i}", data=np.asarray(r, dtype=np.int32))


def _naive_loss(cfg, params, tokens):
    """The DESIGN.md math written again with per-token, per-head loops in numpy float64."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    tok = np.asarray(tokens)
    bsz, seq = tok.shape[0], tok.shape[1] - 1
    d, h, eps = cfg["dim"], cfg["n_heads"], cfg["norm_eps"]
    hd = d // h
    e, k, g, kg = cfg["n_experts"], cfg["top_k"], cfg["n_group"], cfg["topk_group"]

    def norm(v, w):
        return v / math.sqrt(np.mean(v * v) + eps) * w

    def silu(z):
        return z / (1 + np.exp(-z))

    def mlp(v, w1, w3, w2):
        return w2 @ (silu(w1 @ v) * (w3 @ v))

    def rope(v, pos):
        out = v.copy()
        for j in range(hd // 2):
            ang = pos * cfg["rope_theta"] ** (-2 * j / hd)
            a, b = v[2 * j], v[2 * j + 1]
            out[2 * j] = a * math.cos(ang) - b * math.sin(ang)
            out[2 * j + 1] = a * math.sin(ang) + b * math.cos(ang)
        return out

    total_ce, total_aux = 0.0, 0.0
    for b in range(bsz):
        x = [p["embed.weight"][tok[b, t]].copy() for t in range(seq)]
        for i in range(cfg["n_layers"]):
            pre = f"layers.{i}."
            xn = [norm(v, p[pre + "attn_norm.weight"]) for v in x]
            q = [p[pre + "attn.wq.weight"] @ v for v in xn]
            kk = [p[pre + "attn.wk.weight"] @ v for v in xn]
            vv = [p[pre + "attn.wv.weight"] @ v for v in xn]
            att = []
            for t in range(seq):
                o = np.zeros(d)
                for hh in range(h):
                    sl = slice(hh * hd, (hh + 1) * hd)
                    qt = rope(q[t][sl], t)
                    logits = np.array([qt @ rope(kk[u][sl], u) / math.sqrt(hd) for u in range(t + 1)])
                    w = np.exp(logits - logits.max())
                    w /= w.sum()
                    o[sl] = sum(w[u] * vv[u][sl] for u in range(t + 1))
                att.append(p[pre + "attn.wo.weight"] @ o)
            x = [x[t] + att[t] for t in range(seq)]
            hn = [norm(v, p[pre + "ffn_norm.weight"]) for v in x]
            if not rm.is_moe_layer(cfg, i):
                x = [x[t] + mlp(hn[t], p[pre + "ffn.w1.weight"], p[pre + "ffn.w3.weight"],
                                p[pre + "ffn.w2.weight"]) for t in range(seq)]
                continue
            counts = np.zeros(e)
            p_sum = np.zeros(e)
            for t in range(seq):
                s = 1 / (1 + np.exp(-(p[pre + "moe.gate.weight"] @ hn[t])))
                biased = s + p[pre + "moe.gate.bias"]
                per = e // g
                gscore = [sum(sorted(biased[gi * per:(gi + 1) * per])[-min(2, per):])
                          for gi in range(g)]
                kept = sorted(range(g), key=lambda gi: -gscore[gi])[:kg]
                cand = [ex for gi in kept for ex in range(gi * per, (gi + 1) * per)]
                chosen = sorted(cand, key=lambda ex: -biased[ex])[:k]
                gate = np.array([s[ex] for ex in chosen])
                gate = gate / gate.sum() * cfg["route_scale"]
                y = np.zeros(d)
                for gw, ex in zip(gate, chosen):
                    y += gw * mlp(hn[t], p[pre + "moe.experts.w1"][ex], p[pre + "moe.experts.w3"][ex],
                                  p[pre + "moe.experts.w2"][ex])
                    counts[ex] += 1
                if cfg["n_shared_experts"] > 0:
                    y += mlp(hn[t], p[pre + "moe.shared.w1.weight"], p[pre + "moe.shared.w3.weight"],
                             p[pre + "moe.shared.w2.weight"])
                p_sum += s / s.sum()
                x[t] = x[t] + y
            total_aux += cfg["seq_aux_alpha"] * np.sum(e / (k * seq) * counts * p_sum / seq)
        for t in range(seq):
            logits = p["head.weight"] @ norm(x[t], p["norm.weight"])
            m = logits.max()
            total_ce += m + math.log(np.exp(logits - m).sum()) - logits[tok[b, t + 1]]
    ce = total_ce / (bsz * seq)
    return ce + total_aux / bsz, ce


def _self_test_case():
    """The self-test's config, float32 params, tokens and the reference's step on them."""
    cfg = rm.model_config(SELF_TEST_MODEL)
    gen = torch.Generator().manual_seed(20240611)
    params = rm.init_params(cfg, gen, torch.float32, norm_jitter=0.3, bias_std=0.05)
    tokens = torch.randint(0, cfg["vocab_size"], (SELF_TEST_BATCH, SELF_TEST_SEQ + 1), generator=gen)
    details = {}
    loss, ce, grads, routing = rm.reference_step(cfg, params, tokens, details=details)
    return cfg, params, tokens, (loss, ce, grads, routing), details


def _write_sample(dump_dir):
    _, params, tokens, (loss, ce, grads, routing), _ = _self_test_case()
    write_dump(dump_dir, SELF_TEST_MODEL, {"seq_len": SELF_TEST_SEQ, "global_batch": SELF_TEST_BATCH},
               params, tokens, {n: g.numpy() for n, g in grads.items()}, loss, ce,
               {i: r.numpy() for i, r in routing.items()})


def _self_test():
    t0 = time.time()
    failures = []

    def check(ok, what):
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failures.append(what)

    cfg, params, tokens, (loss, ce, grads, routing), details = _self_test_case()
    n_tokens = SELF_TEST_BATCH * SELF_TEST_SEQ
    print(f"self-test model: loss {loss:.6f} (ce {ce:.6f}), {len(grads)} trainable tensors")

    # 1. forward against an independent naive loop implementation of the same math
    naive_loss, naive_ce = _naive_loss(cfg, params, tokens)
    check(_rel(loss, naive_loss) < 1e-12 and _rel(ce, naive_ce) < 1e-12,
          f"forward equals the naive per-token implementation (loss {naive_loss:.12f}, "
          f"rel err {_rel(loss, naive_loss):.1e})")
    check(loss - ce > 1e-4, f"the balance loss contributes ({loss - ce:.3e})")
    experts_used = {e for r in routing.values() for e in r.flatten().tolist()}
    check(len(experts_used) >= cfg["n_experts"] - 1,
          f"routing spreads over experts ({len(experts_used)} of {cfg['n_experts']} used)")

    # 2. gradients against central finite differences, routing fixed to the reference's own
    p64 = {n: t.to(torch.float64) for n, t in params.items()}

    def loss_at(shift):
        q = {n: (t + shift[n] if n in shift else t) for n, t in p64.items()}
        return rm.forward(cfg, q, tokens, forced_routing=routing)[0].item()

    dgen = torch.Generator().manual_seed(7)
    step = 1e-5
    worst = 0.0
    directions = [{n: torch.randn(g.shape, generator=dgen, dtype=torch.float64)} for n, g in
                  grads.items()]
    directions += [{n: torch.randn(g.shape, generator=dgen, dtype=torch.float64) for n, g in
                    grads.items()} for _ in range(3)]
    for u in directions:
        scale = math.sqrt(sum(v.pow(2).sum().item() for v in u.values()))
        u = {n: v / scale for n, v in u.items()}
        analytic = sum((grads[n] * v).sum().item() for n, v in u.items())
        fd = (loss_at({n: step * v for n, v in u.items()}) -
              loss_at({n: -step * v for n, v in u.items()})) / (2 * step)
        g_norm = math.sqrt(sum(grads[n].pow(2).sum().item() for n in u))
        err = abs(fd - analytic) / max(abs(analytic), 1e-3 * g_norm, 1e-12)
        worst = max(worst, err)
        if err > 1e-6:
            check(False, f"finite differences along {sorted(u)[:2]}...: fd {fd:.10e} vs "
                         f"autograd {analytic:.10e}")
    check(worst <= 1e-6, f"autograd gradients match central differences on {len(directions)} "
                         f"directions (worst rel err {worst:.1e})")

    # 3. the checker: its own dump passes, damaged dumps fail naming the damage
    root = tempfile.mkdtemp(prefix="tessera-ref-selftest-")
    quiet = []
    try:
        good = os.path.join(root, "good")
        _write_sample(good)
        problems = compare_dump(good, log=quiet.append)
        check(problems == [], f"a faithful dump passes ({problems[:1]})")

        def damaged(tag, edit):
            path = os.path.join(root, tag)
            shutil.copytree(good, path)
            with h5py.File(os.path.join(path, "grads.h5"), "r+") as f:
                edit(f)
            return compare_dump(path, log=quiet.append)

        victim = "layers.1.moe.experts.w1"

        def perturb(f):
            g = f[victim][()].astype(np.float64)
            u = np.random.default_rng(3).standard_normal(g.shape)
            f[victim][...] = (g + 1e-3 * np.linalg.norm(g) * u / np.linalg.norm(u)).astype(np.float32)

        problems = damaged("perturbed", perturb)
        check(len(problems) == 1 and victim in problems[0],
              f"a gradient perturbed by 1e-3 relative fails: {problems}")

        def drop(f):
            del f["layers.2.attn.wk.weight"]

        problems = damaged("missing", drop)
        check(len(problems) == 1 and "layers.2.attn.wk.weight" in problems[0],
              f"a missing gradient fails: {problems}")

        def extra(f):
            f.create_dataset("layers.1.moe.gate.bias", data=np.zeros(cfg["n_experts"], np.float32))

        problems = damaged("extra", extra)
        check(len(problems) == 1 and "gate.bias" in problems[0], f"an extra gradient fails: {problems}")

        def loss_off(f):
            f.attrs["loss"] = np.float64(loss * (1 + 1e-3))

        problems = damaged("loss", loss_off)
        check(len(problems) == 1 and problems[0].startswith("loss"), f"a wrong loss fails: {problems}")

        # Give the token with the clearest decision a different expert set.
        layer = rm.moe_layers(cfg)[-1]
        n = int(details[layer]["margin"].argmax())
        chosen = set(routing[layer][n].tolist())
        other = next(e for e in range(cfg["n_experts"]) if e not in chosen)

        def reroute(f):
            r = f[f"routing/layers.{layer}"][()]
            r[n, -1] = other
            f[f"routing/layers.{layer}"][...] = r

        problems = damaged("routing", reroute)
        check(any(p.startswith(f"routing: layer {layer}: 1 of {n_tokens}") for p in problems),
              f"a wrong expert choice fails: {problems[:1]}")
        tie_log = []
        path = os.path.join(root, "routing")
        problems = compare_dump(path, tie_tol=1.0, log=tie_log.append)
        check(not any(p.startswith("routing") for p in problems) and
              any("precision ties" in line for line in tie_log),
              "the same choice within the tie tolerance is tolerated and reported")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    elapsed = time.time() - t0
    if failures:
        print(f"self-test: FAIL ({len(failures)} problems, {elapsed:.1f} s)")
        return 1
    print(f"self-test: PASS ({elapsed:.1f} s)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump_dir", nargs="?", help="directory written by tessera's dump tool")
    ap.add_argument("--self-test", action="store_true", help="check the reference and the checker")
    ap.add_argument("--write-sample", metavar="DIR",
                    help="write the self-test's reference dump to DIR (a sample of the format)")
    ap.add_argument("--rel-tol", type=float, default=DEFAULT_REL_TOL)
    ap.add_argument("--tie-tol", type=float, default=DEFAULT_TIE_TOL,
                    help="biased-score margin under which a routing difference is a precision tie")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.self_test:
        return _self_test()
    if args.write_sample:
        _write_sample(args.write_sample)
        print(f"wrote a reference dump to {args.write_sample}")
        return 0
    if not args.dump_dir:
        ap.error("DUMP_DIR or --self-test is required")
    return run_compare(args.dump_dir, args.rel_tol, args.tie_tol)


if __name__ == "__main__":
    sys.exit(main())
