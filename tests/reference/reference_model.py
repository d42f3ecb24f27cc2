"""Independent PyTorch implementation of tessera's model (DESIGN.md "Model": MHA or MLA, MoE, MTP).

Written from DESIGN.md's math alone (MLA also checked against DeepSeek-V3's public
inference/model.py), never from tessera's C++, so that agreement between the two means something.
It serves two users:
  - tests/reference/compare.py runs it in float64 (autograd gradients) against a tessera dump;
  - bench/pytorch_moe_bench.py trains it in float32 as tessera's throughput peer.

Conventions (the contract with tessera):
  - parameters are a dict {name: tensor} named as in DESIGN.md; linear weights are [out, in] (y = x W^T);
    routed experts are stacked [n_experts, out, in]; `*.moe.gate.bias` steers selection only and
    never gets a gradient (see `is_trainable`).
  - tokens are [B, T+1+D] integers (D = mtp_depth): the main model reads tokens[:, :T] and predicts
    tokens[:, 1:T+1]; MTP depth k reads tokens[:, k:k+T] and predicts tokens[:, k+1:k+1+T].
  - MoE layers are numbered 0..n_layers-1 for the main model and n_layers + d for MTP module d
    (parameters under `mtp.{d}.block.`); routing is reported per MoE layer as int64 [B*T, top_k],
    token n = b*T + t, experts in descending biased-score order.
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
    "q_lora_rank": 0,
    "kv_lora_rank": 32,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
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
    "mtp_depth": 0,
    "mtp_lambda": 0.3,
}

_INT_KEYS = ("vocab_size", "dim", "n_layers", "n_heads", "q_lora_rank", "kv_lora_rank",
             "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "inter_dim", "moe_inter_dim",
             "n_experts", "n_shared_experts", "top_k", "n_group", "topk_group",
             "first_dense_layers", "mtp_depth")
_FLOAT_KEYS = ("route_scale", "norm_eps", "rope_theta", "init_std", "bias_update_gamma",
               "seq_aux_alpha", "mtp_lambda")


class ConfigError(ValueError):
    """A model config the reference cannot run; the message names the key."""


def model_config(section):
    """Returns a complete, validated config from a recipe's `model:` section (defaults filled in).

    Keys the reference does not know are ignored (e.g. a schedule of mtp_lambda: the reference
    computes one step, with `mtp_lambda`).
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
    for key in _FLOAT_KEYS:
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, float)):
            raise ConfigError(f"model.{key}: expected a number, got {cfg[key]!r}")
        cfg[key] = float(cfg[key])
    for key in ("vocab_size", "dim", "n_layers", "n_heads"):
        if cfg[key] < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {cfg[key]}")
    if cfg["attention"] == "mha":
        if cfg["dim"] % cfg["n_heads"] != 0 or (cfg["dim"] // cfg["n_heads"]) % 2 != 0:
            raise ConfigError(f"model.n_heads: dim ({cfg['dim']}) / n_heads ({cfg['n_heads']}) "
                              f"must be an even integer")
    elif cfg["attention"] == "mla":
        if cfg["q_lora_rank"] < 0:
            raise ConfigError(f"model.q_lora_rank: must be >= 0 (0 = a single wq), got "
                              f"{cfg['q_lora_rank']}")
        for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if cfg[key] < 1:
                raise ConfigError(f"model.{key}: must be >= 1, got {cfg[key]}")
        if cfg["qk_rope_head_dim"] % 2 != 0:
            raise ConfigError(f"model.qk_rope_head_dim: RoPE rotates pairs, must be even, got "
                              f"{cfg['qk_rope_head_dim']}")
    else:
        raise ConfigError(f"model.attention: expected 'mha' or 'mla', got {cfg['attention']!r}")
    if not 0 <= cfg["first_dense_layers"]:
        raise ConfigError(f"model.first_dense_layers: must be >= 0, got {cfg['first_dense_layers']}")
    if cfg["mtp_depth"] < 0:
        raise ConfigError(f"model.mtp_depth: must be >= 0, got {cfg['mtp_depth']}")
    if cfg["mtp_lambda"] < 0:
        raise ConfigError(f"model.mtp_lambda: must be >= 0, got {cfg['mtp_lambda']}")
    if moe_layers(cfg):
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


def is_moe_layer(cfg, i):
    """Layer i (main 0..n_layers-1, MTP module d at n_layers + d) has an MoE FFN."""
    return cfg["n_experts"] > 0 and i >= cfg["first_dense_layers"]


def moe_layers(cfg):
    """Every MoE layer in reporting order: the main model's, then the MTP modules' by depth."""
    return [i for i in range(cfg["n_layers"] + cfg["mtp_depth"]) if is_moe_layer(cfg, i)]


def block_prefix(cfg, i):
    """Parameter prefix of layer i's transformer block (see `moe_layers` for the numbering)."""
    return f"layers.{i}." if i < cfg["n_layers"] else f"mtp.{i - cfg['n_layers']}.block."


def rope_dim(cfg):
    """Width of the rotated part of a head: the whole head (MHA) or qk_rope_head_dim (MLA)."""
    return cfg["dim"] // cfg["n_heads"] if cfg["attention"] == "mha" else cfg["qk_rope_head_dim"]


def is_trainable(name):
    """gate.bias is moved by the load-balancing rule, never by gradients."""
    return not name.endswith(".moe.gate.bias")


def _attention_shapes(cfg, p):
    d, h = cfg["dim"], cfg["n_heads"]
    if cfg["attention"] == "mha":
        return {p + f"attn.{w}.weight": (d, d) for w in ("wq", "wk", "wv", "wo")}
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    qr, kvr = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    if qr == 0:
        shapes = {p + "attn.wq.weight": (h * (nope + rope), d)}
    else:
        shapes = {p + "attn.wq_a.weight": (qr, d), p + "attn.q_norm.weight": (qr,),
                  p + "attn.wq_b.weight": (h * (nope + rope), qr)}
    shapes[p + "attn.wkv_a.weight"] = (kvr + rope, d)
    shapes[p + "attn.kv_norm.weight"] = (kvr,)
    shapes[p + "attn.wkv_b.weight"] = (h * (nope + vd), kvr)
    shapes[p + "attn.wo.weight"] = (d, h * vd)
    return shapes


def _block_shapes(cfg, i):
    d = cfg["dim"]
    p = block_prefix(cfg, i)
    shapes = {p + "attn_norm.weight": (d,)}
    shapes.update(_attention_shapes(cfg, p))
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
    return shapes


def param_shapes(cfg):
    """{name: shape} of every parameter, in model order (MTP modules after the head)."""
    d, v, n = cfg["dim"], cfg["vocab_size"], cfg["n_layers"]
    shapes = {"embed.weight": (v, d)}
    for i in range(n):
        shapes.update(_block_shapes(cfg, i))
    shapes["norm.weight"] = (d,)
    shapes["head.weight"] = (v, d)
    for k in range(cfg["mtp_depth"]):
        p = f"mtp.{k}."
        shapes[p + "enorm.weight"] = (d,)
        shapes[p + "hnorm.weight"] = (d,)
        shapes[p + "eh_proj.weight"] = (d, 2 * d)
        shapes.update(_block_shapes(cfg, n + k))
        shapes[p + "norm.weight"] = (d,)
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

# Compute precision (tessera's `precision.compute`, DESIGN.md "Precision"): cfg["_compute"], set by
# `forward` from its `compute` argument; "fp32" (default) is plain math in the tensors' dtype.
# "bf16" rounds exactly the operands tessera rounds (kernels/cpu_backend.cc LowPrecisionGemm with
# kernels/gemm_operand.cc, the layers' `.precision = precision_` in trainer/layers/):
#   - every GEMM input of the blocks' linear maps (attention / MLA projections, dense FFN, shared
#     and routed experts, MTP eh_proj): forward r(x) r(W)^T, dgrad r(dy) r(W), wgrad r(dy)^T r(x),
#     products and sums in the tensors' dtype (tessera: fp32 accumulation); see `Bf16Linear`;
#   - the MoE exchanges' rows (trainer/layers/moe_block.cc, parallel/row_codec.h), also in one
#     process, where MoeBlock gives the rows that do not move the round trip an exchange would:
#     forward dispatch (token rows to the experts) and combine (expert outputs, before the gate),
#     backward dispatch (the gated output gradients) and combine (the expert input gradients),
#     each in its format of `EXCHANGE_FORMATS`; see `RowRoundTrip`.
# Embedding, output head, router gate, norms, attention core, losses: unrounded.
# r() rounds through float32 (the value tessera holds) to bf16, nearest even: `round_bf16`.
COMPUTE_PRECISIONS = ("fp32", "bf16")

# Wire format of the MoE exchanges under each compute precision: (forward dispatch, forward
# combine, backward dispatch, backward combine). Mirrors MoeBlock's dispatch_format_,
# combine_format_, dispatch_grads_format_ and combine_grads_format_ (trainer/layers/moe_block.cc
# and moe_block.h "Wire precision", the version of 2026-11-30 19:47 UTC): bf16 compute dispatches
# and combines bf16, the backward dispatch (gate * dy per expert row) as the dispatch, bf16, the
# backward combine (the experts' input gradients) fp32. (The dispatch roundings are invisible
# here: the experts' bf16 GEMMs round those rows anyway; the combine's are not.)
EXCHANGE_FORMATS = {
    "fp32": ("fp32", "fp32", "fp32", "fp32"),
    "bf16": ("bf16", "bf16", "bf16", "fp32"),
}


def round_bf16(t):
    """t rounded to bf16 (nearest, ties to even) via float32, returned in t's dtype."""
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


class TieControl:
    """Near-ties at the rounding points of computed values (activations, output gradients, rows;
    not weights, which both sides hold exactly): while `tie_control` is set, every such rounding
    is numbered in call order (deterministic for a given routing), the elements whose value lies
    within `tol` (relative) of a bf16 halfway point are recorded in `candidates` as
    (distance, call, flat index), and the elements in `flips` {(call, flat index)} are rounded the
    other way. tessera's fp32 value of such an element may lie on the other side of the halfway
    point than the reference's float64 one: compare.py follows tessera there (like a routing
    tie)."""

    def __init__(self, tol, flips=()):
        self.tol = tol
        self.flips = set(flips)
        self.candidates = []
        self.calls = 0

    def round(self, t):
        r = round_bf16(t)
        self.calls += 1
        call = self.calls
        flat = t.detach().reshape(-1).to(torch.float64)
        lo = flat.to(torch.float32).view(torch.int32).to(torch.int64) & ~0xFFFF
        # halfway point between the bf16 values at and above lo (by magnitude)
        mid = ((lo | 0x8000).to(torch.int32).view(torch.float32)).to(torch.float64)
        dist = (flat - mid).abs() / flat.abs().clamp_min(1e-30)
        # The nearest element of this rounding within [2^-25, tol]: nearer ones are ties at the
        # float32 level already (both sides hold the same float32 halfway point, to even).
        dist = dist.masked_fill(dist < 2.0 ** -25, float("inf"))
        if flat.numel() and dist.min().item() < self.tol:
            i = int(dist.argmin())
            self.candidates.append((dist[i].item(), call, i))
        mine = [i for (c, i) in self.flips if c == call]
        if mine:
            r = r.clone()
            rf = r.view(-1)
            for i in mine:
                v = flat[i].to(torch.float32).view(torch.int32).item() & ~0xFFFF
                down = torch.tensor([v], dtype=torch.int32).view(torch.float32).to(r.dtype)
                up = torch.tensor([v + 0x10000], dtype=torch.int32).view(torch.float32).to(r.dtype)
                rf[i] = up[0] if rf[i] == down[0] else down[0]
        return r


tie_control = None  # a TieControl while compare.py looks for near-ties; None otherwise


def _round_computed(t):
    return round_bf16(t) if tie_control is None else tie_control.round(t)


def _round_to(fmt, t):
    if fmt == "fp32":
        return t
    if fmt == "bf16":
        return _round_computed(t)
    raise ValueError(f"row format {fmt!r}: the reference knows fp32 and bf16")


class Bf16Linear(torch.autograd.Function):
    """y = r(x) r(W)^T with x [..., in], W [out, in]; backward dx = r(dy) r(W),
    dW = r(dy)^T r(x) (every GEMM input rounded, as tessera's bf16 GEMMs)."""

    @staticmethod
    def forward(ctx, x, w):
        xr, wr = _round_computed(x), round_bf16(w)
        ctx.save_for_backward(xr, wr)
        return xr @ wr.t()

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        dyr = _round_computed(dy)
        dx = dyr @ wr if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            dw = dyr.reshape(-1, dyr.shape[-1]).t() @ xr.reshape(-1, xr.shape[-1])
        return dx, dw


class RowRoundTrip(torch.autograd.Function):
    """An exchange's round trip: forward rows rounded to `fwd`, their gradient to `bwd`."""

    @staticmethod
    def forward(ctx, rows, fwd, bwd):
        ctx.bwd = bwd
        return _round_to(fwd, rows)

    @staticmethod
    def backward(ctx, grad):
        return _round_to(ctx.bwd, grad), None, None


def compute_of(cfg):
    return cfg.get("_compute", "fp32")


def linear(x, w, cfg):
    """x W^T for a block's linear map, in the compute precision of cfg."""
    if compute_of(cfg) == "bf16":
        return Bf16Linear.apply(x, w)
    return x @ w.t()


def exchange(rows, cfg, forward_format_index, backward_format_index):
    """MoE exchange round trip of rows under cfg's compute precision (see EXCHANGE_FORMATS)."""
    formats = EXCHANGE_FORMATS[compute_of(cfg)]
    fwd, bwd = formats[forward_format_index], formats[backward_format_index]
    if fwd == "fp32" and bwd == "fp32":
        return rows
    return RowRoundTrip.apply(rows, fwd, bwd)

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(seq_len, width, theta, dtype, device=None):
    """exp(i * pos * theta^(-2i/width)) for pos < seq_len, i < width/2: complex [T, width/2]."""
    i = torch.arange(0, width, 2, dtype=torch.float64, device=device)
    freqs = theta ** (-i / width)
    angles = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] * freqs[None, :]
    rot = torch.polar(torch.ones_like(angles), angles)
    return rot.to(torch.complex128 if dtype == torch.float64 else torch.complex64)


