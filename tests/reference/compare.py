#!/usr/bin/python3
"""Checks a tessera dump against the independent PyTorch reference (reference_model.py).

Usage:
  compare.py DUMP_DIR [--rel-tol TOL] [--tie-tol 1e-5]
  compare.py --self-test

DUMP_DIR (written by tessera's dump tool) holds:
  model.yaml  a full tessera recipe; its `model:` section is the config (attention mha or mla,
              mtp_depth D, mtp_lambda, ...); `train.seq_len` is T when present
  model.h5    float32 parameters as root datasets named as in DESIGN.md (groups/attributes ignored),
              the MTP modules' `mtp.{d}.*` included
  batch.h5    `tokens`: int [B, T+1+D] (t_0 .. t_{T+D}; D = 0 without MTP)
  grads.h5    tessera's gradient of every trainable parameter as root datasets, root attributes
              `loss` (everything: CE + balance losses + mtp_lambda/D * sum_k L_k) and `ce_loss`
              (the main model's cross-entropy only), group `routing` with one int [B*T, k] per MoE
              layer named by its block's parameter prefix: `layers.{i}`, and `mtp.{d}.block` for
              MTP module d.
              With D > 0, optionally the per-depth MTP losses L_k (k = d + 1): root attributes
              `mtp_loss.{d}` (d = 0 .. D-1, as the MTP parameters are numbered), or one root
              attribute or dataset `mtp_loss` holding the D values in depth order. Without them
              L_k is checked only through `loss` (a note says so).

The reference runs in the dump's `precision.compute` (fp32 or bf16; reference_model.py
COMPUTE_PRECISIONS: bf16 rounds the operands tessera rounds, at the same points, and computes in
float64 from there). The default --rel-tol is the precision's (DEFAULT_REL_TOL, BF16_REL_TOL;
bf16 losses BF16_LOSS_TOL). bf16 rounding ties are followed like routing ties (_follow_bf16_ties).

Checks, all computed in float64 from the float32 parameters:
  (a) routing: per MoE layer and token, the reference's chosen expert set equals tessera's. A
      difference where the reference's decision margin (biased-score gap at the top-k / top-group
      boundary) is below --tie-tol is a precision tie: it is reported and tolerated. The reference
      computes with tessera's routing wherever that is well-formed, so (b) and (c) check the math
      given the routing while (a) checks the routing itself;
  (b) |loss_t - loss_ref| / |loss_ref| <= rel_tol, same for ce_loss and each MTP loss L_k;
  (c) per parameter ||g_t - g_ref|| / max(||g_ref||, 1e-12) <= rel_tol; a gradient missing on
      either side is a failure naming it.
  (d) bf16 only, that the check can tell bf16 from fp32: the bf16 reference's loss and gradients
      differ from the fp32 reference's by more than BF16_CONTRAST x rel_tol (worst over them), and
      tessera is closer to the bf16 reference than to the fp32 one by BF16_CONTRAST on the loss
      and on the worst gradient.
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
# precision.compute bf16: tessera and the bf16-mode reference round the same operands at the same
# points, so what remains is fp32 arithmetic (summation order, fp32 vs float64 intermediate
# values) plus the rare bf16 rounding that it flips: a value within ~1e-6 relative of a bf16
# halfway point lands on the other side, a 2^-8 change of one operand element that moves every
# gradient upstream of it by up to a few 1e-3 (_follow_bf16_ties follows tessera there).
# Measured on run_reference_bf16_check.sh's 3 cases (Intel Xeon, 2 threads): losses 2e-9..2e-8
# (MTP losses 1.6e-8); worst gradient 1.7e-6 and 2.2e-5 without a flip (median 4e-8), 1.7e-3 with
# one (base case; median 2.6e-5), 2.1e-6 after following it. The bf16 reference vs the fp32 one:
# loss 2.4e-4..4.4e-4, worst gradient 2.2e-2..4.3e-2; the backward combine rounded to bf16 where
# tessera keeps it fp32 (an earlier MoeBlock): worst gradient 5e-3..6e-3, median 3e-3, not
# absorbed by following ties. Hence 1e-6 on the losses (50x the measured) and 1e-4 on the
# gradients (4x the worst residual, 50x below a wrong exchange format, 200x below bf16-vs-fp32).
BF16_REL_TOL = 1e-4
BF16_LOSS_TOL = 1e-6
BF16_CONTRAST = 10.0
BF16_TIE_TOL = 2e-6
BF16_TIE_TRIES = 16
BF16_MAX_FLIPS = 4


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


def _mtp_losses(attrs, data, path, depth):
    """Tessera's per-depth MTP losses [L_1 .. L_D] from grads.h5 (see the module doc), or None.

    Removes them from `data` so that they are not taken for gradients.
    """
    per_depth = sorted(k for k in attrs if k.startswith("mtp_loss."))
    whole = data.pop("mtp_loss", attrs.get("mtp_loss"))
    if per_depth and whole is not None:
        raise DumpError(f"{path}: both mtp_loss and mtp_loss.{{d}} are present; write one")
    if per_depth:
        want = [f"mtp_loss.{d}" for d in range(depth)]
        if set(per_depth) != set(want):
            raise DumpError(f"{path}: MTP loss attributes {per_depth}, expected {want}")
        return [float(np.asarray(attrs[k]).reshape(())) for k in want]
    if whole is None:
        return None
    values = [float(v) for v in np.asarray(whole, dtype=np.float64).reshape(-1)]
    if len(values) != depth:
        raise DumpError(f"{path}: mtp_loss holds {len(values)} values, mtp_depth is {depth}")
    return values


def load_dump(dump_dir):
    """Returns (cfg, params, tokens, tessera) with tessera = {grads, loss, ce_loss, mtp_loss,
    routing, notes}; mtp_loss is None when the dump has no per-depth MTP losses."""
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
    if precision not in rm.COMPUTE_PRECISIONS:
        raise DumpError(f"{recipe_path}: precision.compute {precision!r}: the reference computes "
                        f"{', '.join(rm.COMPUTE_PRECISIONS)}")

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
    depth = cfg["mtp_depth"]
    if tokens.ndim != 2 or tokens.shape[1] < 2 + depth:
        raise DumpError(f"{batch_path}: tokens must be [B, T+1+mtp_depth] with T >= 1 and "
                        f"mtp_depth {depth}, got {tokens.shape}")
    seq_len = (recipe.get("train") or {}).get("seq_len")
    if seq_len is not None and tokens.shape[1] != seq_len + 1 + depth:
        raise DumpError(f"{batch_path}: tokens rows hold {tokens.shape[1]} ids, expected "
                        f"train.seq_len + 1 + model.mtp_depth = {seq_len + 1 + depth}")
    if tokens.min() < 0 or tokens.max() >= cfg["vocab_size"]:
        raise DumpError(f"{batch_path}: token ids must lie in [0, {cfg['vocab_size']}), got "
                        f"[{tokens.min()}, {tokens.max()}]")

    grads_path = os.path.join(dump_dir, "grads.h5")
    grads, attrs, routing = _root_datasets(grads_path)
    for key in ("loss", "ce_loss"):
        if key not in attrs:
            raise DumpError(f"{grads_path}: root attribute {key} is missing")
    mtp_loss = _mtp_losses(attrs, grads, grads_path, depth)
    if depth > 0 and mtp_loss is None:
        notes.append(f"note: {grads_path} has no per-depth MTP losses; they are checked only "
                     f"through loss")
    tessera = {
        "grads": grads,
        "loss": float(np.asarray(attrs["loss"]).reshape(())),
        "ce_loss": float(np.asarray(attrs["ce_loss"]).reshape(())),
        "mtp_loss": mtp_loss,
        "routing": routing,
        "notes": notes,
        "compute": precision,
    }
    return cfg, params, torch.from_numpy(tokens.astype(np.int64)), tessera


# ---------------------------------------------------------------------------------------------
# Comparing

def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def routing_name(cfg, i):
    """The dataset under grads.h5's `routing` of MoE layer i (see rm.moe_layers): its block's
    parameter prefix without the final dot."""
    return rm.block_prefix(cfg, i)[:-1]


def _check_routing_shapes(cfg, routing, n_tokens, problems):
    """Validated tessera routing {layer: int64 tensor [N, k]} for the MoE layers that have it."""
    valid = {}
    expected = {routing_name(cfg, i): i for i in rm.moe_layers(cfg)}
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


def _grad_rel(g_t, g_ref):
    g_t = torch.as_tensor(np.asarray(g_t, dtype=np.float64)) if not torch.is_tensor(g_t) else g_t
    return (g_t.to(torch.float64) - g_ref).norm().item() / max(g_ref.norm().item(), 1e-12)


def compare_dump(dump_dir, rel_tol=None, tie_tol=DEFAULT_TIE_TOL, log=print):
    """Runs every check on DUMP_DIR; returns the list of problems (empty = pass). Raises DumpError.

    rel_tol None: the dump's precision's (DEFAULT_REL_TOL, BF16_REL_TOL)."""
    cfg, params, tokens, tess = load_dump(dump_dir)
    for note in tess["notes"]:
        log(note)
    compute = tess["compute"]
    if rel_tol is None:
        rel_tol = BF16_REL_TOL if compute == "bf16" else DEFAULT_REL_TOL
    log(f"precision.compute {compute}: the reference rounds as tessera does; rel tol {rel_tol:g}")
    problems = []
    bsz, seq = tokens.shape[0], tokens.shape[1] - 1 - cfg["mtp_depth"]
    n_tokens = bsz * seq
    t_routing = _check_routing_shapes(cfg, tess["routing"], n_tokens, problems)

    # Follow tessera's routing where it gave a valid one (near-ties may legitimately differ); the
    # reference's own choice is still computed per layer on the same inputs and checked below.
    details = {}
    loss, ce, grads, own, mtp = rm.reference_step(cfg, params, tokens, forced_routing=t_routing,
                                                  details=details, compute=compute)
    if compute == "bf16":
        loss, ce, grads, mtp = _follow_bf16_ties(cfg, params, tokens, tess, t_routing, rel_tol,
                                                 (loss, ce, grads, mtp), log)

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
                f"routing: {routing_name(cfg, i)}: {len(real)} of {n_tokens} tokens choose other "
                f"experts; first token {n} (sequence {n // seq}, position {n % seq}): reference "
                f"{sorted(own[i][n].tolist())}, tessera {sorted(t_routing[i][n].tolist())}, biased "
                f"scores {{{scores}}}, reference margin {margin[n].item():.3e}")
    if n_ties:
        log(f"routing: {n_ties} token(s) differ within a biased-score margin < {tie_tol:g} "
            f"(precision ties); the reference followed tessera there")

    # (b) losses
    losses = [("loss", tess["loss"], loss), ("ce_loss", tess["ce_loss"], ce)]
    if tess["mtp_loss"] is not None:
        losses += [(f"mtp_loss.{d}", t, r) for d, (t, r) in enumerate(zip(tess["mtp_loss"], mtp))]
    loss_tol = min(rel_tol, BF16_LOSS_TOL) if compute == "bf16" else rel_tol
    for key, t_value, ref in losses:
        err = _rel(t_value, ref)
        log(f"{key}: tessera {t_value:.10f} reference {ref:.10f} rel err {err:.3e}")
        if not err <= loss_tol:
            problems.append(f"{key}: tessera {t_value!r} vs reference {ref!r}, rel err {err:.3e} "
                            f"> {loss_tol:g}")

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
    if compute == "bf16":
        _check_bf16_contrast(cfg, params, tokens, tess, t_routing, loss, grads, rel_tol, problems,
                             log)
    return problems


def _bf16_score(tess, step):
    """Sum of squared relative errors of tessera's loss and gradients against a reference step."""
    loss, _, grads, _, _ = step
    errs = [_rel(tess["loss"], loss)] + [_grad_rel(tess["grads"][n], g) for n, g in grads.items()
                                         if n in tess["grads"] and
                                         tuple(np.shape(tess["grads"][n])) == tuple(g.shape)]
    return sum(min(e, 1.0) ** 2 for e in errs), max(errs)


