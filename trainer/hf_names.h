// Names of tessera's parameters (DESIGN.md "Parameter names") in DeepSeek-V3's Hugging Face
// checkpoints (deepseek-ai/DeepSeek-V3: modeling_deepseek.py, model.safetensors.index.json,
// README_WEIGHTS.md; inference/convert.py maps the same names to its own). Pure data: a table of
// per-layer names plus the few top-level and MTP ones.
//
//   tessera                              Hugging Face
//   embed.weight                         model.embed_tokens.weight
//   norm.weight / head.weight            model.norm.weight / lm_head.weight
//   layers.{i}.<layer name>              model.layers.{i}.<HF layer name>   (table in hf_names.cc)
//   layers.{i}.moe.experts.w1 [E, ...]   model.layers.{i}.mlp.experts.{e}.gate_proj.weight, one
//                                        tensor per expert (w3 up_proj, w2 down_proj)
//   mtp.{d}.{enorm,hnorm,eh_proj}.weight model.layers.{L+d}.{enorm,hnorm,eh_proj}.weight
//   mtp.{d}.norm.weight                  model.layers.{L+d}.shared_head.norm.weight
//   mtp.{d}.block.<layer name>           model.layers.{L+d}.<HF layer name>
// with L = n_layers (HF numbers the MTP modules as layers after the main ones). HF's MTP layers
// also carry copies of the embedding and the head, model.layers.{L+d}.embed_tokens.weight and
// model.layers.{L+d}.shared_head.head.weight, which tessera ties to embed.weight / head.weight.
//
// MHA layers (not a DeepSeek-V3 shape: no HF class loads them; tessera reads them back) use the
// Llama-style q_proj, k_proj, v_proj, o_proj. No weight needs permuting: HF's DeepSeek-V3 stores
// the RoPE dimensions interleaved (apply_rotary_pos_emb de-interleaves before rotate_half), i.e.
// rotates adjacent pairs (2i, 2i+1) as inference/model.py and tessera do; eh_proj's input is
// [enorm(embedding); hnorm(hidden)] in both.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera::trainer {

// What the names depend on.
struct HfNaming {
  int64_t n_layers = 0;    // main-model layers; MTP module d is HF layer n_layers + d
  int64_t n_experts = 0;   // routed experts per MoE layer
  int64_t mtp_depth = 0;   // MTP modules
};

// Where a Hugging Face tensor's values live in tessera.
struct HfSource {
  std::string tessera_name;
  int64_t expert = -1;      // row of a stacked [n_experts, out, in] tensor; -1: the whole tensor
  bool tied_copy = false;   // an MTP layer's copy of embed.weight or head.weight
  friend bool operator==(const HfSource&, const HfSource&) = default;
};

// The HF names of a tessera parameter: one, or n_experts (in expert order) for a stacked routed
// expert tensor. Throws std::invalid_argument naming a name tessera does not have.
std::vector<std::string> hf_names_of(const std::string& tessera_name, const HfNaming& naming);

// The inverse of hf_names_of, plus the tied MTP copies. std::nullopt for a name that is not a
// parameter (a layer index past n_layers + mtp_depth, an expert index past n_experts, an unknown
// suffix).
std::optional<HfSource> tessera_source_of(const std::string& hf_name, const HfNaming& naming);

// The tied copies HF's MTP layers carry: for each module d, (HF name, tessera name it copies).
struct HfTiedCopy {
  std::string hf_name;
  std::string tessera_name;
};
std::vector<HfTiedCopy> hf_tied_copies(const HfNaming& naming);

}  // namespace tessera::trainer
