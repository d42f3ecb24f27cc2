#include "trainer/hf_names.h"

#include <stdexcept>

namespace tessera::trainer {

namespace {

struct NamePair {
  const char* tessera;
  const char* hf;
};

// A transformer layer's tensors, after "layers.{i}." / "model.layers.{i}.".
constexpr NamePair kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn.wq.weight", "self_attn.q_proj.weight"},  // MHA, and MLA with q_lora_rank 0
    {"attn.wk.weight", "self_attn.k_proj.weight"},  // MHA only
    {"attn.wv.weight", "self_attn.v_proj.weight"},  // MHA only
    {"attn.wo.weight", "self_attn.o_proj.weight"},
    {"attn.wq_a.weight", "self_attn.q_a_proj.weight"},
    {"attn.q_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn.wq_b.weight", "self_attn.q_b_proj.weight"},
    {"attn.wkv_a.weight", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attn.kv_norm.weight", "self_attn.kv_a_layernorm.weight"},
    {"attn.wkv_b.weight", "self_attn.kv_b_proj.weight"},
    {"ffn.w1.weight", "mlp.gate_proj.weight"},
    {"ffn.w3.weight", "mlp.up_proj.weight"},
    {"ffn.w2.weight", "mlp.down_proj.weight"},
    {"moe.gate.weight", "mlp.gate.weight"},
    {"moe.gate.bias", "mlp.gate.e_score_correction_bias"},
    {"moe.shared.w1.weight", "mlp.shared_experts.gate_proj.weight"},
    {"moe.shared.w3.weight", "mlp.shared_experts.up_proj.weight"},
    {"moe.shared.w2.weight", "mlp.shared_experts.down_proj.weight"},
};

// Stacked routed experts: tessera's [n_experts, out, in] tensor is HF's
// "mlp.experts.{e}.<hf>" for every expert e.
constexpr NamePair kExpertNames[] = {
    {"moe.experts.w1", "gate_proj.weight"},
    {"moe.experts.w3", "up_proj.weight"},
    {"moe.experts.w2", "down_proj.weight"},
};
constexpr const char* kHfExperts = "mlp.experts.";

constexpr NamePair kTopNames[] = {
    {"embed.weight", "model.embed_tokens.weight"},
    {"norm.weight", "model.norm.weight"},
    {"head.weight", "lm_head.weight"},
};

// An MTP module's own tensors, after "mtp.{d}." / "model.layers.{n_layers + d}.".
constexpr NamePair kMtpNames[] = {
    {"enorm.weight", "enorm.weight"},
    {"hnorm.weight", "hnorm.weight"},
    {"eh_proj.weight", "eh_proj.weight"},
    {"norm.weight", "shared_head.norm.weight"},
};
constexpr const char* kMtpBlock = "block.";

// HF's copies of tied tensors in each MTP layer.
constexpr NamePair kTiedCopies[] = {
    {"embed.weight", "embed_tokens.weight"},
    {"head.weight", "shared_head.head.weight"},
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Splits "<prefix><index>.<rest>" into index and rest; only canonical decimals ("7", not "07").
std::optional<std::pair<int64_t, std::string>> split_index(const std::string& name,
                                                           const std::string& prefix) {
  if (!starts_with(name, prefix)) return std::nullopt;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot - prefix.size() > 9) return std::nullopt;
  const std::string digits = name.substr(prefix.size(), dot - prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int64_t index = std::stoll(digits);
  if (std::to_string(index) != digits) return std::nullopt;
  return std::pair{index, name.substr(dot + 1)};
}

// HF names of a layer's tensor `rest` under hf_prefix ("model.layers.{j}."); empty if unknown.
std::vector<std::string> layer_hf_names(const std::string& rest, const std::string& hf_prefix,
                                        int64_t n_experts) {
  for (const NamePair& p : kLayerNames) {
    if (rest == p.tessera) return {hf_prefix + p.hf};
  }
  for (const NamePair& p : kExpertNames) {
    if (rest != p.tessera) continue;
    std::vector<std::string> out;
    for (int64_t e = 0; e < n_experts; ++e) {
      out.push_back(hf_prefix + kHfExperts + std::to_string(e) + "." + p.hf);
    }
    return out;
  }
  return {};
}

// The tessera source of an HF layer tensor `rest` (after "model.layers.{j}."), the tessera layer
// prefix being `prefix` ("layers.{j}." or "mtp.{d}.block.").
std::optional<HfSource> layer_source(const std::string& rest, const std::string& prefix,
                                     int64_t n_experts) {
  for (const NamePair& p : kLayerNames) {
    if (rest == p.hf) return HfSource{prefix + p.tessera};
  }
  const auto expert = split_index(rest, kHfExperts);
  if (!expert || expert->first >= n_experts) return std::nullopt;
  for (const NamePair& p : kExpertNames) {
    if (expert->second == p.hf) return HfSource{prefix + p.tessera, expert->first};
  }
  return std::nullopt;
}

std::string hf_layer_prefix(int64_t j) { return "model.layers." + std::to_string(j) + "."; }

}  // namespace

std::vector<std::string> hf_names_of(const std::string& tessera_name, const HfNaming& naming) {
  for (const NamePair& p : kTopNames) {
    if (tessera_name == p.tessera) return {p.hf};
  }
  std::vector<std::string> out;
  if (const auto layer = split_index(tessera_name, "layers.");
      layer && layer->first < naming.n_layers) {
    out = layer_hf_names(layer->second, hf_layer_prefix(layer->first), naming.n_experts);
  } else if (const auto mtp = split_index(tessera_name, "mtp.");
             mtp && mtp->first < naming.mtp_depth) {
    const std::string hf_prefix = hf_layer_prefix(naming.n_layers + mtp->first);
    const std::string& rest = mtp->second;
    for (const NamePair& p : kMtpNames) {
      if (rest == p.tessera) out = {hf_prefix + p.hf};
    }
    if (starts_with(rest, kMtpBlock)) {
      out = layer_hf_names(rest.substr(std::string(kMtpBlock).size()), hf_prefix, naming.n_experts);
    }
  }
  if (out.empty()) {
    throw std::invalid_argument("no Hugging Face name for tessera parameter '" + tessera_name +
                                "' (" + std::to_string(naming.n_layers) + " layers, MTP depth " +
                                std::to_string(naming.mtp_depth) + ")");
  }
  return out;
}

std::optional<HfSource> tessera_source_of(const std::string& hf_name, const HfNaming& naming) {
  for (const NamePair& p : kTopNames) {
    if (hf_name == p.hf) return HfSource{p.tessera};
  }
  const auto layer = split_index(hf_name, "model.layers.");
  if (!layer) return std::nullopt;
  const auto& [j, rest] = *layer;
  if (j < naming.n_layers) return layer_source(rest, "layers." + std::to_string(j) + ".", naming.n_experts);
  const int64_t d = j - naming.n_layers;
  if (d >= naming.mtp_depth) return std::nullopt;
  const std::string mtp_prefix = "mtp." + std::to_string(d) + ".";
  for (const NamePair& p : kMtpNames) {
    if (rest == p.hf) return HfSource{mtp_prefix + p.tessera};
  }
  for (const NamePair& p : kTiedCopies) {
    if (rest == p.hf) return HfSource{p.tessera, -1, true};
  }
  return layer_source(rest, mtp_prefix + kMtpBlock, naming.n_experts);
}

std::vector<HfTiedCopy> hf_tied_copies(const HfNaming& naming) {
  std::vector<HfTiedCopy> out;
  for (int64_t d = 0; d < naming.mtp_depth; ++d) {
    for (const NamePair& p : kTiedCopies) {
      out.push_back({hf_layer_prefix(naming.n_layers + d) + p.hf, p.tessera});
    }
  }
  return out;
}

}  // namespace tessera::trainer
