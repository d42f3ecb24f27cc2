// The whole model on a device backend against the same model on the CPU backend: loss, routing,
// every parameter's gradient and one AdamW step, over two micro-batches (gradient accumulation)
// with dense, MoE (shared experts, group-limited routing, balance loss) and output layers.
// Runs wherever a non-CPU backend exists (a GPU); elsewhere it is SKIPPED, never passed.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/factory/make_backend.h"
#include "tests/kernels/test_util.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 37;
  c.dim = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.inter_dim = 48;
  c.moe_inter_dim = 16;
  c.n_experts = 8;
  c.n_shared_experts = 1;
  c.top_k = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.route_scale = 1.5;
  c.first_dense_layers = 1;
  c.init_std = 0.2;
  c.seq_aux_alpha = 0.01;
  return c;
}

std::vector<float> to_host(kernels::Backend& be, const kernels::Tensor& t, int64_t n) {
  std::vector<float> out(n);
  be.copy_to_host(out.data(), t.data<float>(), sizeof(float) * n);
  return out;
}

struct TrainedRun {
  std::vector<double> losses;
  std::vector<int32_t> routing;
  std::vector<float> grads, values_after_step;
};

// Two micro-batches of training (gradients accumulate), then one AdamW step.
TrainedRun TrainOnce(kernels::Backend& be, const ModelConfig& config) {
  Model model(config, be);
  ParamTable& params = model.params();
  params.init(7, config.init_std);
  Rng rng(3);
  const int64_t batch = 2, seq = 70;  // past the CPU attention's 64-row blocks
  TrainedRun run;
  params.zero_grads();
  for (int mb = 0; mb < 2; ++mb) {
    std::vector<int32_t> tokens(batch * (seq + 1));
    for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
    const LossScale scale{1.0 / (2 * batch * seq), 1.0 / (2 * batch)};
    run.losses.push_back(model.TrainMicroBatch(tokens.data(), batch, seq, scale).loss);
    for (size_t i = 0; i < model.moe_blocks().size(); ++i) {
      std::vector<int32_t> r(batch * seq * config.top_k);
      be.copy_to_host(r.data(), model.routing(static_cast<int>(i)), sizeof(int32_t) * r.size());
      run.routing.insert(run.routing.end(), r.begin(), r.end());
    }
  }
  run.grads = to_host(be, params.grads(), params.padded_numel());
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  AdamW adamw(oc, params);
  adamw.Step(params, 1e-3, 0.8);
  run.values_after_step = to_host(be, params.values(), params.padded_numel());
  return run;
}

class ModelOnBackend : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelOnBackend, DeviceMatchesCpu) {
  std::unique_ptr<kernels::Backend> device;
  try {
    device = kernels::make_backend("cuda");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no device backend here (" << e.what() << "): compiled, not run";
  }
  ModelConfig config = SmallConfig();
  if (GetParam() == "mla") {  // low-rank queries, v narrower than q/k (padded)
    config.attention = "mla";
    config.q_lora_rank = 12;
    config.kv_lora_rank = 16;
    config.qk_nope_head_dim = 8;
    config.qk_rope_head_dim = 4;
    config.v_head_dim = 6;
  }
  std::unique_ptr<kernels::Backend> cpu = kernels::make_backend("cpu");
  const TrainedRun want = TrainOnce(*cpu, config);
  const TrainedRun got = TrainOnce(*device, config);
  SCOPED_TRACE(device->capabilities().name);
  ASSERT_EQ(got.routing, want.routing) << "routing differs: the comparison below would be moot";
  for (size_t i = 0; i < want.losses.size(); ++i) {
    EXPECT_NEAR(got.losses[i], want.losses[i], 1e-5 * std::abs(want.losses[i]));
  }
  // fp32 on both; the device sums in other orders: agreement to rounding, relative to the scale.
  EXPECT_LE(kernels::testing::rel_error(got.grads, want.grads), 1e-4);
  EXPECT_LE(kernels::testing::rel_error(got.values_after_step, want.values_after_step), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Attention, ModelOnBackend, ::testing::Values("mha", "mla"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tessera::trainer