def _follow_bf16_ties(cfg, params, tokens, tess, t_routing, rel_tol, first, log):
    """bf16 rounding ties, followed like routing ties. A computed value within ~1e-6 (relative)
    of a bf16 halfway point may round one way in tessera (its fp32 value) and the other way in
    the reference (float64): one operand element then differs by a bf16 ulp (2^-8), and every
    gradient upstream of it by up to a few 1e-3 (measured: one flip put the base case's layer-0
    gradients 1.7e-3 off, 2.1e-6 once followed; in another run two flips, 3.6e-7 and 1.2e-7 from
    the halfway point, 2.8e-4 off, 2.8e-7 once followed). When a gradient fails the tolerance,
    the reference rounds the nearest-tie elements the other way one at a time (the nearest of each
    rounding within BF16_TIE_TOL, at most BF16_TIE_TRIES tries per round), keeps the flip that
    brings it closest to tessera (at least 2x closer), and repeats, at most BF16_MAX_FLIPS flips;
    the flips are reported. A wrong rounding point (thousands of elements off by up to a bf16
    ulp) is not within a few flips."""
    loss, ce, grads, mtp = first
    score, worst = _bf16_score(tess, (loss, ce, grads, None, mtp))
    if worst <= rel_tol:
        return loss, ce, grads, mtp
    flips = []
    while len(flips) < BF16_MAX_FLIPS and worst > rel_tol:
        control = rm.TieControl(BF16_TIE_TOL, flips)
        rm.tie_control = control
        try:
            rm.reference_step(cfg, params, tokens, forced_routing=t_routing, compute="bf16")
        finally:
            rm.tie_control = None
        tried = {tuple(f) for f in flips}
        cands = [(c, i) for _, c, i in sorted(control.candidates) if (c, i) not in tried]
        best = None
        for cand in cands[:BF16_TIE_TRIES]:
            rm.tie_control = rm.TieControl(BF16_TIE_TOL, flips + [cand])
            try:
                step = rm.reference_step(cfg, params, tokens, forced_routing=t_routing,
                                         compute="bf16")
            finally:
                rm.tie_control = None
            s, w = _bf16_score(tess, step)
            if best is None or s < best[0]:
                best = (s, w, cand, step)
        if best is None or not best[0] < score / 2:
            break
        score, worst = best[0], best[1]
        flips.append(best[2])
        loss, ce, grads, _, mtp = best[3]
    if flips:
        log(f"bf16 rounding: the reference followed tessera through {len(flips)} rounding tie(s) "
            f"(value within {BF16_TIE_TOL:g} of a bf16 halfway point, rounded the other way; "
            f"(rounding call, element): {flips}); worst rel err now {worst:.3e}")
    return loss, ce, grads, mtp


