// precision fp8 keeps activations as DeepSeek-V3 does (trainer/layers/saved_activation.h): the
// dense FFN block's weight gradients must use the normed input and the SwiGLU input as they come
// back from fp8 (quantised in 1x128 tiles along the row by the shared quantiser, dequantised),
// and W2's the SwiGLU output recomputed from the latter; the forward and the input gradient use
// the exact fp32 values. The expectation is composed here from the backend's ops and the host
// quantiser (kernels/fp8_quantize.h), step by step, and must equal the block bit for bit; it
// also differs from the gradients of the unquantised activations (so the check can fail).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "kernels/cpu_backend.h"
#include "kernels/fp8_quantize.h"
#include "trainer/layers/dense_ffn_block.h"
#include "trainer/param_table.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

std::vector<float> Random(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// x as the fp8 storage gives it back: e4m3 in 1x128 tiles along rows of `cols`.
std::vector<float> ThroughFp8(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<uint8_t> codes(rows * cols);
  std::vector<float> scales(rows * kernels::fp8_scale_cols(cols)), back(rows * cols);
  kernels::fp8_quantize(codes.data(), scales.data(), kernels::Fp8Tiling::k1x128,
                        kernels::Trans::kNo, x.data(), cols, rows, cols);
  kernels::fp8_dequantize(back.data(), codes.data(), scales.data(), kernels::Fp8Tiling::k1x128,
                          rows, cols);
  return back;
}

TEST(Fp8SavedActivation, DenseFfnWeightGradientsUseTheKeptFp8Values) {
  ModelConfig config;
  config.dim = 160;        // two tiles along D, the second partial
  config.inter_dim = 72;   // 2F = 144: the SwiGLU input's second tile straddles W1 | W3
  config.init_std = 0.3;
  config.block_precision = kernels::Precision::kFP8;
  constexpr kernels::Precision kFp8 = kernels::Precision::kFP8;
  const int64_t D = config.dim, F = config.inter_dim;
  kernels::CpuBackend cpu;
  ParamTable table;
  DenseFfnBlock block(table, config, "layers.0.");
  table.finalize(cpu);
  table.init(5, config.init_std);
  const MicroBatchInfo mb{2, 11, true, 1.0};
  const int64_t N = mb.tokens();
  const std::vector<float> x = Random(N * D, 1), dy = Random(N * D, 2);
  std::vector<float> y(N * D), dx(N * D);
  ActivationArena arena(cpu, block.ArenaBytes(mb, cpu.device()));
  ActivationArena workspace(cpu, block.WorkspaceBytes(mb, cpu.device()));
  arena.attach_workspace(&workspace);
  std::unique_ptr<BlockContext> ctx = block.NewContext();
  block.Forward(*ctx, arena, mb, x.data(), y.data());
  block.BackwardInput(*ctx, dy.data(), dx.data());
  block.BackwardWeight(*ctx);

  kernels::BackendOps<float>& ops = cpu.ops<float>();
  const float* norm = table.value_ptr(table.index("layers.0.ffn_norm.weight"));
  const float* w1 = table.value_ptr(table.index("layers.0.ffn.w1.weight"));  // w3 follows
  const float* w2 = table.value_ptr(table.index("layers.0.ffn.w2.weight"));
  std::vector<float> xn(N * D), rstd(N), ab(N * 2 * F), h(N * F), dh(N * F), dab(N * 2 * F);
  ops.rmsnorm_forward(xn.data(), rstd.data(), x.data(), norm, N, D,
                      static_cast<float>(config.norm_eps));
  ops.linear_forward(ab.data(), 2 * F, xn.data(), D, w1, N, D, 2 * F, {.precision = kFp8});
  const std::vector<float> ab_kept = ThroughFp8(ab, N, 2 * F);
  const std::vector<float> xn_kept = ThroughFp8(xn, N, D);
  ops.linear_backward_input(dh.data(), F, dy.data(), D, w2, N, F, D, {.precision = kFp8});
  ops.swiglu_backward(dab.data(), dab.data() + F, dh.data(), ab_kept.data(), ab_kept.data() + F,
                      2 * F, N, F);
  ops.swiglu_forward(h.data(), ab_kept.data(), ab_kept.data() + F, 2 * F, N, F);
  std::vector<float> dw13(2 * F * D, 0.0f), dw2(D * F, 0.0f);
  ops.linear_backward_weight(dw13.data(), dab.data(), 2 * F, xn_kept.data(), D, N, D, 2 * F, kFp8);
  ops.linear_backward_weight(dw2.data(), dy.data(), D, h.data(), F, N, F, D, kFp8);

  const float* g13 = table.grad_ptr(table.index("layers.0.ffn.w1.weight"));
  const float* g2 = table.grad_ptr(table.index("layers.0.ffn.w2.weight"));
  EXPECT_EQ(std::vector<float>(g13, g13 + 2 * F * D), dw13);
  EXPECT_EQ(std::vector<float>(g2, g2 + D * F), dw2);

  // The unquantised activations give other gradients.
  std::vector<float> dw13_exact(2 * F * D, 0.0f);
  ops.linear_backward_weight(dw13_exact.data(), dab.data(), 2 * F, xn.data(), D, N, D, 2 * F,
                             kFp8);
  EXPECT_NE(dw13_exact, dw13);
  EXPECT_NE(xn_kept, xn);
  EXPECT_NE(ab_kept, ab);
}

}  // namespace
}  // namespace tessera::trainer
