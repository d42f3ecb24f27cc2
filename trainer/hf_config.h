// config.json of a Hugging Face DeepSeek-V3 checkpoint (DeepseekV3Config's keys) from a recipe's
// model section, and the check of a checkpoint's config.json against one.
//
// Every key that shapes a tensor or the math is compared: hidden_size (model.dim),
// num_hidden_layers (n_layers), num_attention_heads (n_heads), q_lora_rank (null = 0),
// kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, vocab_size, intermediate_size
// (inter_dim), moe_intermediate_size (moe_inter_dim), n_routed_experts (n_experts),
// n_shared_experts, num_experts_per_tok (top_k), n_group, topk_group, routed_scaling_factor
// (route_scale), first_k_dense_replace (first_dense_layers), rms_norm_eps (norm_eps), rope_theta,
// num_nextn_predict_layers (mtp_depth). Keys tessera has no setting for must hold V3's values
// when present: scoring_func "sigmoid", topk_method "noaux_tc", norm_topk_prob true,
// moe_layer_freq 1, hidden_act "silu", tie_word_embeddings false, attention_bias false,
// num_key_value_heads = num_attention_heads.
//
// MHA models (not a DeepSeek-V3 shape) are written with "tessera_attention": "mha", no latent
// ranks (null), qk_nope_head_dim 0 and qk_rope_head_dim = v_head_dim = dim / n_heads; a config
// without tessera_attention is MLA.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/hf_names.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// torch_dtype: "bfloat16" | "float32"; max_position_embeddings: the sequence length trained at.
nlohmann::ordered_json hf_config_json(const ModelConfig& model, const std::string& torch_dtype,
                                      int64_t max_position_embeddings);

// Throws std::runtime_error starting with config_path and naming every key that differs (with
// the recipe key and both values) or is missing. Returns warnings: settings tessera cannot honour
// that leave the tensors as they are (rope_scaling: tessera applies none).
std::vector<std::string> check_hf_config(const nlohmann::json& config, const ModelConfig& model,
                                         const std::string& config_path);

HfNaming hf_naming(const ModelConfig& model);

}  // namespace tessera::trainer