def _check_bf16_contrast(cfg, params, tokens, tess, t_routing, loss16, grads16, rel_tol, problems,
                         log):
    """Check (d): the fp32-mode reference on the same routing is far from the bf16 one (so the
    tolerance can fail), and tessera is much closer to the bf16 reference than to the fp32 one."""
    loss32, _, grads32, _, _ = rm.reference_step(cfg, params, tokens, forced_routing=t_routing,
                                                 compute="fp32")
    t_grads = tess["grads"]
    names = [n for n in grads16 if n in t_grads and tuple(np.shape(t_grads[n])) ==
             tuple(grads16[n].shape)]
    ref_gap = max([_rel(loss16, loss32)] + [_grad_rel(grads16[n], grads32[n]) for n in names])
    t16 = {n: _grad_rel(t_grads[n], grads16[n]) for n in names}
    t32 = {n: _grad_rel(t_grads[n], grads32[n]) for n in names}
    worst16, worst32 = max(t16.values()), max(t32.values())
    loss_t16, loss_t32 = _rel(tess["loss"], loss16), _rel(tess["loss"], loss32)
    log(f"bf16 vs fp32 reference: worst rel difference {ref_gap:.3e} (loss "
        f"{_rel(loss16, loss32):.3e}); tessera to bf16 ref: loss {loss_t16:.3e}, worst grad "
        f"{worst16:.3e}; to fp32 ref: loss "
        f"{loss_t32:.3e}, worst grad {worst32:.3e}")
    if not ref_gap > BF16_CONTRAST * rel_tol:
        problems.append(f"bf16 contrast: the bf16 and fp32 references differ by {ref_gap:.3e}, not "
                        f"more than {BF16_CONTRAST:g} x rel tol {rel_tol:g}: the check cannot tell "
                        f"them apart")
    if not loss_t32 > BF16_CONTRAST * loss_t16:
        problems.append(f"bf16 contrast: tessera's loss is {loss_t16:.3e} from the bf16 reference, "
                        f"{loss_t32:.3e} from the fp32 one: not {BF16_CONTRAST:g}x closer")
    if not worst32 > BF16_CONTRAST * worst16:
        problems.append(f"bf16 contrast: tessera's worst gradient is {worst16:.3e} from the bf16 "
                        f"reference, {worst32:.3e} from the fp32 one: not {BF16_CONTRAST:g}x "
                        f"closer")


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
# MLA with mutually different widths (a swapped split shows), and MTP depth 2.
SELF_TEST_MLA_MTP = dict(SELF_TEST_MODEL, attention="mla", q_lora_rank=6, kv_lora_rank=7,
                         qk_nope_head_dim=5, qk_rope_head_dim=4, v_head_dim=3, mtp_depth=2,
                         mtp_lambda=0.3)
