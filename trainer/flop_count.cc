#include "trainer/flop_count.h"

#include <algorithm>
#include <map>

#include "trainer/model.h"

namespace tessera::trainer {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The unit a parameter belongs to: "layers.3", "mtp.0", "head", or "" (the embedding lookup).
std::string unit_of(const std::string& name) {
  for (const std::string head : {"layers.", "mtp."}) {
    if (name.rfind(head, 0) == 0) {
      const size_t dot = name.find('.', head.size());
      return name.substr(0, dot);
    }
  }
  return name == "embed.weight" ? "" : "head";
}

// Maps that share their input and run as one GEMM (attention's q|k|v, the SwiGLU's w1|w3).
void fuse(std::vector<LinearShape>& linears, const std::vector<std::string>& parts,
          const std::string& fused_suffix) {
  for (size_t i = 0; i + parts.size() <= linears.size(); ++i) {
    bool match = true;
    for (size_t j = 0; j < parts.size() && match; ++j) {
      const LinearShape& l = linears[i + j];
      match = ends_with(l.name, parts[j]) && l.in == linears[i].in &&
              l.rows_per_token == linears[i].rows_per_token && l.count == linears[i].count &&
              l.name.substr(0, l.name.size() - parts[j].size()) ==
                  linears[i].name.substr(0, linears[i].name.size() - parts[0].size());
    }
    if (!match) continue;
    LinearShape fused = linears[i];
    fused.name = fused.name.substr(0, fused.name.size() - parts[0].size()) + fused_suffix;
    for (size_t j = 1; j < parts.size(); ++j) fused.out += linears[i + j].out;
    linears.erase(linears.begin() + static_cast<std::ptrdiff_t>(i),
                  linears.begin() + static_cast<std::ptrdiff_t>(i + parts.size()));
    linears.insert(linears.begin() + static_cast<std::ptrdiff_t>(i), fused);
  }
}

AttentionCore attention_core(const ModelConfig& m) {
  if (m.attention == "mla") return {m.n_heads, m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim};
  return {m.n_heads, m.dim / m.n_heads, m.dim / m.n_heads};
}

}  // namespace

double ComputeUnit::forward_flops_per_token(int64_t seq_len) const {
  double flops = attention.forward_flops_per_token(seq_len);
  for (const LinearShape& l : linears) flops += l.forward_flops_per_token();
  return flops;
}

ModelCompute describe_compute(const ModelConfig& m) {
  std::map<std::string, ComputeUnit> units;
  for (const ParamDesc& d : Model::WholeModelParams(m)) {
    const std::string unit = unit_of(d.name);
    if (unit.empty() || d.shape.size() < 2) continue;  // the embedding lookup, norms, biases
    LinearShape l;
    l.name = d.name.substr(0, d.name.size() - (ends_with(d.name, ".weight") ? 7 : 0));
    l.out = d.shape[d.shape.size() - 2];
    l.in = d.shape.back();
    if (d.region == ParamRegion::kExpert) {  // stacked (n_experts, out, in)
      l.count = d.shape[0];
      l.rows_per_token = static_cast<double>(m.top_k) / static_cast<double>(m.n_experts);
      l.routed_expert = true;
    }
    // fp32 in V3's recipe: the head and the router's gate (trainer/layers/*: block_precision).
    l.block_precision = !(d.name == "head.weight" || ends_with(d.name, "moe.gate.weight"));
    ComputeUnit& u = units[unit];
    u.name = unit;
    u.linears.push_back(l);
    if (ends_with(d.name, "moe.gate.weight")) u.moe = true;
  }
  ModelCompute out;
  const AttentionCore core = attention_core(m);
  auto finish = [&](ComputeUnit u, bool transformer) {
    fuse(u.linears, {"attn.wq", "attn.wk", "attn.wv"}, "attn.wqkv");
    fuse(u.linears, {"w1", "w3"}, "w13");
    u.dim = m.dim;
    if (transformer) {
      u.attention = core;
      u.top_k = u.moe ? m.top_k : 0;
      u.hidden = u.moe ? (m.n_shared_experts + m.top_k) * m.moe_inter_dim : m.inter_dim;
    }
    return u;
  };
  for (int64_t i = 0; i < m.n_layers; ++i) {
    out.layers.push_back(finish(units.at("layers." + std::to_string(i)), true));
  }
  out.head = finish(units.at("head"), false);
  for (int64_t d = 0; d < m.mtp_depth; ++d) {
    ComputeUnit u = finish(units.at("mtp." + std::to_string(d)), true);
    // Each depth runs the shared output head on its own hidden states.
    for (const LinearShape& h : out.head.linears) {
      LinearShape shared = h;
      shared.name = u.name + ".head(shared)";
      u.linears.push_back(shared);
    }
    out.mtp.push_back(u);
  }
  return out;
}

FlopsPerToken flops_per_token(const ModelConfig& m, int64_t seq_len) {
  const ModelCompute c = describe_compute(m);
  FlopsPerToken f;
  for (const ComputeUnit& u : c.layers) f.forward += u.forward_flops_per_token(seq_len);
  f.forward += c.head.forward_flops_per_token(seq_len);
  for (const ComputeUnit& u : c.mtp) f.mtp_forward += u.forward_flops_per_token(seq_len);
  f.forward += f.mtp_forward;
  f.training = 3.0 * f.forward;
  return f;
}

std::vector<GemmShape> gemm_shapes(const ModelConfig& m, int64_t tokens) {
  const ModelCompute c = describe_compute(m);
  std::vector<GemmShape> shapes;
  auto add = [&](const GemmShape& s) {
    if (std::find(shapes.begin(), shapes.end(), s) == shapes.end()) shapes.push_back(s);
  };
  auto add_unit = [&](const ComputeUnit& u) {
    for (const LinearShape& l : u.linears) {
      const int64_t rows = std::max<int64_t>(
          1, static_cast<int64_t>(static_cast<double>(tokens) * l.rows_per_token + 0.5));
      add({"nt", rows, l.out, l.in, l.block_precision});
      add({"nn", rows, l.in, l.out, l.block_precision});
      add({"tn", l.out, l.in, rows, l.block_precision});
    }
  };
  for (const ComputeUnit& u : c.layers) add_unit(u);
  add_unit(c.head);
  for (const ComputeUnit& u : c.mtp) add_unit(u);
  return shapes;
}

}  // namespace tessera::trainer
