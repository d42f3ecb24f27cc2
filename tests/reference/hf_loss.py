#!/usr/bin/python3
"""Main cross-entropy and MTP losses of a Hugging Face DeepSeek-V3 checkpoint, in float64.

Usage: hf_loss.py MODEL_DIR TOKENS_JSON
  MODEL_DIR    config.json, *.safetensors (F32 or BF16 tensors) and, when there are several files,
               model.safetensors.index.json
  TOKENS_JSON  {"tokens": [[t_0, ..., t_{T+D}], ...]}: B rows of T + 1 + D token ids, where
               D = config.json's num_nextn_predict_layers (0 when absent)
Prints {"ce": main mean cross-entropy over the B*T positions, "mtp": [L_1, ..., L_D]} as JSON.

A second implementation of DESIGN.md's model (MLA, V3's MoE, MTP) in Hugging Face names and
config.json keys only. It shares no code with reference_model.py or tessera, so that agreement
checks both and the mapping between the two namings. It computes:
  - layer i: x += MLA(input_layernorm(x)); x += FFN(post_attention_layernorm(x)), the FFN an MoE
    when n_routed_experts is set, i >= first_k_dense_replace and i % moe_layer_freq == 0;
  - MoE: sigmoid scores, selection on scores + e_score_correction_bias limited to the topk_group
    groups with the largest sum of their top-2, gates the unbiased scores of the chosen normalised
    to 1 times routed_scaling_factor, plus the shared experts;
  - MTP depth k = d + 1 is layer num_hidden_layers + d with its own embed_tokens, enorm, hnorm,
    eh_proj and shared_head.{norm,head}: h^k = shared_head.norm(block(eh_proj([enorm(embed(
    t_{i+k})) ; hnorm(h^{k-1}_i)]))), h^0 = model.norm(x), L_k predicts t_{i+k+1}.
Not modelled (refused): MHA checkpoints, YaRN (rope_scaling must be null), other scoring or
activation functions. Balance losses are not computed. config.json keys not named here
(tessera's extras among them) do not change these losses and are ignored.
"""

import argparse
import glob
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# config.json values the math above assumes, when the key is present.
_ASSUMED = {"hidden_act": "silu", "scoring_func": "sigmoid", "topk_method": "noaux_tc",
            "norm_topk_prob": True, "rope_scaling": None}


class CheckpointError(Exception):
    """The directory or the tokens do not describe a model this script computes."""


class Checkpoint:
    """The tensors of a safetensors checkpoint directory, read by name on demand as float64.

    safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets [begin, end)}} (plus optional __metadata__), then the raw little-endian data.
    """

    def __init__(self, model_dir):
        index_path = os.path.join(model_dir, "model.safetensors.index.json")
        weight_map = None
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(os.path.basename(p) for p in
                           glob.glob(os.path.join(model_dir, "*.safetensors")))
        if not files:
            raise CheckpointError(f"{model_dir}: no *.safetensors files")
        self.entries = {}
        for name in files:
            path = os.path.join(model_dir, name)
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            header.pop("__metadata__", None)
            for tensor, entry in header.items():
                self.entries[tensor] = (path, 8 + size, entry)
        if weight_map is not None:
            for tensor, name in weight_map.items():
                if tensor not in self.entries or \
                        os.path.basename(self.entries[tensor][0]) != name:
                    raise CheckpointError(f"{index_path}: {tensor} is not in {name}")

    def get(self, name, shape):
        """Tensor `name` as float64, checked to have `shape`."""
        if name not in self.entries:
            raise CheckpointError(f"tensor {name} is missing")
        path, data_start, entry = self.entries[name]
        if list(entry["shape"]) != list(shape):
            raise CheckpointError(f"tensor {name}: shape {entry['shape']}, config.json implies "
                                  f"{list(shape)}")
        begin, end = entry["data_offsets"]
        raw = np.fromfile(path, dtype=np.uint8, count=end - begin, offset=data_start + begin)
        if entry["dtype"] == "F32":
            values = raw.view("<f4")
        elif entry["dtype"] == "BF16":
            # bf16 is the upper half of an fp32's bits
            values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise CheckpointError(f"tensor {name}: dtype {entry['dtype']}, expected F32 or BF16")
        return torch.from_numpy(values.astype(np.float64).reshape(shape))


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    for key, value in _ASSUMED.items():
        if key in c and c[key] != value:
            raise CheckpointError(f"config.json: {key} is {c[key]!r}; this script computes "
                                  f"{value!r}")
    if c.get("kv_lora_rank") is None:
        raise CheckpointError("config.json: kv_lora_rank is missing; only MLA checkpoints are "
                              "computed")
    return c


