// Parameter counts of the DeepSeek-V3 recipes against the published figures, and against a
// closed-form count written here from the model's shapes (not from the model code).
#include "trainer/param_count.h"

#include <gtest/gtest.h>

#include "tests/recipes_dir.h"
#include "trainer/recipe.h"

namespace tessera::trainer {
namespace {

using test_support::recipes_dir;

// One transformer layer of the config (attention with its norm, FFN with its norm).
struct LayerCounts {
  int64_t attention = 0, dense_ffn = 0, moe_total = 0, moe_routed = 0;
};
LayerCounts closed_form(const ModelConfig& m) {
  const int64_t D = m.dim, H = m.n_heads, dk = m.qk_nope_head_dim + m.qk_rope_head_dim;
  LayerCounts c;
  const int64_t q = m.q_lora_rank > 0 ? m.q_lora_rank * D + m.q_lora_rank + H * dk * m.q_lora_rank
                                      : H * dk * D;
  c.attention = D + q + (m.kv_lora_rank + m.qk_rope_head_dim) * D + m.kv_lora_rank +
                H * (m.qk_nope_head_dim + m.v_head_dim) * m.kv_lora_rank + D * H * m.v_head_dim;
  c.dense_ffn = D + 3 * D * m.inter_dim;
  c.moe_routed = m.n_experts * 3 * D * m.moe_inter_dim;
  c.moe_total = D + m.n_experts * D + m.n_experts + c.moe_routed +
                3 * D * m.n_shared_experts * m.moe_inter_dim;
  return c;
}

TEST(ParameterCounts, DeepSeekV3_671BIsThePublishedModel) {
  const Recipe r = load_recipe((recipes_dir() / "deepseek-v3-671b.yaml").string());
  const ModelConfig& m = r.model;
  const ParameterCounts counts = count_parameters(r);
  const LayerCounts l = closed_form(m);
  EXPECT_EQ(l.attention - m.dim, 187'107'328);  // V3-FACTS: MLA parameters per layer
  const int64_t dense_layers = m.first_dense_layers, moe_layers = m.n_layers - dense_layers;
  const int64_t total = 2 * m.vocab_size * m.dim + m.dim + m.n_layers * l.attention +
                        dense_layers * l.dense_ffn + moe_layers * l.moe_total;
  EXPECT_EQ(counts.total, total);
  EXPECT_NEAR(counts.total / 1e9, 671.03, 0.005);  // "671B", 671.03B main model
  const int64_t activated = total - m.vocab_size * m.dim -
                            moe_layers * l.moe_routed / m.n_experts * (m.n_experts - m.top_k);
  EXPECT_EQ(counts.activated, activated);
  EXPECT_NEAR(counts.activated / 1e9, 37.0, 0.5);  // "37B activated per token"
  // One MTP module: enorm, hnorm, eh_proj, an MoE layer, its final norm.
  EXPECT_EQ(counts.mtp, 3 * m.dim + 2 * m.dim * m.dim + l.attention + l.moe_total);
  // DualPipe: every block (embedding, head and MTP included) on two mirrored stages.
  ASSERT_EQ(r.parallel.schedule, "dualpipe");
  EXPECT_TRUE(counts.mirrored);
  int64_t held = 0;
  for (int64_t s : counts.per_stage) held += s;
  EXPECT_EQ(static_cast<int64_t>(counts.per_stage.size()), r.parallel.pp);
  EXPECT_EQ(held, 2 * (counts.total + counts.mtp));
}

TEST(ParameterCounts, DeepSeekV3_16BHasV2LitesShape) {
  const Recipe r = load_recipe((recipes_dir() / "deepseek-v3-16b.yaml").string());
  const ParameterCounts counts = count_parameters(r);
  EXPECT_FALSE(counts.mirrored);  // dualpipev: each block on one stage
  int64_t held = 0;
  for (int64_t s : counts.per_stage) held += s;
  EXPECT_EQ(held, counts.total + counts.mtp);
  EXPECT_NEAR(counts.total / 1e9, 15.7, 0.05);     // DeepSeek-V2-Lite: 15.7B
  EXPECT_NEAR(counts.activated / 1e9, 2.4, 0.1);   // 2.4B activated
}

TEST(ParameterCounts, FormatNamesEachFigure) {
  ParameterCounts c;
  c.total = 671'026'404'352;
  c.activated = 36'629'000'000;
  c.mtp = 11'607'000'000;
  c.mtp_activated = 688'000'000;
  c.per_stage = {61'240'000'000, 80'550'000'000};
  const std::string s = format_parameter_counts(c);
  EXPECT_NE(s.find("671.03B main model (36.63B activated per token), MTP modules 11.61B"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("0: 61.24B, 1: 80.55B"), std::string::npos) << s;
}

}  // namespace
}  // namespace tessera::trainer