SELF_TEST_MLA_Q0 = dict(SELF_TEST_MLA_MTP, q_lora_rank=0, mtp_depth=1)
SELF_TEST_BATCH, SELF_TEST_SEQ = 2, 7


def write_dump(dump_dir, model_section, train_section, params, tokens, grads, loss, ce, routing,
               mtp_losses=()):
    """Writes a dump in tessera's format (see the module doc), plus decoys the reader must ignore.

    MTP losses, if any, go to root attributes mtp_loss.{d}."""
    cfg = rm.model_config(model_section)
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
        for d, value in enumerate(mtp_losses):
            f.attrs[f"mtp_loss.{d}"] = np.float64(value)
        for i, r in routing.items():
            f.create_dataset(f"routing/{routing_name(cfg, i)}", data=np.asarray(r, dtype=np.int32))


def _naive_loss(cfg, params, tokens):
    """The DESIGN.md math written again with per-token, per-head loops in numpy float64.

    Returns (loss, ce, [L_1 .. L_D]). MLA is computed as plain attention per head on materialised
    q = [q_nope; rope(q_pe)] and k = [k_nope; rope(k_pe)] with the one k_pe copied into every head.
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    tok = np.asarray(tokens)
    depth = cfg["mtp_depth"]
    bsz, seq = tok.shape[0], tok.shape[1] - 1 - depth
    d, h, eps = cfg["dim"], cfg["n_heads"], cfg["norm_eps"]
    e, k, g, kg = cfg["n_experts"], cfg["top_k"], cfg["n_group"], cfg["topk_group"]

    def norm(v, w):
        return v / math.sqrt(np.mean(v * v) + eps) * w

    def silu(z):
        return z / (1 + np.exp(-z))

    def mlp(v, w1, w3, w2):
        return w2 @ (silu(w1 @ v) * (w3 @ v))

    def rope(v, pos):
        out = v.copy()
        for j in range(len(v) // 2):
            ang = pos * cfg["rope_theta"] ** (-2 * j / len(v))
            a, b = v[2 * j], v[2 * j + 1]
            out[2 * j] = a * math.cos(ang) - b * math.sin(ang)
            out[2 * j + 1] = a * math.sin(ang) + b * math.cos(ang)
        return out

    def heads_qkv(pre, v, t):
        """Per-head lists (q, k, v) at position t of the normed input v, and the softmax scale."""
        if cfg["attention"] == "mha":
            hd = d // h
            q, kk, vv = (p[pre + f"attn.{w}.weight"] @ v for w in ("wq", "wk", "wv"))
            sl = [slice(j * hd, (j + 1) * hd) for j in range(h)]
            return ([rope(q[s], t) for s in sl], [rope(kk[s], t) for s in sl], [vv[s] for s in sl],
                    1 / math.sqrt(hd))
        nope, rd, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
        if cfg["q_lora_rank"] == 0:
            q = p[pre + "attn.wq.weight"] @ v
        else:
            q = p[pre + "attn.wq_b.weight"] @ norm(p[pre + "attn.wq_a.weight"] @ v,
                                                    p[pre + "attn.q_norm.weight"])
        ckv = p[pre + "attn.wkv_a.weight"] @ v
        r = cfg["kv_lora_rank"]
        k_pe = rope(ckv[r:], t)
        kv = p[pre + "attn.wkv_b.weight"] @ norm(ckv[:r], p[pre + "attn.kv_norm.weight"])
        qs, ks, vs = [], [], []
        for j in range(h):
            qh = q[j * (nope + rd):(j + 1) * (nope + rd)]
            kvh = kv[j * (nope + vd):(j + 1) * (nope + vd)]
            qs.append(np.concatenate([qh[:nope], rope(qh[nope:], t)]))
            ks.append(np.concatenate([kvh[:nope], k_pe]))
            vs.append(kvh[nope:])
        return qs, ks, vs, 1 / math.sqrt(nope + rd)

    def run_block(i, x):
        """Layer i's block on one sequence x (a list of [D] vectors); returns (x, balance loss)."""
        pre = rm.block_prefix(cfg, i)
        qkv = [heads_qkv(pre, norm(x[t], p[pre + "attn_norm.weight"]), t) for t in range(seq)]
        att = []
        for t in range(seq):
            q, _, _, scale = qkv[t]
            o = []
            for hh in range(h):
                logits = np.array([q[hh] @ qkv[u][1][hh] * scale for u in range(t + 1)])
                w = np.exp(logits - logits.max())
                w /= w.sum()
                o.append(sum(w[u] * qkv[u][2][hh] for u in range(t + 1)))
            att.append(p[pre + "attn.wo.weight"] @ np.concatenate(o))
        x = [x[t] + att[t] for t in range(seq)]
        hn = [norm(v, p[pre + "ffn_norm.weight"]) for v in x]
        if not rm.is_moe_layer(cfg, i):
            return [x[t] + mlp(hn[t], p[pre + "ffn.w1.weight"], p[pre + "ffn.w3.weight"],
                               p[pre + "ffn.w2.weight"]) for t in range(seq)], 0.0
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
        return x, cfg["seq_aux_alpha"] * np.sum(e / (k * seq) * counts * p_sum / seq)

    def xent(hidden, target):
        logits = p["head.weight"] @ hidden
        m = logits.max()
        return m + math.log(np.exp(logits - m).sum()) - logits[target]

    total_ce, total_aux, total_mtp = 0.0, 0.0, np.zeros(depth)
    for b in range(bsz):
        x = [p["embed.weight"][tok[b, t]].copy() for t in range(seq)]
        for i in range(cfg["n_layers"]):
            x, aux = run_block(i, x)
            total_aux += aux
        hid = [norm(v, p["norm.weight"]) for v in x]
        total_ce += sum(xent(hid[t], tok[b, t + 1]) for t in range(seq))
        for m in range(depth):
            pre = f"mtp.{m}."
            emb = [norm(p["embed.weight"][tok[b, t + m + 1]], p[pre + "enorm.weight"])
                   for t in range(seq)]
            x = [p[pre + "eh_proj.weight"] @
                 np.concatenate([emb[t], norm(hid[t], p[pre + "hnorm.weight"])]) for t in range(seq)]
            x, aux = run_block(cfg["n_layers"] + m, x)
            total_aux += aux
            hid = [norm(v, p[pre + "norm.weight"]) for v in x]
            total_mtp[m] += sum(xent(hid[t], tok[b, t + m + 2]) for t in range(seq))
    ce = total_ce / (bsz * seq)
    mtp = list(total_mtp / (bsz * seq))
    loss = ce + total_aux / bsz + (cfg["mtp_lambda"] / depth * sum(mtp) if depth else 0.0)
    return loss, ce, mtp


