// The code paths a device backend takes (memory the host must not address directly) run here on
// a CPU backend that SAYS its memory is not host-accessible: parameter initialisation drawn on
// the host and copied over, token ids staged through host memory, routing-bias updates, and
// checkpoint staging through host mirrors. Each must give exactly what the host path gives.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/device_comm/make_device_comm.h"
#include "parallel/fake_comm.h"
#include "kernels/math/low_precision.h"
#include "trainer/checkpoint/staging.h"
#include "tests/trainer/staged_cpu_backend.h"
#include "trainer/model.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {
namespace {

using testing::StagedCpuBackend;

ModelConfig Config() {
  ModelConfig c;
  c.vocab_size = 29;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.inter_dim = 24;
  c.moe_inter_dim = 8;
  c.n_experts = 4;
  c.top_k = 2;
  c.first_dense_layers = 1;
  c.init_std = 0.2;
  return c;
}

std::vector<float> Values(ParamTable& p) {
  std::vector<float> v(p.padded_numel());
  p.backend().copy_to_host(v.data(), p.values().data<float>(), sizeof(float) * v.size());
  return v;
}

// Two training micro-batches, a bias update: losses and parameters.
struct Trained {
  std::vector<double> losses;
  std::vector<float> values, grads;
};
Trained Train(kernels::Backend& be) {
  Model model(Config(), be);
  model.params().init(5, Config().init_std);
  Trained t;
  std::vector<int32_t> tokens(2 * 11);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7 + 3) % 29);
  for (int mb = 0; mb < 2; ++mb) {
    t.losses.push_back(model.TrainMicroBatch(tokens.data(), 2, 10, {0.05, 0.25}).loss);
    tokens[mb] = 1;
  }
  model.moe_blocks()[0]->update_bias(0.01);
  t.values = Values(model.params());
  t.grads.resize(model.params().padded_numel());
  be.copy_to_host(t.grads.data(), model.params().grads().data<float>(),
                  sizeof(float) * t.grads.size());
  return t;
}

TEST(DeviceStaging, ModelOnANonHostBackendEqualsTheHostPath) {
  kernels::CpuBackend cpu;
  StagedCpuBackend staged;
  const Trained want = Train(cpu);
  const Trained got = Train(staged);
  EXPECT_EQ(got.losses, want.losses);
  EXPECT_EQ(got.values, want.values);  // init and the bias update went through copies
  EXPECT_EQ(got.grads, want.grads);
  EXPECT_GT(staged.from_host, 0);      // ...and they did
}

TEST(DeviceStaging, CheckpointMirrorsRoundTripValuesAndMoments) {
  StagedCpuBackend staged;
  Model model(Config(), staged);
  model.params().init(9, 0.1);
  auto comms = parallel::FakeComm::create_world(1);
  ZeroOptimizer optimizer(OptimizerConfig{}, model.params(), *comms[0], *comms[0]);
  for (size_t k = 0; k < optimizer.shards().size(); ++k) {
    for (size_t i = 0; i < optimizer.exp_avg(k).size(); ++i) {
      optimizer.exp_avg(k)[i] = 0.5f + static_cast<float>(i);
      optimizer.exp_avg_sq(k)[i] = 2.0f * static_cast<float>(i);
    }
  }
  CheckpointStaging staging(model.params(), optimizer);
  ASSERT_TRUE(staging.staged());
  const CheckpointBuffers& b = staging.buffers();
  EXPECT_NE(b.values, model.params().values().data<float>());  // mirrors, not the device's
  staging.to_host();
  const std::vector<float> device = Values(model.params());
  EXPECT_EQ(std::vector<float>(b.values, b.values + device.size()), device);
  EXPECT_EQ(b.exp_avg.at(0)[3], 3.5f);
  EXPECT_EQ(b.exp_avg_sq.at(0)[3], 6.0f);
  // What a resume reads lands in the mirrors; to_device() moves it.
  b.values[1] = 42.0f;
  b.exp_avg_sq.at(0)[2] = -1.0f;
  staging.to_device();
  EXPECT_EQ(Values(model.params())[1], 42.0f);
  EXPECT_EQ(optimizer.exp_avg_sq(0)[2], -1.0f);
}

// bf16 moments on a device: checkpoint staging widens them into the fp32 mirrors on save and
// rounds the mirrors back to nearest even on load, through host copies.
TEST(DeviceStaging, CheckpointMirrorsWidenAndRoundBf16Moments) {
  StagedCpuBackend staged;
  Model model(Config(), staged);
  auto comms = parallel::FakeComm::create_world(1);
  OptimizerConfig bf16;
  bf16.state_dtype = "bf16";
  ZeroOptimizer optimizer(bf16, model.params(), *comms[0], *comms[0]);
  const std::span<uint16_t> m = optimizer.exp_avg_bf16(0), v = optimizer.exp_avg_sq_bf16(0);
  for (size_t i = 0; i < m.size(); ++i) {
    m[i] = kernels::math::float_to_bf16(0.25f * static_cast<float>(i));
    v[i] = kernels::math::float_to_bf16(1.0f + static_cast<float>(i));
  }
  CheckpointStaging staging(model.params(), optimizer);
  ASSERT_TRUE(staging.staged());
  const int to_host = staged.to_host, from_host = staged.from_host;
  staging.to_host();
  const CheckpointBuffers& b = staging.buffers();
  EXPECT_EQ(b.exp_avg.at(0)[3], 0.75f);
  EXPECT_EQ(b.exp_avg_sq.at(0)[3], 4.0f);
  // Halfway between bf16's 1 + 2^-7 and 1 + 2^-6: to the even one, 1 + 2^-6 (truncation: 2^-7).
  b.exp_avg.at(0)[2] = 1.0f + 3.0f / 256;
  b.exp_avg_sq.at(0)[2] = 3.0f;
  staging.to_device();
  EXPECT_EQ(m[2], 0x3F82);
  EXPECT_EQ(v[2], 0x4040);
  EXPECT_GT(staged.to_host, to_host);
  EXPECT_GT(staged.from_host, from_host);
}

TEST(DeviceStaging, HostBackendCheckpointsItsOwnBuffers) {
  kernels::CpuBackend cpu;
  Model model(Config(), cpu);
  auto comms = parallel::FakeComm::create_world(1);
  ZeroOptimizer optimizer(OptimizerConfig{}, model.params(), *comms[0], *comms[0]);
  CheckpointStaging staging(model.params(), optimizer);
  EXPECT_FALSE(staging.staged());
  EXPECT_EQ(staging.buffers().values, model.params().values().data<float>());
  EXPECT_EQ(staging.buffers().exp_avg.at(0), optimizer.exp_avg(0).data());
}

// Tensors of a host backend travel on the group itself; device memory needs NCCL, which is
// bootstrapped over MPI: asking for it over another communicator is an error naming the group.
TEST(DeviceStaging, DeviceCommunicatorsOnlyWhereTheHostCannotReach) {
  auto comms = parallel::FakeComm::create_world(1);
  kernels::CpuBackend cpu;
  StagedCpuBackend staged;
  EXPECT_EQ(parallel::make_device_comm(*comms[0], cpu), nullptr);
  try {
    parallel::make_device_comm(*comms[0], staged);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + comms[0]->name() + "'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tessera::trainer
