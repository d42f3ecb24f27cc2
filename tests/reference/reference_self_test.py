#!/usr/bin/python3
"""Checks of the reference's MLA and MTP that need no tessera.

Usage: reference_self_test.py   (exits 0 only when every check passes)

  (a) torch.autograd.gradcheck in float64 on tiny MLA (q_lora_rank 0 and > 0) and MTP (depth 1, 2)
      models, over every trainable parameter, outputs the loss and each L_k, routing fixed to the
      reference's own choice (the loss is smooth given the routing);
  (b) MLA against a straightforward formulation: per batch row, head and query position, loops over
      the keys with q = [q_nope; q_pe] and k = [k_nope; k_pe] materialised per head (the one k_pe
      copied into each) and RoPE by explicit cos/sin, to 1e-12;
  (c) mtp_depth 0 is the model without MTP: same parameters, loss and gradients;
  (d) mtp_lambda 0 leaves the main model's loss and gradients as they are without MTP (the MTP
      modules' balance losses, not scaled by lambda, are the only addition) and the L_k are finite;
  (e) hf_loss.py, a second implementation in Hugging Face names, on a checkpoint written here from
      the reference's parameters (F32 over two files with an index, BF16 in one file), gives the
      reference's losses to 1e-10; it reads the MTP layer's own embed_tokens copy.
compare.py --self-test checks the whole model against numpy loops and finite differences.
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_model as rm  # noqa: E402

# Tiny enough for gradcheck's full numerical Jacobian; distinct widths so a swapped split
# shows; two groups keeping one so the group limit acts.
TINY = {
    "vocab_size": 11, "dim": 6, "n_layers": 2, "n_heads": 2, "attention": "mla", "q_lora_rank": 0,
    "kv_lora_rank": 5, "qk_nope_head_dim": 3, "qk_rope_head_dim": 2, "v_head_dim": 4,
    "inter_dim": 7, "moe_inter_dim": 3, "n_experts": 4, "n_shared_experts": 1, "top_k": 2,
    "n_group": 2, "topk_group": 1, "route_scale": 2.5, "first_dense_layers": 1, "norm_eps": 1e-6,
    "rope_theta": 10000.0, "init_std": 0.4, "seq_aux_alpha": 0.05, "mtp_lambda": 0.3,
}


def _case(model, batch, seq, seed=5):
    """Config, float64 params (jittered norms, random gate biases) and tokens [B, T+1+D]."""
    cfg = rm.model_config(model)
    gen = torch.Generator().manual_seed(seed)
    params = rm.init_params(cfg, gen, torch.float64, norm_jitter=0.3, bias_std=0.05)
    tokens = torch.randint(0, cfg["vocab_size"], (batch, seq + 1 + cfg["mtp_depth"]), generator=gen)
    return cfg, params, tokens


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def _max_diff(a, b):
    return max((a[n] - b[n]).abs().max().item() for n in a)


# ---------------------------------------------------------------------------------------------
# (a) gradcheck

def gradcheck_case(model):
    """Runs gradcheck on `model` (batch 2, T 3); returns the number of parameters checked."""
    cfg, params, tokens = _case(model, 2, 3)
    info = rm.forward(cfg, params, tokens)[2]
    routing = {i: li["chosen"] for i, li in info.items()}
    names = [n for n in params if rm.is_trainable(n)]

    def losses(*values):
        p = dict(params)
        p.update(zip(names, values))
        mtp = []
        loss = rm.forward(cfg, p, tokens, forced_routing=routing, mtp_losses=mtp)[0]
        return (loss, *mtp)

    inputs = tuple(params[n].clone().requires_grad_(True) for n in names)
    torch.autograd.gradcheck(losses, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)
    return sum(t.numel() for t in inputs)


# ---------------------------------------------------------------------------------------------
# (b) MLA by explicit loops

def loop_mla(cfg, params, prefix, x):
    """MLA output [B, T, D] of normed input x, one query position and head at a time."""
    bsz, seq, dim = x.shape
    h, eps = cfg["n_heads"], cfg["norm_eps"]
    nope, rd, vd, rank = (cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"],
                          cfg["kv_lora_rank"])
    w = {n[len(prefix):]: t for n, t in params.items() if n.startswith(prefix)}

    def norm(v, weight):
        return v / torch.sqrt((v * v).mean() + eps) * weight

    def rotate(v, pos):
        out = v.clone()
        for j in range(len(v) // 2):
            angle = pos * cfg["rope_theta"] ** (-2.0 * j / len(v))
            c, s = math.cos(angle), math.sin(angle)
            out[2 * j] = v[2 * j] * c - v[2 * j + 1] * s
            out[2 * j + 1] = v[2 * j] * s + v[2 * j + 1] * c
        return out

    out = torch.zeros(bsz, seq, dim, dtype=x.dtype)
    for b in range(bsz):
        q, k, v = [], [], []  # [position][head]
        for t in range(seq):
            if cfg["q_lora_rank"] == 0:
                qt = w["wq.weight"] @ x[b, t]
            else:
                qt = w["wq_b.weight"] @ norm(w["wq_a.weight"] @ x[b, t], w["q_norm.weight"])
            a = w["wkv_a.weight"] @ x[b, t]
            k_pe = rotate(a[rank:], t)
            kv = w["wkv_b.weight"] @ norm(a[:rank], w["kv_norm.weight"])
            q.append([])
            k.append([])
            v.append([])
            for j in range(h):
                qj = qt[j * (nope + rd):(j + 1) * (nope + rd)]
                kvj = kv[j * (nope + vd):(j + 1) * (nope + vd)]
                q[t].append(torch.cat([qj[:nope], rotate(qj[nope:], t)]))
                k[t].append(torch.cat([kvj[:nope], k_pe]))
                v[t].append(kvj[nope:])
        for t in range(seq):
            heads = []
            for j in range(h):
                scores = torch.stack([q[t][j] @ k[u][j] for u in range(t + 1)])
                p = torch.softmax(scores / math.sqrt(nope + rd), dim=0)
                heads.append(sum(p[u] * v[u][j] for u in range(t + 1)))
            out[b, t] = w["wo.weight"] @ torch.cat(heads)
    return out


def mla_loop_error(model):
    """Max |reference - loops| / max |loops| of layer 0's MLA on a random input (batch 2, T 6)."""
    cfg, params, _ = _case(model, 2, 6)
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 6, cfg["dim"], generator=gen, dtype=torch.float64)
    rot = rm.rope_tables(6, rm.rope_dim(cfg), cfg["rope_theta"], torch.float64)
    mask = torch.full((6, 6), float("-inf"), dtype=torch.float64).triu(1)
    ref = rm.mla_attention(x, params, "layers.0.attn.", cfg, rot, mask)
    loops = loop_mla(cfg, params, "layers.0.attn.", x)
    return ((ref - loops).abs().max() / loops.abs().max()).item()


