#include "trainer/hf_config.h"

#include <stdexcept>

namespace tessera::trainer {

namespace {

using nlohmann::json;

// A config.json key that follows from the recipe.
struct RecipeKey {
  const char* hf;
  const char* recipe;
  json value;
};

std::vector<RecipeKey> recipe_keys(const ModelConfig& m) {
  const bool mla = m.attention == "mla";
  const int64_t mha_head_dim = m.dim / m.n_heads;
  return {
      {"vocab_size", "model.vocab_size", m.vocab_size},
      {"hidden_size", "model.dim", m.dim},
      {"intermediate_size", "model.inter_dim", m.inter_dim},
      {"moe_intermediate_size", "model.moe_inter_dim", m.moe_inter_dim},
      {"num_hidden_layers", "model.n_layers", m.n_layers},
      {"num_nextn_predict_layers", "model.mtp_depth", m.mtp_depth},
      {"num_attention_heads", "model.n_heads", m.n_heads},
      {"q_lora_rank", "model.q_lora_rank", mla && m.q_lora_rank > 0 ? json(m.q_lora_rank) : json()},
      {"kv_lora_rank", "model.kv_lora_rank", mla ? json(m.kv_lora_rank) : json()},
      {"qk_nope_head_dim", "model.qk_nope_head_dim", mla ? m.qk_nope_head_dim : 0},
      {"qk_rope_head_dim", "model.qk_rope_head_dim", mla ? m.qk_rope_head_dim : mha_head_dim},
      {"v_head_dim", "model.v_head_dim", mla ? m.v_head_dim : mha_head_dim},
      {"n_routed_experts", "model.n_experts", m.n_experts},
      {"n_shared_experts", "model.n_shared_experts", m.n_shared_experts},
      {"num_experts_per_tok", "model.top_k", m.top_k},
      {"n_group", "model.n_group", m.n_group},
      {"topk_group", "model.topk_group", m.topk_group},
      {"routed_scaling_factor", "model.route_scale", m.route_scale},
      {"first_k_dense_replace", "model.first_dense_layers", m.first_dense_layers},
      {"rms_norm_eps", "model.norm_eps", m.norm_eps},
      {"rope_theta", "model.rope_theta", m.rope_theta},
  };
}

// Keys with DeepSeek-V3's fixed values (what tessera computes); checked when present.
struct FixedKey {
  const char* hf;
  json value;
};
const std::vector<FixedKey>& fixed_keys() {
  static const std::vector<FixedKey> keys = {
      {"scoring_func", "sigmoid"},     {"topk_method", "noaux_tc"},
      {"norm_topk_prob", true},        {"moe_layer_freq", 1},
      {"hidden_act", "silu"},          {"tie_word_embeddings", false},
      {"attention_bias", false},
  };
  return keys;
}

// Numbers compare by value (rope_theta may be written 10000 or 10000.0).
bool same_value(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  return a == b;
}

}  // namespace

nlohmann::ordered_json hf_config_json(const ModelConfig& model, const std::string& torch_dtype,
                                      int64_t max_position_embeddings) {
  nlohmann::ordered_json c;
  c["architectures"] = {"DeepseekV3ForCausalLM"};
  c["model_type"] = "deepseek_v3";
  c["torch_dtype"] = torch_dtype;
  if (model.attention != "mla") c["tessera_attention"] = model.attention;
  for (const RecipeKey& k : recipe_keys(model)) c[k.hf] = k.value;
  c["num_key_value_heads"] = model.n_heads;
  for (const FixedKey& k : fixed_keys()) c[k.hf] = k.value;
  c["ep_size"] = 1;
  c["rope_scaling"] = nullptr;
  c["max_position_embeddings"] = max_position_embeddings;
  c["attention_dropout"] = 0.0;
  c["initializer_range"] = model.init_std;
  c["aux_loss_alpha"] = model.seq_aux_alpha;
  c["seq_aux"] = model.seq_aux_alpha > 0;
  c["use_cache"] = true;
  return c;
}

std::vector<std::string> check_hf_config(const json& config, const ModelConfig& model,
                                         const std::string& config_path) {
  if (!config.is_object()) throw std::runtime_error(config_path + ": not a JSON object");
  std::vector<std::string> problems;
  const std::string attention = config.value("tessera_attention", std::string("mla"));
  if (attention != model.attention) {
    problems.push_back("attention is " + attention + " (tessera_attention) but the recipe's " +
                       "model.attention is " + model.attention);
  }
  for (const RecipeKey& k : recipe_keys(model)) {
    if (!config.contains(k.hf)) {
      problems.push_back(std::string(k.hf) + " is missing (the recipe's " + k.recipe + " is " +
                         k.value.dump() + ")");
    } else if (!same_value(config[k.hf], k.value)) {
      problems.push_back(std::string(k.hf) + " is " + config[k.hf].dump() + " but the recipe's " +
                         k.recipe + " gives " + k.value.dump());
    }
  }
  for (const FixedKey& k : fixed_keys()) {
    if (config.contains(k.hf) && !same_value(config[k.hf], k.value)) {
      problems.push_back(std::string(k.hf) + " is " + config[k.hf].dump() + ", tessera computes " +
                         k.value.dump() + " only");
    }
  }
  if (config.contains("num_key_value_heads") &&
      !same_value(config["num_key_value_heads"], json(model.n_heads))) {
    problems.push_back("num_key_value_heads is " + config["num_key_value_heads"].dump() +
                       " but the recipe's model.n_heads gives " + std::to_string(model.n_heads));
  }
  if (!problems.empty()) {
    std::string text = config_path + ": does not match the recipe's model:";
    for (const std::string& p : problems) text += "\n  " + p;
    throw std::runtime_error(text);
  }
  std::vector<std::string> warnings;
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null()) {
    warnings.push_back(config_path + ": rope_scaling " + config["rope_scaling"].dump() +
                       " is ignored: tessera applies no RoPE scaling (rope_theta alone)");
  }
  return warnings;
}

HfNaming hf_naming(const ModelConfig& model) {
  return {model.n_layers, model.n_experts, model.mtp_depth};
}

}  // namespace tessera::trainer