def apply_rope(x, rot):
    """Rotates adjacent pairs (2i, 2i+1) of the last dim, (a, b) as the complex a + ib times rot.

    x: [B, T, H, rope_dim] real (H may be 1, e.g. MLA's shared k_pe); rot: complex [T, rope_dim/2].
    """
    # contiguous: a slice of a wider head (MLA's q_pe) has strides view_as_complex rejects.
    xc = torch.view_as_complex(x.contiguous().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rot[None, :, None, :]).reshape(x.shape)


def causal_attention(q, k, v, mask_bias, scale):
    """softmax(scale * q k^T + mask) v per head. q, k: [B, T, H, d_qk]; v: [B, T, H, d_v].

    mask_bias: [T, T], 0 on and below the diagonal, -inf above. Returns [B, T, H * d_v].
    """
    bsz, seq, h, dqk = q.shape
    dv = v.shape[-1]
    q = q.transpose(1, 2).reshape(bsz * h, seq, dqk)
    k = k.transpose(1, 2).reshape(bsz * h, seq, dqk)
    v = v.transpose(1, 2).reshape(bsz * h, seq, dv)
    # scale * q k^T + mask in one pass
    scores = torch.baddbmm(mask_bias.expand(bsz * h, seq, seq), q, k.transpose(1, 2), alpha=scale)
    out = torch.bmm(torch.softmax(scores, dim=-1), v)  # [B*H, T, d_v]
    return out.view(bsz, h, seq, dv).transpose(1, 2).reshape(bsz, seq, h * dv)