# ---------------------------------------------------------------------------------------------
# (c), (d) MTP depth 0 and lambda 0

def _step(cfg, params, tokens):
    """(loss, ce, grads, MTP losses, MoE info) in float64."""
    details = {}
    loss, ce, grads, _, mtp = rm.reference_step(cfg, params, tokens, details=details)
    return loss, ce, grads, mtp, details


# ---------------------------------------------------------------------------------------------
# (e) a Hugging Face checkpoint of reference parameters

# reference name after a block's prefix -> Hugging Face name after `model.layers.{i}.`
_HF_BLOCK = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wq_a.weight": "self_attn.q_a_proj.weight",
    "attn.q_norm.weight": "self_attn.q_a_layernorm.weight",
    "attn.wq_b.weight": "self_attn.q_b_proj.weight",
    "attn.wkv_a.weight": "self_attn.kv_a_proj_with_mqa.weight",
    "attn.kv_norm.weight": "self_attn.kv_a_layernorm.weight",
    "attn.wkv_b.weight": "self_attn.kv_b_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
    "moe.gate.weight": "mlp.gate.weight",
    "moe.gate.bias": "mlp.gate.e_score_correction_bias",
    "moe.shared.w1.weight": "mlp.shared_experts.gate_proj.weight",
    "moe.shared.w3.weight": "mlp.shared_experts.up_proj.weight",
    "moe.shared.w2.weight": "mlp.shared_experts.down_proj.weight",
}
_HF_EXPERT = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
_HF_MTP = {"enorm.weight": "enorm.weight", "hnorm.weight": "hnorm.weight",
           "eh_proj.weight": "eh_proj.weight", "norm.weight": "shared_head.norm.weight"}


