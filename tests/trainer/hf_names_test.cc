// The tessera <-> Hugging Face DeepSeek-V3 name mapping as data: DeepSeek-V3's own names for a
// few parameters (from its model.safetensors.index.json), and for an MHA model and an MLA + MTP
// one every tessera name maps to HF names no other parameter has, which map back to it.
#include "trainer/hf_names.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "trainer/model.h"

namespace tessera::trainer {
namespace {

// The parameter names of an MLA model with MTP, as DESIGN.md lists them (pure data: the model
// need not build them).
std::vector<std::string> MlaMtpNames(int n_layers, int first_dense, int mtp_depth, bool q_lora,
                                     bool shared) {
  std::vector<std::string> names = {"embed.weight"};
  auto layer = [&](const std::string& p, bool moe) {
    names.push_back(p + "attn_norm.weight");
    if (q_lora) {
      for (const char* n : {"attn.wq_a.weight", "attn.q_norm.weight", "attn.wq_b.weight"}) {
        names.push_back(p + n);
      }
    } else {
      names.push_back(p + "attn.wq.weight");
    }
    for (const char* n : {"attn.wkv_a.weight", "attn.kv_norm.weight", "attn.wkv_b.weight",
                          "attn.wo.weight", "ffn_norm.weight"}) {
      names.push_back(p + n);
    }
    if (!moe) {
      for (const char* n : {"ffn.w1.weight", "ffn.w3.weight", "ffn.w2.weight"}) names.push_back(p + n);
      return;
    }
    for (const char* n : {"moe.gate.weight", "moe.gate.bias", "moe.experts.w1", "moe.experts.w3",
                          "moe.experts.w2"}) {
      names.push_back(p + n);
    }
    if (shared) {
      for (const char* n : {"moe.shared.w1.weight", "moe.shared.w3.weight", "moe.shared.w2.weight"}) {
        names.push_back(p + n);
      }
    }
  };
  for (int i = 0; i < n_layers; ++i) layer("layers." + std::to_string(i) + ".", i >= first_dense);
  for (int d = 0; d < mtp_depth; ++d) {
    const std::string p = "mtp." + std::to_string(d) + ".";
    for (const char* n : {"enorm.weight", "hnorm.weight", "eh_proj.weight", "norm.weight"}) {
      names.push_back(p + n);
    }
    layer(p + "block.", true);
  }
  names.push_back("norm.weight");
  names.push_back("head.weight");
  return names;
}

bool IsStacked(const std::string& name) { return name.find("moe.experts.") != std::string::npos; }

// Every tessera name maps to one HF name (n_experts for a stacked expert tensor), no two
// parameters share an HF name, and each HF name maps back to its parameter (and expert row).
void ExpectBijective(const std::vector<std::string>& tessera_names, const HfNaming& naming) {
  std::map<std::string, HfSource> seen;
  for (const std::string& t : tessera_names) {
    const std::vector<std::string> hf = hf_names_of(t, naming);
    ASSERT_EQ(hf.size(), IsStacked(t) ? static_cast<size_t>(naming.n_experts) : 1u) << t;
    for (size_t e = 0; e < hf.size(); ++e) {
      const HfSource want{t, IsStacked(t) ? static_cast<int64_t>(e) : -1};
      EXPECT_TRUE(seen.emplace(hf[e], want).second) << hf[e] << " named twice";
      const std::optional<HfSource> back = tessera_source_of(hf[e], naming);
      ASSERT_TRUE(back.has_value()) << hf[e];
      EXPECT_EQ(*back, want) << hf[e] << " maps back to " << back->tessera_name << " [" << back->expert << "]";
    }
  }
  for (const HfTiedCopy& c : hf_tied_copies(naming)) {
    EXPECT_FALSE(seen.count(c.hf_name)) << c.hf_name << " is a parameter's name and a tied copy";
    EXPECT_EQ(tessera_source_of(c.hf_name, naming), (HfSource{c.tessera_name, -1, true}));
  }
}

TEST(HfNames, DeepSeekV3Names) {
  const HfNaming v3{61, 256, 1};
  auto one = [&](const std::string& t) { return hf_names_of(t, v3).at(0); };
  EXPECT_EQ(one("embed.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(one("norm.weight"), "model.norm.weight");
  EXPECT_EQ(one("head.weight"), "lm_head.weight");
  EXPECT_EQ(one("layers.0.attn_norm.weight"), "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(one("layers.0.ffn_norm.weight"), "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(one("layers.0.attn.wq_a.weight"), "model.layers.0.self_attn.q_a_proj.weight");
  EXPECT_EQ(one("layers.0.attn.q_norm.weight"), "model.layers.0.self_attn.q_a_layernorm.weight");
  EXPECT_EQ(one("layers.0.attn.wq_b.weight"), "model.layers.0.self_attn.q_b_proj.weight");
  EXPECT_EQ(one("layers.0.attn.wkv_a.weight"), "model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
  EXPECT_EQ(one("layers.0.attn.kv_norm.weight"), "model.layers.0.self_attn.kv_a_layernorm.weight");
  EXPECT_EQ(one("layers.0.attn.wkv_b.weight"), "model.layers.0.self_attn.kv_b_proj.weight");
  EXPECT_EQ(one("layers.0.attn.wo.weight"), "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(one("layers.2.ffn.w1.weight"), "model.layers.2.mlp.gate_proj.weight");
  EXPECT_EQ(one("layers.2.ffn.w3.weight"), "model.layers.2.mlp.up_proj.weight");
  EXPECT_EQ(one("layers.2.ffn.w2.weight"), "model.layers.2.mlp.down_proj.weight");
  EXPECT_EQ(one("layers.3.moe.gate.weight"), "model.layers.3.mlp.gate.weight");
  EXPECT_EQ(one("layers.3.moe.gate.bias"), "model.layers.3.mlp.gate.e_score_correction_bias");
  EXPECT_EQ(one("layers.3.moe.shared.w1.weight"), "model.layers.3.mlp.shared_experts.gate_proj.weight");
  EXPECT_EQ(one("layers.3.moe.shared.w2.weight"), "model.layers.3.mlp.shared_experts.down_proj.weight");
  const std::vector<std::string> experts = hf_names_of("layers.60.moe.experts.w2", v3);
  ASSERT_EQ(experts.size(), 256u);
  EXPECT_EQ(experts[0], "model.layers.60.mlp.experts.0.down_proj.weight");
  EXPECT_EQ(experts[255], "model.layers.60.mlp.experts.255.down_proj.weight");
  EXPECT_EQ(hf_names_of("mtp.0.block.moe.experts.w1", v3)[3], "model.layers.61.mlp.experts.3.gate_proj.weight");
  EXPECT_EQ(hf_names_of("mtp.0.block.moe.experts.w3", v3)[7], "model.layers.61.mlp.experts.7.up_proj.weight");
  EXPECT_EQ(one("mtp.0.enorm.weight"), "model.layers.61.enorm.weight");
  EXPECT_EQ(one("mtp.0.hnorm.weight"), "model.layers.61.hnorm.weight");
  EXPECT_EQ(one("mtp.0.eh_proj.weight"), "model.layers.61.eh_proj.weight");
  EXPECT_EQ(one("mtp.0.norm.weight"), "model.layers.61.shared_head.norm.weight");
  EXPECT_EQ(one("mtp.0.block.attn_norm.weight"), "model.layers.61.input_layernorm.weight");
  EXPECT_EQ(one("mtp.0.block.attn.wkv_b.weight"), "model.layers.61.self_attn.kv_b_proj.weight");
  const std::vector<HfTiedCopy> tied = hf_tied_copies(v3);
  ASSERT_EQ(tied.size(), 2u);
  EXPECT_EQ(tied[0].hf_name, "model.layers.61.embed_tokens.weight");
  EXPECT_EQ(tied[0].tessera_name, "embed.weight");
  EXPECT_EQ(tied[1].hf_name, "model.layers.61.shared_head.head.weight");
  EXPECT_EQ(tied[1].tessera_name, "head.weight");
}

TEST(HfNames, UnknownNamesAreRejected) {
  const HfNaming naming{4, 8, 1};
  for (const char* hf : {"model.layers.5.enorm.weight",                 // past the MTP layers
                         "model.layers.4.input_layernorm.bias",         // no such suffix
                         "model.layers.3.mlp.experts.8.up_proj.weight", // expert 8 of 8
                         "model.layers.03.input_layernorm.weight",      // not canonical
                         "model.layers.x.input_layernorm.weight",
                         "model.layers.2.enorm.weight",                 // MTP names in a main layer
                         "model.layers.2.self_attn.q_a_proj.weight_scale_inv",
                         "model.layers.4.mlp.experts.1.gate_proj",
                         "lm_head.bias", "model.layers", ""}) {
    EXPECT_FALSE(tessera_source_of(hf, naming).has_value()) << hf;
  }
  for (const char* t : {"layers.4.attn_norm.weight", "mtp.1.enorm.weight", "mtp.0.block.enorm.weight",
                        "layers.0.attn.wqkv.weight", "layers.0", "head"}) {
    EXPECT_THROW(hf_names_of(t, naming), std::invalid_argument) << t;
  }
}

TEST(HfNames, MhaModelIsBijective) {
  ModelConfig c;
  c.n_layers = 3;
  c.first_dense_layers = 1;
  c.n_experts = 4;
  c.n_shared_experts = 1;
  std::vector<std::string> names;
  for (const ParamDesc& d : Model::WholeModelParams(c)) names.push_back(d.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "layers.1.attn.wk.weight"), names.end());
  ExpectBijective(names, {c.n_layers, c.n_experts, 0});
  EXPECT_EQ(hf_names_of("layers.1.attn.wk.weight", {3, 4, 0}).at(0), "model.layers.1.self_attn.k_proj.weight");
  EXPECT_EQ(hf_names_of("layers.1.attn.wv.weight", {3, 4, 0}).at(0), "model.layers.1.self_attn.v_proj.weight");
}

TEST(HfNames, MlaMtpModelIsBijective) {
  for (bool q_lora : {false, true}) {
    for (int depth : {1, 2}) {
      const std::vector<std::string> names = MlaMtpNames(4, 1, depth, q_lora, /*shared=*/true);
      ExpectBijective(names, {4, 6, depth});
      EXPECT_EQ(hf_tied_copies({4, 6, depth}).size(), 2u * depth);
    }
  }
  ExpectBijective(MlaMtpNames(3, 3, 1, true, /*shared=*/false), {3, 2, 1});  // dense layers only
}

// The model builds exactly the names listed above (DESIGN.md's), so the mapping covers it.
TEST(HfNames, MlaMtpModelBuildsTheListedNames) {
  for (int64_t q_lora_rank : {0, 4}) {
    ModelConfig c;
    c.attention = "mla";
    c.q_lora_rank = q_lora_rank;
    c.n_layers = 3;
    c.first_dense_layers = 1;
    c.n_experts = 4;
    c.mtp_depth = 1;
    std::vector<std::string> built;
    for (const ParamDesc& d : Model::WholeModelParams(c)) built.push_back(d.name);
    std::vector<std::string> listed = MlaMtpNames(3, 1, 1, q_lora_rank > 0, /*shared=*/true);
    std::sort(built.begin(), built.end());
    std::sort(listed.begin(), listed.end());
    EXPECT_EQ(built, listed);
    ExpectBijective(built, {c.n_layers, c.n_experts, c.mtp_depth});
  }
}

}  // namespace
}  // namespace tessera::trainer