def mha_attention(x, params, prefix, cfg, rot, mask_bias):
    """Causal multi-head attention with RoPE on all of q and k. x: [B, T, D] (already normed)."""
    bsz, seq, d = x.shape
    h = cfg["n_heads"]
    hd = d // h
    q = linear(x, params[prefix + "wq.weight"], cfg).view(bsz, seq, h, hd)
    k = linear(x, params[prefix + "wk.weight"], cfg).view(bsz, seq, h, hd)
    v = linear(x, params[prefix + "wv.weight"], cfg).view(bsz, seq, h, hd)
    out = causal_attention(apply_rope(q, rot), apply_rope(k, rot), v, mask_bias,
                           1.0 / math.sqrt(hd))
    return linear(out, params[prefix + "wo.weight"], cfg)


def mla_attention(x, params, prefix, cfg, rot, mask_bias):
    """DeepSeek-V3 multi-head latent attention (DESIGN.md `attention: mla`). x: [B, T, D] (normed).

    Heads are [nope ; rope] for q and k; RoPE touches only the rope part, and k's rope part is one
    vector per position shared by every head.
    """
    bsz, seq, _ = x.shape
    h, eps = cfg["n_heads"], cfg["norm_eps"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    if cfg["q_lora_rank"] == 0:
        q = linear(x, params[prefix + "wq.weight"], cfg)
    else:
        q = rms_norm(linear(x, params[prefix + "wq_a.weight"], cfg),
                     params[prefix + "q_norm.weight"], eps)
        q = linear(q, params[prefix + "wq_b.weight"], cfg)
    q_nope, q_pe = q.view(bsz, seq, h, nope + rope).split([nope, rope], dim=-1)
    kv = linear(x, params[prefix + "wkv_a.weight"], cfg)
    c_kv, k_pe = kv.split([cfg["kv_lora_rank"], rope], dim=-1)
    k_pe = apply_rope(k_pe.unsqueeze(2), rot)  # [B, T, 1, rope]
    kv = rms_norm(c_kv, params[prefix + "kv_norm.weight"], eps)
    kv = linear(kv, params[prefix + "wkv_b.weight"], cfg)
    k_nope, v = kv.view(bsz, seq, h, nope + vd).split([nope, vd], dim=-1)
    q = torch.cat([q_nope, apply_rope(q_pe, rot)], dim=-1)
    k = torch.cat([k_nope, k_pe.expand(bsz, seq, h, rope)], dim=-1)
    out = causal_attention(q, k, v, mask_bias, 1.0 / math.sqrt(nope + rope))
    return linear(out, params[prefix + "wo.weight"], cfg)


def swiglu(x, w1, w3, w2, cfg=None):
    """w2(silu(w1 x) * w3 x) with [out, in] weights; x: [N, in]; cfg: its compute precision."""
    cfg = cfg or {}
    return linear(F.silu(linear(x, w1, cfg)) * linear(x, w3, cfg), w2, cfg)


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
    # forward dispatch (token rows to the experts); its backward is the backward combine
    xs = exchange(x.index_select(0, token_of), cfg, 0, 3)
    gs = gates.reshape(-1).index_select(0, order)
    # unbind: its backward stacks the E expert gradients once (indexing w[e] would build and sum E
    # full-size [E, out, in] gradients).
    w1, w3, w2 = (params[prefix + "experts." + w].unbind(0) for w in ("w1", "w3", "w2"))
    outs = []
    start = 0
    for ei in range(e):
        c = counts[ei]
        if c:
            outs.append(swiglu(xs[start:start + c], w1[ei], w3[ei], w2[ei], cfg))
        start += c
    # forward combine (expert outputs, ungated); its backward is the backward dispatch of the
    # gated output gradients
    ys = exchange(torch.cat(outs, 0), cfg, 1, 2) * gs[:, None]
    out = torch.zeros_like(x).index_add(0, token_of, ys)

    if cfg["n_shared_experts"] > 0:
        out = out + swiglu(x, params[prefix + "shared.w1.weight"], params[prefix + "shared.w3.weight"],
                           params[prefix + "shared.w2.weight"], cfg)

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


def block(x, params, cfg, i, rot, mask_bias, forced_routing, info):
    """Transformer block of layer i (see `moe_layers`) on x: [B, T, D].

    Returns (x, balance loss of its MoE or 0); an MoE layer adds its info (see `moe`, plus "used")
    to info[i].
    """
    bsz, seq, d = x.shape
    p = block_prefix(cfg, i)
    eps = cfg["norm_eps"]
    attn = mha_attention if cfg["attention"] == "mha" else mla_attention
    x = x + attn(rms_norm(x, params[p + "attn_norm.weight"], eps), params, p + "attn.", cfg, rot,
                 mask_bias)
    hn = rms_norm(x, params[p + "ffn_norm.weight"], eps)
    if not is_moe_layer(cfg, i):
        y = swiglu(hn, params[p + "ffn.w1.weight"], params[p + "ffn.w3.weight"],
                   params[p + "ffn.w2.weight"], cfg)
        return x + y, x.new_zeros(())
    forced = None if forced_routing is None else forced_routing.get(i)
    y, used, layer_info = moe(hn.reshape(bsz * seq, d), params, p + "moe.", cfg, bsz, seq, forced)
    layer_info["used"] = used
    info[i] = layer_info
    return x + y.view(bsz, seq, d), layer_info["aux"]


def forward(cfg, params, tokens, forced_routing=None, mtp_losses=None, compute="fp32"):
    """Loss of the model on tokens [B, T+1+D] (D = mtp_depth).

    Returns (loss, ce_loss, layer_info): loss = ce_loss + every MoE layer's balance loss (MTP
    modules' included, not scaled by lambda) + mtp_lambda / D * sum_k L_k; ce_loss is the main
    model's; layer_info = {MoE layer: its info (see `moe`) plus "used" (the indices the computation
    used)}. forced_routing: optional {MoE layer: [B*T, k]}. If mtp_losses is a list, it receives
    L_1 .. L_D (0-d tensors). compute: the blocks' compute precision (see COMPUTE_PRECISIONS).
    """
    if compute not in COMPUTE_PRECISIONS:
        raise ConfigError(f"precision.compute: the reference computes {COMPUTE_PRECISIONS}, got "
                          f"{compute!r}")
    cfg = dict(cfg, _compute=compute)
    tokens = tokens.to(torch.int64)
    depth = cfg["mtp_depth"]
    seq = tokens.shape[1] - 1 - depth
    if seq < 1:
        raise ValueError(f"tokens: rows of {tokens.shape[1]} leave no position for mtp_depth "
                         f"{depth}")
    bsz = tokens.shape[0]
    dtype = params["embed.weight"].dtype
    dev = params["embed.weight"].device
    rot = rope_tables(seq, rope_dim(cfg), cfg["rope_theta"], dtype, dev)
    mask_bias = torch.full((seq, seq), float("-inf"), dtype=dtype, device=dev).triu(1)
    eps = cfg["norm_eps"]

    def cross_entropy(hidden, offset):
        """Mean cross-entropy of head(hidden) predicting tokens[:, offset : offset + T]."""
        logits = hidden @ params["head.weight"].t()
        return F.cross_entropy(logits.reshape(bsz * seq, -1),
                               tokens[:, offset:offset + seq].reshape(-1))

    x = F.embedding(tokens[:, :seq], params["embed.weight"])  # [B, T, D]
    aux_total = x.new_zeros(())
    info = {}
    for i in range(cfg["n_layers"]):
        x, aux = block(x, params, cfg, i, rot, mask_bias, forced_routing, info)
        aux_total = aux_total + aux
    h = rms_norm(x, params["norm.weight"], eps)  # h^0
    ce = cross_entropy(h, 1)
    loss = ce + aux_total
    # MTP depth k = m + 1 combines h^m at position i with the embedding of t_{i+k} (same position i,
    # no shift of h) and predicts t_{i+k+1}.
    for m in range(depth):
        p = f"mtp.{m}."
        e = rms_norm(F.embedding(tokens[:, m + 1:m + 1 + seq], params["embed.weight"]),
                     params[p + "enorm.weight"], eps)
        x = torch.cat([e, rms_norm(h, params[p + "hnorm.weight"], eps)], dim=-1)
        x = linear(x, params[p + "eh_proj.weight"], cfg)
        x, aux = block(x, params, cfg, cfg["n_layers"] + m, rot, mask_bias, forced_routing, info)
        h = rms_norm(x, params[p + "norm.weight"], eps)  # h^k
        mtp_k = cross_entropy(h, m + 2)
        loss = loss + aux + cfg["mtp_lambda"] / depth * mtp_k
        if mtp_losses is not None:
            mtp_losses.append(mtp_k)
    return loss, ce, info


def reference_step(cfg, params, tokens, forced_routing=None, dtype=torch.float64, details=None,
                   compute="fp32"):
    """Loss and gradients in `dtype` (float64 by default) of the model at `params`.

    params: {name: tensor or numpy array} (converted, never modified); tokens: [B, T+1+D].
    Returns (loss, ce_loss, {name: grad} for every trainable parameter,
             {MoE layer: the reference's own chosen experts [B*T, k] (int64)},
             [L_1 .. L_D] the MTP losses as floats).
    If `details` is a dict it receives the per-layer info of `forward` (margins, biased scores, ...).
    compute: the blocks' compute precision ("fp32" or "bf16", see COMPUTE_PRECISIONS); in bf16 the
    rounded values are computed on in `dtype` (float64: only the rounding points differ from exact).
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
    mtp_losses = []
    loss, ce, info = forward(cfg, leaves, tokens, forced_routing, mtp_losses, compute)
    loss.backward()
    grads = {n: t.grad.detach() if t.grad is not None else torch.zeros_like(t)
             for n, t in leaves.items() if is_trainable(n)}
    if details is not None:
        details.update(info)
    routing = {i: li["chosen"] for i, li in info.items()}
    return loss.item(), ce.item(), grads, routing, [m.item() for m in mtp_losses]
