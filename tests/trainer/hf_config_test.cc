// config.json of Hugging Face DeepSeek-V3 checkpoints: what export writes matches its own recipe,
// DeepSeek-V3's published config matches a recipe of V3's shape, and a mismatch names the key.
#include "trainer/hf_config.h"

#include <gtest/gtest.h>

namespace tessera::trainer {
namespace {

using nlohmann::json;

// DeepSeek-V3's config.json (deepseek-ai/DeepSeek-V3 on the Hugging Face hub), abridged.
const char* kDeepSeekV3Config = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "attention_bias": false, "first_k_dense_replace": 3, "hidden_act": "silu",
  "hidden_size": 7168, "intermediate_size": 18432, "kv_lora_rank": 512,
  "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
  "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06, "rope_theta": 10000,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                   "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"},
  "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "topk_group": 4,
  "topk_method": "noaux_tc", "v_head_dim": 128, "vocab_size": 129280,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]}
})";

ModelConfig V3Model() {
  ModelConfig m;
  m.attention = "mla";
  m.vocab_size = 129280;
  m.dim = 7168;
  m.n_layers = 61;
  m.n_heads = 128;
  m.q_lora_rank = 1536;
  m.kv_lora_rank = 512;
  m.qk_nope_head_dim = 128;
  m.qk_rope_head_dim = 64;
  m.v_head_dim = 128;
  m.inter_dim = 18432;
  m.moe_inter_dim = 2048;
  m.n_experts = 256;
  m.n_shared_experts = 1;
  m.top_k = 8;
  m.n_group = 8;
  m.topk_group = 4;
  m.route_scale = 2.5;
  m.first_dense_layers = 3;
  m.norm_eps = 1e-6;
  m.rope_theta = 10000;
  m.mtp_depth = 1;
  return m;
}

std::string CheckError(const json& config, const ModelConfig& m) {
  try {
    check_hf_config(config, m, "hf/config.json");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(HfConfig, DeepSeekV3ConfigMatchesAV3Recipe) {
  const std::vector<std::string> warnings =
      check_hf_config(json::parse(kDeepSeekV3Config), V3Model(), "hf/config.json");
  ASSERT_EQ(warnings.size(), 1u);  // yarn RoPE scaling: tessera has none
  EXPECT_NE(warnings[0].find("rope_scaling"), std::string::npos);
  const HfNaming naming = hf_naming(V3Model());
  EXPECT_EQ(naming.n_layers, 61);
  EXPECT_EQ(naming.n_experts, 256);
  EXPECT_EQ(naming.mtp_depth, 1);
}

TEST(HfConfig, ExportedConfigMatchesItsRecipe) {
  ModelConfig mha;  // the defaults: MHA
  const json written = json::parse(hf_config_json(mha, "float32", 64).dump());
  EXPECT_TRUE(check_hf_config(written, mha, "x").empty());
  EXPECT_EQ(written["architectures"], json::array({"DeepseekV3ForCausalLM"}));
  EXPECT_EQ(written["model_type"], "deepseek_v3");
  EXPECT_EQ(written["tessera_attention"], "mha");
  EXPECT_TRUE(written["q_lora_rank"].is_null());
  EXPECT_EQ(written["qk_rope_head_dim"], mha.dim / mha.n_heads);
  EXPECT_EQ(written["torch_dtype"], "float32");
  EXPECT_EQ(written["scoring_func"], "sigmoid");
  EXPECT_EQ(written["topk_method"], "noaux_tc");
  EXPECT_EQ(written["norm_topk_prob"], true);

  ModelConfig mla = V3Model();
  mla.q_lora_rank = 0;  // a single wq: HF's q_lora_rank null
  const json mla_written = json::parse(hf_config_json(mla, "bfloat16", 4096).dump());
  EXPECT_FALSE(mla_written.contains("tessera_attention"));
  EXPECT_TRUE(mla_written["q_lora_rank"].is_null());
  EXPECT_EQ(mla_written["kv_lora_rank"], 512);
  EXPECT_EQ(mla_written["num_nextn_predict_layers"], 1);
  EXPECT_EQ(mla_written["routed_scaling_factor"], 2.5);
  EXPECT_TRUE(check_hf_config(mla_written, mla, "x").empty());
  EXPECT_NE(CheckError(mla_written, V3Model()).find("q_lora_rank is null but the recipe's "
                                                     "model.q_lora_rank gives 1536"),
            std::string::npos);
}

TEST(HfConfig, MismatchesNameTheKeys) {
  const ModelConfig m = V3Model();
  json c = json::parse(kDeepSeekV3Config);
  c["num_hidden_layers"] = 60;
  c["routed_scaling_factor"] = 2.0;
  const std::string error = CheckError(c, m);
  EXPECT_NE(error.find("hf/config.json"), std::string::npos) << error;
  EXPECT_NE(error.find("num_hidden_layers is 60 but the recipe's model.n_layers gives 61"),
            std::string::npos) << error;
  EXPECT_NE(error.find("routed_scaling_factor"), std::string::npos) << error;
  EXPECT_NE(error.find("model.route_scale"), std::string::npos) << error;

  c = json::parse(kDeepSeekV3Config);
  c.erase("kv_lora_rank");
  EXPECT_NE(CheckError(c, m).find("kv_lora_rank is missing"), std::string::npos);
  c = json::parse(kDeepSeekV3Config);
  c["scoring_func"] = "softmax";
  EXPECT_NE(CheckError(c, m).find("scoring_func"), std::string::npos);
  c = json::parse(kDeepSeekV3Config);
  ModelConfig other = m;
  other.mtp_depth = 0;
  EXPECT_NE(CheckError(c, other).find("num_nextn_predict_layers is 1 but the recipe's model.mtp_depth"),
            std::string::npos);
  ModelConfig mha = m;
  mha.attention = "mha";
  EXPECT_NE(CheckError(c, mha).find("model.attention is mha"), std::string::npos);
}

}  // namespace
}  // namespace tessera::trainer