def _self_test_case(model=SELF_TEST_MODEL):
    """The config, float32 params, tokens [B, T+1+D] and the reference's step on them."""
    cfg = rm.model_config(model)
    gen = torch.Generator().manual_seed(20240611)
    params = rm.init_params(cfg, gen, torch.float32, norm_jitter=0.3, bias_std=0.05)
    tokens = torch.randint(0, cfg["vocab_size"],
                           (SELF_TEST_BATCH, SELF_TEST_SEQ + 1 + cfg["mtp_depth"]), generator=gen)
    details = {}
    step = rm.reference_step(cfg, params, tokens, details=details)
    return cfg, params, tokens, step, details


def _write_sample(dump_dir, model=SELF_TEST_MODEL):
    _, params, tokens, (loss, ce, grads, routing, mtp), _ = _self_test_case(model)
    write_dump(dump_dir, model, {"seq_len": SELF_TEST_SEQ, "global_batch": SELF_TEST_BATCH},
               params, tokens, {n: g.numpy() for n, g in grads.items()}, loss, ce,
               {i: r.numpy() for i, r in routing.items()}, mtp)


def _fd_worst(cfg, params, tokens, grads, routing):
    """Worst relative error of the autograd gradient against central differences (routing fixed
    to the reference's own) along each parameter alone and 3 directions through all of them.

    Returns (worst error, number of directions, where the worst was)."""
    p64 = {n: t.to(torch.float64) for n, t in params.items()}

    def loss_at(shift):
        q = {n: (t + shift[n] if n in shift else t) for n, t in p64.items()}
        return rm.forward(cfg, q, tokens, forced_routing=routing)[0].item()

    dgen = torch.Generator().manual_seed(7)
    step = 1e-5
    worst, worst_at = 0.0, ""
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
        if err > worst:
            worst = err
            worst_at = (f"{next(iter(u))}" if len(u) == 1 else "all parameters") + \
                f": fd {fd:.10e} vs autograd {analytic:.10e}"
    return worst, len(directions), worst_at


