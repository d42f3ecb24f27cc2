"""Independent PyTorch implementation of tessera's model (DESIGN.md "Model", attention: mha).

Written from DESIGN.md's math alone, never from tessera's C++, so that agreement between the two
means something. It serves two users:
  - tests/reference/compare.py runs it in float64 (autograd gradients) against a tessera dump;
  - bench/pytorch_moe_bench.py trains it in float32 as tessera's throughput peer.

Conventions (the contract with tessera):
  - parameters are a dict {name: tensor} named as in DESIGN.md; linear weights are [out, in] (y = x W^T);
    routed experts are stacked [n_experts, out, in]; `layers.{i}.moe.gate.bias` steers selection only
    and never gets a gradient (see `is_trainable`).
  - tokens are [B, T+1] integers: inputs tokens[:, :-1], targets tokens[:, 1:].
  - routing is reported per MoE layer as int64 [B*T, top_k], token n = b*T + t, experts in descending
    biased-score order.
"""

import math

import torch
import torch.nn.functional as F

# Defaults of the recipe's `model:` section (trainer/recipe.h ModelConfig).
MODEL_DEFAULTS = {
    "vocab_size": 256,
    "dim": 128,
    "n_layers": 2,
    "n_heads": 4,
    "attention": "mha",
    "inter_dim": 512,
    "moe_inter_dim": 128,
    "n_experts": 8,
    "n_shared_experts": 1,
    "top_k": 2,
    "n_group": 1,
    "topk_group": 1,
    "route_scale": 1.0,
    "first_dense_layers": 1,
    "norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "init_std": 0.02,
    "bias_update_gamma": 0.001,
    "seq_aux_alpha": 0.0,
}

_INT_KEYS = ("vocab_size", "dim", "n_layers", "n_heads", "inter_dim", "moe_inter_dim", "n_experts",
             "n_shared_experts", "top_k", "n_group", "topk_group", "first_dense_layers")


class ConfigError(ValueError):
    """A model config the reference cannot run; the message names the key."""