def rms_norm(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """Rotates pairs (x[2j], x[2j+1]) at position p by p * theta^(-2j/r); x: [B, T, ..., r].

    V3's Hugging Face code de-interleaves q_pe and k_pe before rotate_half; that permutes the same
    rotated pairs identically in q and k, so the scores equal these.
    """
    r = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)
    angle = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * inv_freq  # [T, r/2]
    angle = angle.view(x.shape[1], *([1] * (x.dim() - 3)), r // 2)
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class DeepSeekV3:
    """The model of config.json `c` with the tensors of checkpoint `ckpt`."""

    def __init__(self, c, ckpt):
        self.c, self.ckpt = c, ckpt
        self.dim = c["hidden_size"]
        self.eps = c["rms_norm_eps"]

    def w(self, name, *shape):
        return self.ckpt.get(name, shape)

    def linear(self, x, name, out_dim, in_dim):
        return x @ self.w(name + ".weight", out_dim, in_dim).t()

    def norm(self, x, name):
        return rms_norm(x, self.w(name + ".weight", x.shape[-1]), self.eps)

    def attention(self, x, p):
        """MLA, the score split as q_nope.k_nope + q_pe.k_pe (the shared k_pe enters every head)."""
        c = self.c
        bsz, seq, d = x.shape
        h, nope, rd, vd = (c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                           c["v_head_dim"])
        rank, qr = c["kv_lora_rank"], c.get("q_lora_rank")
        if qr:
            q = self.norm(self.linear(x, p + "q_a_proj", qr, d), p + "q_a_layernorm")
            q = self.linear(q, p + "q_b_proj", h * (nope + rd), qr)
        else:
            q = self.linear(x, p + "q_proj", h * (nope + rd), d)
        q = q.view(bsz, seq, h, nope + rd)
        q_nope, q_pe = q[..., :nope], rope(q[..., nope:], c["rope_theta"])
        compressed = self.linear(x, p + "kv_a_proj_with_mqa", rank + rd, d)
        k_pe = rope(compressed[..., rank:], c["rope_theta"])  # [B, T, rd]
        kv = self.linear(self.norm(compressed[..., :rank], p + "kv_a_layernorm"), p + "kv_b_proj",
                         h * (nope + vd), rank).view(bsz, seq, h, nope + vd)
        k_nope, value = kv[..., :nope], kv[..., nope:]
        scores = (torch.einsum("bthn,bshn->bhts", q_nope, k_nope) +
                  torch.einsum("bthr,bsr->bhts", q_pe, k_pe)) / math.sqrt(nope + rd)
        future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
        probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        out = torch.einsum("bhts,bshv->bthv", probs, value).reshape(bsz, seq, h * vd)
        return self.linear(out, p + "o_proj", d, h * vd)

    def swiglu(self, x, p, inter):
        d = self.dim
        a = self.linear(x, p + "gate_proj", inter, d)
        return self.linear(torch.nn.functional.silu(a) * self.linear(x, p + "up_proj", inter, d),
                           p + "down_proj", d, inter)

    def moe(self, x, p):
        """V3's MoE on x [N, D]."""
        c = self.c
        n_exp, k = c["n_routed_experts"], c["num_experts_per_tok"]
        inter = c["moe_intermediate_size"]
        groups, keep = c.get("n_group") or 1, c.get("topk_group") or 1
        scores = torch.sigmoid(self.linear(x, p + "gate", n_exp, self.dim))
        choice = scores + self.w(p + "gate.e_score_correction_bias", n_exp)
        if groups > 1:
            per = n_exp // groups
            group_score = choice.view(-1, groups, per).topk(min(2, per), dim=-1).values.sum(-1)
            kept = torch.zeros_like(group_score, dtype=torch.bool)
            kept.scatter_(1, group_score.topk(keep, dim=-1).indices, True)
            choice = choice.masked_fill(~kept.repeat_interleave(per, dim=1), float("-inf"))
        chosen = choice.topk(k, dim=-1).indices
        gates = scores.gather(1, chosen)
        gates = gates / gates.sum(-1, keepdim=True) * c["routed_scaling_factor"]
        combine = torch.zeros_like(scores).scatter(1, chosen, gates)  # [N, E], 0 where not chosen
        out = torch.zeros_like(x)
        for e in range(n_exp):
            rows = combine[:, e].nonzero().flatten()
            if len(rows):
                y = self.swiglu(x[rows], p + f"experts.{e}.", inter)
                out[rows] += combine[rows, e, None] * y
        if c.get("n_shared_experts"):
            out = out + self.swiglu(x, p + "shared_experts.", c["n_shared_experts"] * inter)
        return out

    def is_moe(self, i):
        c = self.c
        return (bool(c.get("n_routed_experts")) and i >= c.get("first_k_dense_replace", 0) and
                i % c.get("moe_layer_freq", 1) == 0)

    def layer(self, x, i):
        p = f"model.layers.{i}."
        x = x + self.attention(self.norm(x, p + "input_layernorm"), p + "self_attn.")
        h = self.norm(x, p + "post_attention_layernorm")
        if self.is_moe(i):
            return x + self.moe(h.reshape(-1, self.dim), p + "mlp.").view(x.shape)
        return x + self.swiglu(h, p + "mlp.", self.c["intermediate_size"])

    def cross_entropy(self, h, head, targets):
        logits = h @ self.w(head, self.c["vocab_size"], self.dim).t()
        picked = logits.gather(-1, targets[..., None])[..., 0]
        return (torch.logsumexp(logits, dim=-1) - picked).mean().item()

    def losses(self, tokens):
        """(main cross-entropy, [L_1 .. L_D]) on tokens [B, T+1+D]."""
        n, depth = self.c["num_hidden_layers"], self.c.get("num_nextn_predict_layers") or 0
        seq = tokens.shape[1] - 1 - depth
        vocab = self.c["vocab_size"]
        x = self.w("model.embed_tokens.weight", vocab, self.dim)[tokens[:, :seq]]
        for i in range(n):
            x = self.layer(x, i)
        h = self.norm(x, "model.norm")
        ce = self.cross_entropy(h, "lm_head.weight", tokens[:, 1:seq + 1])
        mtp = []
        for d in range(depth):
            p = f"model.layers.{n + d}."
            e = self.w(p + "embed_tokens.weight", vocab, self.dim)[tokens[:, d + 1:d + 1 + seq]]
            x = torch.cat([self.norm(e, p + "enorm"), self.norm(h, p + "hnorm")], dim=-1)
            x = self.layer(self.linear(x, p + "eh_proj", self.dim, 2 * self.dim), n + d)
            h = self.norm(x, p + "shared_head.norm")
            mtp.append(self.cross_entropy(h, p + "shared_head.head.weight",
                                          tokens[:, d + 2:d + 2 + seq]))
        return ce, mtp


def read_tokens(path, c):
    with open(path) as f:
        rows = json.load(f)["tokens"]
    depth = c.get("num_nextn_predict_layers") or 0
    if not rows or len({len(r) for r in rows}) != 1 or len(rows[0]) < 2 + depth:
        raise CheckpointError(f"{path}: tokens must be equal rows of T + 1 + {depth} ids, T >= 1")
    tokens = torch.tensor(rows, dtype=torch.int64)
    if tokens.min() < 0 or tokens.max() >= c["vocab_size"]:
        raise CheckpointError(f"{path}: token ids must lie in [0, {c['vocab_size']})")
    return tokens


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", help="Hugging Face DeepSeek-V3 directory")
    ap.add_argument("tokens_json", help='{"tokens": [[t_0 .. t_{T+D}], ...]}')
    args = ap.parse_args(argv)
    try:
        c = read_config(args.model_dir)
        tokens = read_tokens(args.tokens_json, c)
        with torch.no_grad():
            ce, mtp = DeepSeekV3(c, Checkpoint(args.model_dir)).losses(tokens)
    except (CheckpointError, OSError, KeyError, ValueError) as e:
        print(f"hf_loss: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"ce": ce, "mtp": mtp}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