def hf_tensors(cfg, params):
    """{Hugging Face name: tensor} of the reference parameters (MTP layers get their own copies of
    the tied embedding and head, as V3's checkpoint stores them)."""
    out = {"model.embed_tokens.weight": params["embed.weight"],
           "model.norm.weight": params["norm.weight"], "lm_head.weight": params["head.weight"]}
    n = cfg["n_layers"]
    for d in range(cfg["mtp_depth"]):
        p = f"model.layers.{n + d}."
        out[p + "embed_tokens.weight"] = params["embed.weight"]
        out[p + "shared_head.head.weight"] = params["head.weight"]
        for ref, hf in _HF_MTP.items():
            out[p + hf] = params[f"mtp.{d}.{ref}"]
    for i in range(n + cfg["mtp_depth"]):
        ref_p, hf_p = rm.block_prefix(cfg, i), f"model.layers.{i}."
        for name, t in params.items():
            if not name.startswith(ref_p):
                continue
            rest = name[len(ref_p):]
            if rest.startswith("moe.experts."):
                kind = _HF_EXPERT[rest.rsplit(".", 1)[1]]
                for e in range(cfg["n_experts"]):
                    out[hf_p + f"mlp.experts.{e}.{kind}.weight"] = t[e]
            else:
                out[hf_p + _HF_BLOCK[rest]] = t
    return out


def hf_config(cfg):
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": cfg["dim"], "num_hidden_layers": cfg["n_layers"],
        "num_attention_heads": cfg["n_heads"], "q_lora_rank": cfg["q_lora_rank"] or None,
        "kv_lora_rank": cfg["kv_lora_rank"], "qk_nope_head_dim": cfg["qk_nope_head_dim"],
        "qk_rope_head_dim": cfg["qk_rope_head_dim"], "v_head_dim": cfg["v_head_dim"],
        "vocab_size": cfg["vocab_size"], "intermediate_size": cfg["inter_dim"],
        "moe_intermediate_size": cfg["moe_inter_dim"], "n_routed_experts": cfg["n_experts"],
        "n_shared_experts": cfg["n_shared_experts"], "num_experts_per_tok": cfg["top_k"],
        "n_group": cfg["n_group"], "topk_group": cfg["topk_group"],
        "routed_scaling_factor": cfg["route_scale"],
        "first_k_dense_replace": cfg["first_dense_layers"], "moe_layer_freq": 1,
        "rms_norm_eps": cfg["norm_eps"], "rope_theta": cfg["rope_theta"],
        "num_nextn_predict_layers": cfg["mtp_depth"], "hidden_act": "silu",
        "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
        "rope_scaling": None, "tie_word_embeddings": False,
        "tessera": {"mtp_lambda": cfg["mtp_lambda"], "seq_aux_alpha": cfg["seq_aux_alpha"]},
    }