def model_config(section):
    """Returns a complete, validated config from a recipe's `model:` section (defaults filled in).

    Keys this reference does not model (e.g. MLA or MTP settings) are errors only when they would
    change the math: attention other than "mha", or a non-zero MTP depth.
    """
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"model: expected a mapping, got {type(section).__name__}")
    cfg = dict(MODEL_DEFAULTS)
    cfg.update(section)
    for key in _INT_KEYS:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"model.{key}: expected an integer, got {value!r}")
    for key in ("route_scale", "norm_eps", "rope_theta", "init_std", "bias_update_gamma",
                "seq_aux_alpha"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, float)):
            raise ConfigError(f"model.{key}: expected a number, got {cfg[key]!r}")
        cfg[key] = float(cfg[key])
    if cfg["attention"] != "mha":
        raise ConfigError(f"model.attention: the reference implements only 'mha', got "
                          f"{cfg['attention']!r}")
    for key, value in section.items():
        if "mtp" in key and value not in (0, None, False):
            raise ConfigError(f"model.{key}: multi-token prediction is not in the reference")
    for key in ("vocab_size", "dim", "n_layers", "n_heads"):
        if cfg[key] < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {cfg[key]}")
    if cfg["dim"] % cfg["n_heads"] != 0 or (cfg["dim"] // cfg["n_heads"]) % 2 != 0:
        raise ConfigError(f"model.n_heads: dim ({cfg['dim']}) / n_heads ({cfg['n_heads']}) must be "
                          f"an even integer")
    if not 0 <= cfg["first_dense_layers"]:
        raise ConfigError(f"model.first_dense_layers: must be >= 0, got {cfg['first_dense_layers']}")
    if has_moe(cfg):
        e, g = cfg["n_experts"], cfg["n_group"]
        if g < 1 or e % g != 0:
            raise ConfigError(f"model.n_group: must divide n_experts ({e}), got {g}")
        if not 1 <= cfg["topk_group"] <= g:
            raise ConfigError(f"model.topk_group: must be in [1, n_group ({g})], got "
                              f"{cfg['topk_group']}")
        if not 1 <= cfg["top_k"] <= cfg["topk_group"] * (e // g):
            raise ConfigError(f"model.top_k: must be in [1, topk_group * n_experts / n_group "
                              f"({cfg['topk_group'] * (e // g)})], got {cfg['top_k']}")
        if cfg["n_shared_experts"] < 0:
            raise ConfigError(f"model.n_shared_experts: must be >= 0, got "
                              f"{cfg['n_shared_experts']}")
    return cfg


def has_moe(cfg):
    return cfg["n_experts"] > 0 and cfg["first_dense_layers"] < cfg["n_layers"]


def is_moe_layer(cfg, i):
    return cfg["n_experts"] > 0 and i >= cfg["first_dense_layers"]


def moe_layers(cfg):
    return [i for i in range(cfg["n_layers"]) if is_moe_layer(cfg, i)]


def is_trainable(name):
    """gate.bias is moved by the load-balancing rule, never by gradients."""
    return not name.endswith(".moe.gate.bias")


def param_shapes(cfg):
    """{name: shape} of every parameter, in model order."""
    d, v = cfg["dim"], cfg["vocab_size"]
    shapes = {"embed.weight": (v, d)}
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        shapes[p + "attn_norm.weight"] = (d,)
        for w in ("wq", "wk", "wv", "wo"):
            shapes[p + f"attn.{w}.weight"] = (d, d)
        shapes[p + "ffn_norm.weight"] = (d,)
        if is_moe_layer(cfg, i):
            e, h = cfg["n_experts"], cfg["moe_inter_dim"]
            shapes[p + "moe.gate.weight"] = (e, d)
            shapes[p + "moe.gate.bias"] = (e,)
            shapes[p + "moe.experts.w1"] = (e, h, d)
            shapes[p + "moe.experts.w3"] = (e, h, d)
            shapes[p + "moe.experts.w2"] = (e, d, h)
            hs = cfg["n_shared_experts"] * h
            if hs > 0:
                shapes[p + "moe.shared.w1.weight"] = (hs, d)
                shapes[p + "moe.shared.w3.weight"] = (hs, d)
                shapes[p + "moe.shared.w2.weight"] = (d, hs)
        else:
            h = cfg["inter_dim"]
            shapes[p + "ffn.w1.weight"] = (h, d)
            shapes[p + "ffn.w3.weight"] = (h, d)
            shapes[p + "ffn.w2.weight"] = (d, h)
    shapes["norm.weight"] = (d,)
    shapes["head.weight"] = (v, d)
    return shapes


def init_params(cfg, generator=None, dtype=torch.float32, norm_jitter=0.0, bias_std=0.0):
    """Random parameters: weights ~ N(0, init_std), norms 1 (+ U(-j, j) jitter), gate.bias ~ N(0, bias_std).

    Jitter and bias are for tests, so that norms and biased selection are exercised.
    """
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.float64)
            if norm_jitter:
                t += (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * norm_jitter
        elif name.endswith("gate.bias"):
            t = torch.randn(shape, generator=generator, dtype=torch.float64) * bias_std
        else:
            t = torch.randn(shape, generator=generator, dtype=torch.float64) * cfg["init_std"]
        params[name] = t.to(dtype)
    return params


# ---------------------------------------------------------------------------------------------
# Layers (pure functions of tensors; autograd does the backward)

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(seq_len, head_dim, theta, dtype, device=None):
    """exp(i * pos * theta^(-2i/head_dim)) for pos < seq_len, i < head_dim/2: complex [T, head_dim/2]."""
    i = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device)
    freqs = theta ** (-i / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] * freqs[None, :]
    rot = torch.polar(torch.ones_like(angles), angles)
    return rot.to(torch.complex128 if dtype == torch.float64 else torch.complex64)


def apply_rope(x, rot):
    """Rotates adjacent pairs (2i, 2i+1) of the last dim, (a, b) as the complex a + ib times rot.

    x: [B, T, H, hd] real; rot: complex [T, hd/2].
    """
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rot[None, :, None, :]).reshape(x.shape)


def attention(x, params, prefix, cfg, rot, mask_bias):
    """Causal multi-head attention with RoPE on q and k. x: [B, T, D] (already normed).

    mask_bias: [T, T], 0 on and below the diagonal, -inf above.
    """
    bsz, seq, d = x.shape
    h = cfg["n_heads"]
    hd = d // h
    q = (x @ params[prefix + "wq.weight"].t()).view(bsz, seq, h, hd)
    k = (x @ params[prefix + "wk.weight"].t()).view(bsz, seq, h, hd)
    v = (x @ params[prefix + "wv.weight"].t()).view(bsz, seq, h, hd)
    q = apply_rope(q, rot).transpose(1, 2).reshape(bsz * h, seq, hd)
    k = apply_rope(k, rot).transpose(1, 2).reshape(bsz * h, seq, hd)
    v = v.transpose(1, 2).reshape(bsz * h, seq, hd)
    # scale * q k^T + mask in one pass
    scores = torch.baddbmm(mask_bias.expand(bsz * h, seq, seq), q, k.transpose(1, 2),
                           alpha=1.0 / math.sqrt(hd))
    out = torch.bmm(torch.softmax(scores, dim=-1), v)  # [B*H, T, hd]
    out = out.view(bsz, h, seq, hd).transpose(1, 2).reshape(bsz, seq, d)
    return out @ params[prefix + "wo.weight"].t()


