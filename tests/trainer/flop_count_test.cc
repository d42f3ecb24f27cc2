// FLOP counts against closed forms written here from the model's shapes (not from the model
// code), for MHA + dense, MLA + MoE + MTP and the published DeepSeek-V3 671B recipe.
#include "trainer/flop_count.h"

#include <gtest/gtest.h>

#include "tests/recipes_dir.h"
#include "trainer/param_count.h"

namespace tessera::trainer {
namespace {

using test_support::recipes_dir;

double causal(double heads, double qk, double v, double seq_len) {
  return 2.0 * heads * (qk + v) * (seq_len + 1) / 2.0;
}

TEST(FlopCount, DenseMhaModelByHand) {
  ModelConfig m;
  m.vocab_size = 100;
  m.dim = 64;
  m.n_layers = 2;
  m.n_heads = 4;
  m.inter_dim = 96;
  m.first_dense_layers = 2;  // no MoE
  const int64_t T = 32;
  // Per layer: q, k, v, o (dim x dim each) and the SwiGLU's w1, w3, w2; then the head.
  const double layer = 2.0 * (4 * 64 * 64 + 3 * 64 * 96) + causal(4, 16, 16, T);
  const double head = 2.0 * 64 * 100;
  const FlopsPerToken f = flops_per_token(m, T);
  EXPECT_DOUBLE_EQ(f.forward, 2 * layer + head);
  EXPECT_DOUBLE_EQ(f.training, 3 * f.forward);
  EXPECT_DOUBLE_EQ(f.mtp_forward, 0.0);

  // q|k|v and w1|w3 run as one GEMM each: the shapes calibration measures.
  const ModelCompute c = describe_compute(m);
  ASSERT_EQ(c.layers.size(), 2u);
  std::vector<std::string> names;
  for (const LinearShape& l : c.layers[0].linears) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"layers.0.attn.wqkv", "layers.0.attn.wo",
                                             "layers.0.ffn.w13", "layers.0.ffn.w2"}));
  EXPECT_EQ(c.layers[0].linears[0].out, 3 * 64);
  EXPECT_FALSE(c.head.linears[0].block_precision);  // the head stays fp32
  const std::vector<GemmShape> shapes = gemm_shapes(m, 256);
  EXPECT_NE(std::find(shapes.begin(), shapes.end(), GemmShape{"nt", 256, 192, 64, true}),
            shapes.end());
  EXPECT_NE(std::find(shapes.begin(), shapes.end(), GemmShape{"tn", 64, 96, 256, true}),
            shapes.end());  // w2's weight gradient: (out 64, in 96) over 256 rows
  EXPECT_NE(std::find(shapes.begin(), shapes.end(), GemmShape{"nn", 256, 64, 100, false}),
            shapes.end());  // the head's input gradient
}

TEST(FlopCount, MlaMoeMtpModelByHand) {
  ModelConfig m;
  m.vocab_size = 50;
  m.dim = 32;
  m.n_layers = 2;
  m.first_dense_layers = 1;
  m.n_heads = 2;
  m.attention = "mla";
  m.q_lora_rank = 8;
  m.kv_lora_rank = 12;
  m.qk_nope_head_dim = 6;
  m.qk_rope_head_dim = 4;
  m.v_head_dim = 5;
  m.inter_dim = 40;
  m.moe_inter_dim = 16;
  m.n_experts = 4;
  m.n_shared_experts = 1;
  m.top_k = 2;
  m.mtp_depth = 1;
  const int64_t T = 20, D = 32, H = 2, dk = 10;
  const double mla = 2.0 * (8 * D + H * dk * 8 + (12 + 4) * D + H * (6 + 5) * 12 + D * H * 5) +
                     causal(H, dk, 5, T);
  const double dense = 2.0 * 3 * D * 40;
  // Router gate (n_experts x dim), the shared expert, top_k of the routed experts.
  const double moe = 2.0 * (4 * D + 3 * D * 16 + 2 * 3 * D * 16);
  const double head = 2.0 * D * 50;
  const double mtp = 2.0 * (2 * D) * D + mla + moe + head;  // eh_proj, its block, the shared head
  const FlopsPerToken f = flops_per_token(m, T);
  EXPECT_DOUBLE_EQ(f.mtp_forward, mtp);
  EXPECT_DOUBLE_EQ(f.forward, mla + dense + mla + moe + head + mtp);
  const ModelCompute c = describe_compute(m);
  EXPECT_TRUE(c.layers[1].moe);
  EXPECT_FALSE(c.layers[0].moe);
  EXPECT_EQ(c.layers[1].hidden, (1 + 2) * 16);
}

TEST(FlopCount, DeepSeekV3_671BFromItsActivatedParameters) {
  const Recipe r = load_recipe((recipes_dir() / "deepseek-v3-671b.yaml").string());
  const ModelConfig& m = r.model;
  const ParameterCounts p = count_parameters(r);
  // Every activated matrix is one GEMM per token (2 FLOPs per weight); what is activated but no
  // GEMM: the norms (2 per layer + the final one) and the gates' biases.
  const int64_t vectors = m.n_layers * 2 * m.dim + m.dim + (m.n_layers - m.first_dense_layers) * m.n_experts;
  const int64_t mla_norms = m.n_layers * (m.q_lora_rank + m.kv_lora_rank);
  const double linears = 2.0 * static_cast<double>(p.activated - vectors - mla_norms);
  const double attention = m.n_layers * causal(m.n_heads, 192, 128, r.train.seq_len);
  const FlopsPerToken f = flops_per_token(m, r.train.seq_len);
  EXPECT_NEAR(f.forward - f.mtp_forward, linears + attention, 1e-6 * f.forward);
  // ~6 x 37B for the GEMMs plus the attention core at 4K: about 250 GFLOP per token trained.
  EXPECT_GT(f.training - 3 * f.mtp_forward, 6 * 36.6e9);
  EXPECT_LT(f.training - 3 * f.mtp_forward, 6 * 36.6e9 + 3 * attention + 1e9);
}

}  // namespace
}  // namespace tessera::trainer