def write_safetensors(path, tensors, dtype):
    """Writes {name: tensor} as one safetensors file, values as F32 or BF16 (truncated: the callers
    pass values that bf16 holds exactly)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy(), dtype="<f4")
        blob = (a.view("<u4") >> 16).astype("<u2").tobytes() if dtype == "BF16" else a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writers do
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_hf_checkpoint(out_dir, cfg, params, dtype, n_files):
    """A Hugging Face DeepSeek-V3 directory of the reference parameters, tensors dealt over
    n_files files (with model.safetensors.index.json when n_files > 1)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=1)
    tensors = hf_tensors(cfg, params)
    files = [f"model-{j + 1:05d}-of-{n_files:05d}.safetensors" for j in range(n_files)]
    weight_map = {name: files[j % n_files] for j, name in enumerate(tensors)}
    for name in files:
        write_safetensors(os.path.join(out_dir, name),
                          {t: v for t, v in tensors.items() if weight_map[t] == name}, dtype)
    if n_files > 1:
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1)


def run_hf_loss(model_dir, tokens):
    tokens_path = os.path.join(model_dir, "tokens.json")
    with open(tokens_path, "w") as f:
        json.dump({"tokens": tokens.tolist()}, f)
    out = subprocess.run([sys.executable, os.path.join(HERE, "hf_loss.py"), model_dir, tokens_path],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------------

def main():
    torch.set_num_threads(1)
    t0 = time.time()
    failures = []

    def check(ok, what):
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failures.append(what)

    mla_q0 = dict(TINY)
    mla_q = dict(TINY, q_lora_rank=4)
    mtp1 = dict(TINY, mtp_depth=1)
    mtp2 = dict(TINY, q_lora_rank=4, mtp_depth=2)

    print("(a) gradcheck, float64, eps 1e-6, atol 1e-8, rtol 1e-6")
    for title, model in (("MLA q_lora_rank 0", mla_q0), ("MLA q_lora_rank 4", mla_q),
                         ("MTP depth 1 (MLA q_lora_rank 0)", mtp1),
                         ("MTP depth 2 (MLA q_lora_rank 4)", mtp2)):
        start = time.time()
        try:
            n = gradcheck_case(model)
            check(True, f"{title}: {n} parameters ({time.time() - start:.1f} s)")
        except RuntimeError as e:
            check(False, f"{title}: {str(e).splitlines()[0]}")

    print("(b) MLA against explicit per-head loops")
    for title, model in (("q_lora_rank 0", mla_q0), ("q_lora_rank 4", mla_q)):
        err = mla_loop_error(dict(model, init_std=0.6))
        check(err < 1e-12, f"{title}: max rel difference {err:.1e}")

    print("(c) mtp_depth 0 is the model without MTP")
    cfg_none, params, tokens = _case(mla_q, 2, 5)
    cfg_zero = rm.model_config(dict(mla_q, mtp_depth=0))
    check(rm.param_shapes(cfg_zero) == rm.param_shapes(cfg_none) and
          not any(n.startswith("mtp.") for n in rm.param_shapes(cfg_zero)),
          "same parameters, none under mtp.")
    base = _step(cfg_none, params, tokens)
    zero = _step(cfg_zero, params, tokens)
    check(zero[0] == base[0] and zero[1] == base[1] and zero[3] == [] and
          _max_diff(zero[2], base[2]) == 0.0,
          f"same loss ({zero[0]:.12f}), no MTP losses, same gradients")

    print("(d) mtp_lambda 0 leaves the main model alone")
    for alpha in (0.0, 0.05):
        main_cfg, params, tokens = _case(dict(mla_q, seq_aux_alpha=alpha), 2, 5)
        cfg = rm.model_config(dict(mla_q, seq_aux_alpha=alpha, mtp_depth=2, mtp_lambda=0.0))
        gen = torch.Generator().manual_seed(11)
        mtp_params = rm.init_params(cfg, gen, torch.float64, norm_jitter=0.3, bias_std=0.05)
        mtp_params.update(params)
        mtp_tokens = torch.cat([tokens, torch.randint(0, cfg["vocab_size"], (2, 2), generator=gen)],
                               dim=1)
        main = _step(main_cfg, params, tokens)
        loss, ce, grads, mtp, details = _step(cfg, mtp_params, mtp_tokens)
        mtp_aux = sum(details[i]["aux"].item() for i in rm.moe_layers(cfg) if i >= cfg["n_layers"])
        finite = len(mtp) == 2 and all(math.isfinite(m) and m > 0 for m in mtp)
        if alpha == 0:
            main_diff = _max_diff({n: grads[n] for n in main[2]}, main[2])
            mtp_grad = max(g.abs().max().item() for n, g in grads.items() if n.startswith("mtp."))
            check(loss == main[0] and ce == main[1] and main_diff == 0.0 and mtp_grad == 0.0 and
                  finite, f"seq_aux_alpha 0: same loss and gradients as without MTP (largest "
                          f"difference {main_diff:.1e}), MTP gradients 0, L_k "
                          f"{[round(m, 4) for m in mtp]}")
        else:
            # The MTP modules' balance losses count in full, and reach the main model through h^0.
            check(ce == main[1] and _rel(loss - mtp_aux, main[0]) < 1e-14 and finite,
                  f"seq_aux_alpha {alpha}: same ce, loss = main loss + the MTP modules' balance "
                  f"loss ({mtp_aux:.3e}), L_k {[round(m, 4) for m in mtp]}")

    print("(e) hf_loss.py on a Hugging Face checkpoint of reference parameters")
    root = tempfile.mkdtemp(prefix="tessera-hf-loss-")
    try:
        cases = (
            ("F32, MLA q_lora_rank 4, MTP depth 1, 2 files + index",
             dict(mtp2, mtp_depth=1, dim=8, n_layers=3), "F32", 2),
            # first_dense_layers 3 with 2 main layers: MTP layer 2 dense, MTP layer 3 MoE
            ("BF16, MLA q_lora_rank 0, MTP depth 2 (dense then MoE), 1 file",
             dict(mtp1, mtp_depth=2, first_dense_layers=3), "BF16", 1),
        )
        for j, (title, model, dtype, n_files) in enumerate(cases):
            cfg, params, tokens = _case(model, 3, 6, seed=21 + j)
            # the values the file holds, exactly
            stored = torch.bfloat16 if dtype == "BF16" else torch.float32
            params = {n: t.to(stored).to(torch.float64) for n, t in params.items()}
            _, ce, _, mtp, _ = _step(cfg, params, tokens)
            path = os.path.join(root, f"case{j}")
            write_hf_checkpoint(path, cfg, params, dtype, n_files)
            hf = run_hf_loss(path, tokens)
            err = max(_rel(a, b) for a, b in zip([hf["ce"]] + hf["mtp"], [ce] + mtp))
            check(len(hf["mtp"]) == len(mtp) and err < 1e-10,
                  f"{title}: ce {hf['ce']:.12f}, mtp {[round(m, 12) for m in hf['mtp']]}, "
                  f"max rel difference {err:.1e}")

        # The MTP layer's own embedding copy is the one read: reordering its rows moves L_1 only
        # (scaling would not: enorm undoes it).
        scaled = os.path.join(root, "scaled")
        shutil.copytree(path, scaled)
        tensors = hf_tensors(cfg, params)
        name = f"model.layers.{cfg['n_layers']}.embed_tokens.weight"
        tensors[name] = tensors[name].flip(0)
        write_safetensors(os.path.join(scaled, "model-00001-of-00001.safetensors"), tensors, dtype)
        moved = run_hf_loss(scaled, tokens)
        check(moved["ce"] == hf["ce"] and abs(moved["mtp"][0] - hf["mtp"][0]) > 1e-6,
              f"{name} is read: ce unchanged, L_1 {hf['mtp'][0]:.6f} -> {moved['mtp'][0]:.6f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    elapsed = time.time() - t0
    if failures:
        print(f"reference self-test: FAIL ({len(failures)} problems, {elapsed:.1f} s)")
        return 1
    print(f"reference self-test: PASS ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