def swiglu(x, w1, w3, w2):
    """w2(silu(w1 x) * w3 x) with [out, in] weights; x: [N, in]."""
    return (F.silu(x @ w1.t()) * (x @ w3.t())) @ w2.t()


def route(cfg, s, bias):
    """Group-limited top-k selection on biased sigmoid scores.

    s: [N, E] sigmoid scores; bias: [E]. Returns (indices [N, k] in descending biased-score order,
    biased scores [N, E], margin [N]). margin is how far the token is from a different choice: the
    smaller of the gap between the topk_group-th and next group score and the gap between the k-th
    and next eligible expert score (inf where no alternative exists).
    """
    with torch.no_grad():
        n, e = s.shape
        k, g, kg = cfg["top_k"], cfg["n_group"], cfg["topk_group"]
        biased = s + bias
        margin = torch.full((n,), float("inf"), dtype=s.dtype, device=s.device)
        eligible = biased
        if g > 1 and kg < g:
            per = e // g
            grouped = biased.view(n, g, per)
            group_score = grouped.topk(min(2, per), dim=-1).values.sum(-1)  # [N, G]
            top = group_score.topk(kg + 1, dim=-1).values
            margin = torch.minimum(margin, top[:, kg - 1] - top[:, kg])
            keep = group_score.topk(kg, dim=-1).indices
            drop = torch.ones(n, g, dtype=torch.bool, device=s.device).scatter_(1, keep, False)
            eligible = grouped.masked_fill(drop[:, :, None], float("-inf")).view(n, e)
        n_eligible = e if not (g > 1 and kg < g) else kg * (e // g)
        if k < n_eligible:
            top = eligible.topk(k + 1, dim=-1).values
            margin = torch.minimum(margin, top[:, k - 1] - top[:, k])
        idx = eligible.topk(k, dim=-1, sorted=True).indices
    return idx, biased, margin


def moe(x, params, prefix, cfg, bsz, seq, forced_idx=None):
    """DeepSeek-V3 MoE on x: [N, D] (N = bsz*seq, already normed).

    Returns (output [N, D], used indices [N, k], info) where info = {"chosen", "margin", "biased",
    "aux"}: the reference's own selection, its margin (see `route`), the biased scores and the
    sequence-wise balance loss of this layer (a 0-d tensor, 0 when seq_aux_alpha == 0).
    forced_idx, when given, replaces the reference's selection for the computation (gates, expert
    outputs and f_e counts), e.g. to follow tessera through a near-tie or to freeze routing.
    """
    n, d = x.shape
    e, k = cfg["n_experts"], cfg["top_k"]
    s = torch.sigmoid(x @ params[prefix + "gate.weight"].t())  # [N, E]
    chosen, biased, margin = route(cfg, s, params[prefix + "gate.bias"].to(s.dtype))
    idx = chosen if forced_idx is None else forced_idx.to(device=x.device, dtype=torch.int64)
    gates = s.gather(1, idx)
    gates = gates / gates.sum(-1, keepdim=True) * cfg["route_scale"]  # [N, k]

    # Sort the (token, slot) pairs by expert so each expert sees one contiguous slice.
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=e).tolist()
    token_of = order // k
    xs = x.index_select(0, token_of)
    gs = gates.reshape(-1).index_select(0, order)
    # unbind: its backward stacks the E expert gradients once (indexing w[e] would build and sum E
    # full-size [E, out, in] gradients).
    w1, w3, w2 = (params[prefix + "experts." + w].unbind(0) for w in ("w1", "w3", "w2"))
    outs = []
    start = 0
    for ei in range(e):
        c = counts[ei]
        if c:
            outs.append(swiglu(xs[start:start + c], w1[ei], w3[ei], w2[ei]))
        start += c
    ys = torch.cat(outs, 0) * gs[:, None]
    out = torch.zeros_like(x).index_add(0, token_of, ys)

    if cfg["n_shared_experts"] > 0:
        out = out + swiglu(x, params[prefix + "shared.w1.weight"], params[prefix + "shared.w3.weight"],
                           params[prefix + "shared.w2.weight"])

    aux = x.new_zeros(())
    if cfg["seq_aux_alpha"] > 0:
        p = (s / s.sum(-1, keepdim=True)).view(bsz, seq, e).mean(1)  # P_e per sequence [B, E]
        with torch.no_grad():
            seq_of = torch.arange(n, device=x.device).repeat_interleave(k) // seq
            cnt = torch.zeros(bsz * e, dtype=x.dtype, device=x.device)
            cnt.index_add_(0, seq_of * e + flat, torch.ones_like(flat, dtype=x.dtype))
            f = cnt.view(bsz, e) * (e / (k * seq))
        aux = cfg["seq_aux_alpha"] * (f * p).sum(-1).mean()
    return out, idx, {"chosen": chosen, "margin": margin, "biased": biased, "aux": aux}