def _self_test():
    t0 = time.time()
    failures = []

    def check(ok, what):
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failures.append(what)

    # 1. forward against an independent naive loop implementation of the same math, and
    # 2. gradients against central finite differences, routing fixed to the reference's own
    for title, model in (("MHA", SELF_TEST_MODEL),
                         ("MLA q_lora_rank 0, MTP depth 1", SELF_TEST_MLA_Q0),
                         ("MLA q_lora_rank 6, MTP depth 2", SELF_TEST_MLA_MTP)):
        cfg, params, tokens, (loss, ce, grads, routing, mtp), details = _self_test_case(model)
        print(f"self-test model, {title}: loss {loss:.6f} (ce {ce:.6f}, mtp "
              f"{[round(m, 6) for m in mtp]}), {len(grads)} trainable tensors")
        naive_loss, naive_ce, naive_mtp = _naive_loss(cfg, params, tokens)
        err = max(_rel(a, b) for a, b in zip([loss, ce] + mtp, [naive_loss, naive_ce] + naive_mtp))
        check(err < 1e-12, f"loss, ce and MTP losses equal the naive per-token, per-head "
                           f"implementation (loss {naive_loss:.12f}, worst rel err {err:.1e})")
        aux = sum(info["aux"].item() for info in details.values())
        check(aux > 1e-4, f"the balance loss contributes ({aux:.3e}, {len(details)} MoE layers)")
        experts_used = {e for r in routing.values() for e in r.flatten().tolist()}
        check(len(experts_used) >= cfg["n_experts"] - 1,
              f"routing spreads over experts ({len(experts_used)} of {cfg['n_experts']} used)")
        worst, n_dirs, worst_at = _fd_worst(cfg, params, tokens, grads, routing)
        check(worst <= 1e-6, f"autograd gradients match central differences on {n_dirs} directions "
                             f"(worst rel err {worst:.1e}, {worst_at})")

    # 3. the checker: its own dumps pass, damaged dumps fail naming the damage
    cfg, params, tokens, (loss, ce, grads, routing, mtp), details = _self_test_case()
    n_tokens = SELF_TEST_BATCH * SELF_TEST_SEQ
    root = tempfile.mkdtemp(prefix="tessera-ref-selftest-")
    quiet = []

    def damaged(base, tag, edit, file="grads.h5"):
        path = os.path.join(root, tag)
        shutil.copytree(base, path)
        with h5py.File(os.path.join(path, file), "r+") as f:
            edit(f)
        return compare_dump(path, log=quiet.append)

    try:
        good = os.path.join(root, "good")
        _write_sample(good)
        problems = compare_dump(good, log=quiet.append)
        check(problems == [], f"a faithful dump passes ({problems[:1]})")

        victim = "layers.1.moe.experts.w1"

        def perturb(f):
            g = f[victim][()].astype(np.float64)
            u = np.random.default_rng(3).standard_normal(g.shape)
            f[victim][...] = (g + 1e-3 * np.linalg.norm(g) * u / np.linalg.norm(u)).astype(np.float32)

        problems = damaged(good, "perturbed", perturb)
        check(len(problems) == 1 and victim in problems[0],
              f"a gradient perturbed by 1e-3 relative fails: {problems}")

        def drop(f):
            del f["layers.2.attn.wk.weight"]

        problems = damaged(good, "missing", drop)
        check(len(problems) == 1 and "layers.2.attn.wk.weight" in problems[0],
              f"a missing gradient fails: {problems}")

        def extra(f):
            f.create_dataset("layers.1.moe.gate.bias", data=np.zeros(cfg["n_experts"], np.float32))

        problems = damaged(good, "extra", extra)
        check(len(problems) == 1 and "gate.bias" in problems[0], f"an extra gradient fails: {problems}")

        def loss_off(f):
            f.attrs["loss"] = np.float64(loss * (1 + 1e-3))

        problems = damaged(good, "loss", loss_off)
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

        problems = damaged(good, "routing", reroute)
        check(any(p.startswith(f"routing: layers.{layer}: 1 of {n_tokens}") for p in problems),
              f"a wrong expert choice fails: {problems[:1]}")
        tie_log = []
        path = os.path.join(root, "routing")
        problems = compare_dump(path, tie_tol=1.0, log=tie_log.append)
        check(not any(p.startswith("routing") for p in problems) and
              any("precision ties" in line for line in tie_log),
              "the same choice within the tie tolerance is tolerated and reported")

        # MLA + MTP dumps: per-depth losses in either accepted form, or none; MTP routing names.
        cfg, _, _, (_, _, _, _, mtp), _ = _self_test_case(SELF_TEST_MLA_MTP)
        mtp_good = os.path.join(root, "mtp")
        _write_sample(mtp_good, SELF_TEST_MLA_MTP)
        log = []
        problems = compare_dump(mtp_good, log=log.append)
        check(problems == [] and any(line.startswith("mtp_loss.1:") for line in log),
              f"a faithful MLA + MTP dump passes, MTP losses compared ({problems[:1]})")

        def mtp_off(f):
            f.attrs["mtp_loss.1"] = np.float64(mtp[1] * (1 + 1e-3))

        problems = damaged(mtp_good, "mtp_off", mtp_off)
        check(len(problems) == 1 and problems[0].startswith("mtp_loss.1"),
              f"a wrong MTP loss fails: {problems}")

        def mtp_dataset(f):
            for d in range(cfg["mtp_depth"]):
                del f.attrs[f"mtp_loss.{d}"]
            f.create_dataset("mtp_loss", data=np.asarray(mtp, dtype=np.float64))

        problems = damaged(mtp_good, "mtp_dataset", mtp_dataset)
        check(problems == [], f"MTP losses as one dataset mtp_loss pass, not taken for a gradient "
                              f"({problems[:1]})")

        def mtp_none(f):
            for d in range(cfg["mtp_depth"]):
                del f.attrs[f"mtp_loss.{d}"]

        quiet.clear()
        problems = damaged(mtp_good, "mtp_none", mtp_none)
        check(problems == [] and any("no per-depth MTP losses" in line for line in quiet),
              f"a dump without MTP losses passes with a note ({problems[:1]})")

        def mtp_unrouted(f):
            del f["routing/mtp.1.block"]

        problems = damaged(mtp_good, "mtp_unrouted", mtp_unrouted)
        check(len(problems) == 1 and "routing/mtp.1.block" in problems[0],
              f"missing routing of MTP module 1 fails: {problems}")

        def short_rows(f):
            t = f["tokens"][()]
            del f["tokens"]
            f.create_dataset("tokens", data=t[:, :-cfg["mtp_depth"]])

        try:
            damaged(mtp_good, "short_rows", short_rows, file="batch.h5")
            check(False, "token rows without the MTP depth's extra tokens are refused")
        except DumpError as e:
            check("seq_len + 1 + model.mtp_depth" in str(e),
                  f"token rows without the MTP depth's extra tokens are refused ({e})")
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
    ap.add_argument("--rel-tol", type=float, default=None,
                    help=f"default: {DEFAULT_REL_TOL:g} (fp32), {BF16_REL_TOL:g} (bf16)")
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