def forward(cfg, params, tokens, forced_routing=None):
    """Loss of the model on tokens [B, T+1].

    Returns (loss, ce_loss, layer_info) with layer_info = {layer: moe info (see `moe`)} plus
    "used" (the indices the computation used). forced_routing: optional {layer: [B*T, k]}.
    """
    tokens = tokens.to(torch.int64)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    bsz, seq = inputs.shape
    d = cfg["dim"]
    dtype = params["embed.weight"].dtype
    dev = params["embed.weight"].device
    rot = rope_tables(seq, d // cfg["n_heads"], cfg["rope_theta"], dtype, dev)
    mask_bias = torch.full((seq, seq), float("-inf"), dtype=dtype, device=dev).triu(1)
    eps = cfg["norm_eps"]

    x = F.embedding(inputs, params["embed.weight"])  # [B, T, D]
    aux_total = x.new_zeros(())
    info = {}
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        x = x + attention(rms_norm(x, params[p + "attn_norm.weight"], eps), params, p + "attn.", cfg,
                          rot, mask_bias)
        hn = rms_norm(x, params[p + "ffn_norm.weight"], eps)
        if is_moe_layer(cfg, i):
            forced = None if forced_routing is None else forced_routing.get(i)
            y, used, layer_info = moe(hn.reshape(bsz * seq, d), params, p + "moe.", cfg, bsz, seq,
                                      forced)
            layer_info["used"] = used
            info[i] = layer_info
            aux_total = aux_total + layer_info["aux"]
            x = x + y.view(bsz, seq, d)
        else:
            x = x + swiglu(hn, params[p + "ffn.w1.weight"], params[p + "ffn.w3.weight"],
                           params[p + "ffn.w2.weight"])
    logits = rms_norm(x, params["norm.weight"], eps) @ params["head.weight"].t()
    ce = F.cross_entropy(logits.reshape(bsz * seq, -1), targets.reshape(-1))
    return ce + aux_total, ce, info


def reference_step(cfg, params, tokens, forced_routing=None, dtype=torch.float64, details=None):
    """Loss and gradients in `dtype` (float64 by default) of the model at `params`.

    params: {name: tensor or numpy array} (converted, never modified); tokens: [B, T+1].
    Returns (loss, ce_loss, {name: grad} for every trainable parameter,
             {layer: the reference's own chosen experts [B*T, k] (int64)}).
    If `details` is a dict it receives the per-layer info of `forward` (margins, biased scores, ...).
    """
    shapes = param_shapes(cfg)
    leaves = {}
    for name, shape in shapes.items():
        if name not in params:
            raise KeyError(f"parameter {name} is missing")
        t = torch.as_tensor(params[name]).detach().to(dtype).clone()
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"parameter {name}: shape {tuple(t.shape)}, the config says {shape}")
        t.requires_grad_(is_trainable(name))
        leaves[name] = t
    tokens = torch.as_tensor(tokens)
    loss, ce, info = forward(cfg, leaves, tokens, forced_routing)
    loss.backward()
    grads = {n: t.grad.detach() if t.grad is not None else torch.zeros_like(t)
             for n, t in leaves.items() if is_trainable(n)}
    if details is not None:
        details.update(info)
    routing = {i: li["chosen"] for i, li in info.items()}
    return loss.item(), ce.item(), grads, routing
