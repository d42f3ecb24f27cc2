// ProfilingBackend (kernels/profiling_backend.h): forwards every op unchanged and counts calls
// and GEMM FLOPs per op kind (times are recorded, never asserted). Also: the CPU backend's
// grouped GEMMs give the same bits on 1, 2 and 3 threads in every precision (experts spread
// over threads).
#include "kernels/profiling_backend.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bf16_gemm_choice.h"
#include "kernels/cpu_backend.h"
#include "kernels/gemm.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

TEST(ProfilingBackend, ForwardsOpsAndCountsCallsAndFlops) {
  CpuBackend cpu;
  ProfilingBackend prof(cpu);
  constexpr int64_t N = 5, I = 7, O = 3;
  const auto x = testing::to_float(testing::random_vector(N * I, 1));
  const auto W = testing::to_float(testing::random_vector(O * I, 2));
  std::vector<float> y_direct(N * O), y_profiled(N * O);
  cpu.ops<float>().linear_forward(y_direct.data(), O, x.data(), I, W.data(), N, I, O);
  prof.ops<float>().linear_forward(y_profiled.data(), O, x.data(), I, W.data(), N, I, O);
  prof.ops<float>().linear_forward(y_profiled.data(), O, x.data(), I, W.data(), N, I, O);
  EXPECT_EQ(y_direct, y_profiled);
  std::vector<double> d(4, 1.0);
  prof.ops<double>().scale_inplace(d.data(), 2.0, 4);
  EXPECT_EQ(d, std::vector<double>(4, 2.0));
  std::vector<float> host(3, 0.0f), dev(3, 4.0f);
  prof.copy_to_host(host.data(), dev.data(), sizeof(float) * 3);
  EXPECT_EQ(host, dev);

  const auto& p = prof.profile();
  ASSERT_EQ(p.count("linear_forward"), 1u);
  EXPECT_EQ(p.at("linear_forward").calls, 2);
  EXPECT_DOUBLE_EQ(p.at("linear_forward").flops, 2 * 2.0 * N * I * O);
  EXPECT_GE(p.at("linear_forward").seconds, 0.0);
  EXPECT_EQ(p.at("scale_inplace (f64)").calls, 1);
  EXPECT_EQ(p.at("copy_to_host").calls, 1);
  prof.reset();
  EXPECT_TRUE(prof.profile().empty());
}

TEST(CpuBackendThreads, GroupedGemmsDoNotDependOnTheThreadCount) {
  constexpr int64_t I = 24, O = 40, G = 3, rows = 61;
  // Group 1 twice (as under expert parallelism) and an empty segment.
  const std::vector<RowSegment> segs = {{0, 0, 17}, {1, 17, 20}, {2, 37, 0}, {1, 37, 9},
                                        {2, 46, 15}};
  const auto x = testing::to_float(testing::random_vector(rows * I, 3));
  const auto dy = testing::to_float(testing::random_vector(rows * O, 4));
  const auto W = testing::to_float(testing::random_vector(G * O * I, 5));
  auto run = [&](int threads, Precision p, Bf16Gemm bf16) {
    const int before = cpu_threads();
    set_cpu_threads(threads);
    CpuBackend cpu(bf16);
    BackendOps<float>& ops = cpu.ops<float>();
    std::vector<float> y(rows * O), dx(rows * I), dW(G * O * I, 0.5f);
    ops.grouped_linear_forward(y.data(), O, x.data(), I, W.data(), segs, I, O, {.precision = p});
    ops.grouped_linear_backward_input(dx.data(), I, dy.data(), O, W.data(), segs, I, O,
                                      {.precision = p});
    ops.grouped_linear_backward_weight(dW.data(), dy.data(), O, x.data(), I, segs, I, O, p);
    set_cpu_threads(before);
    std::vector<float> all = y;
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dW.begin(), dW.end());
    return all;
  };
  // Every precision: the low-precision GEMMs run on a scratch (and, native bf16, primitives)
  // per thread.
  std::vector<Bf16Gemm> bf16_gemms = {Bf16Gemm::kEmulated};
  if (cpu_has_native_bf16()) bf16_gemms.push_back(Bf16Gemm::kNative);
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kFP8}) {
    for (Bf16Gemm bf16 : bf16_gemms) {
      SCOPED_TRACE(std::string(precision_name(p)) + ", bf16 GEMM " + bf16_gemm_name(bf16));
      EXPECT_EQ(run(1, p, bf16), run(2, p, bf16));
      EXPECT_EQ(run(1, p, bf16), run(3, p, bf16));
    }
  }
}

// A GEMM that fails inside the grouped maps' parallel region (here: y's row stride below its
// width) is an exception for the caller, not the end of the process.
TEST(CpuBackendThreads, GroupedGemmErrorsReachTheCaller) {
  testing::ThreadGuard guard;
  set_cpu_threads(2);
  constexpr int64_t I = 8, O = 6, rows = 10;
  const std::vector<RowSegment> segs = {{0, 0, 4}, {1, 4, 6}};
  std::vector<float> x(rows * I, 1.0f), W(2 * O * I, 1.0f), y(rows * O);
  CpuBackend cpu;
  EXPECT_THROW(cpu.ops<float>().grouped_linear_forward(y.data(), O - 1, x.data(), I, W.data(),
                                                       segs, I, O),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
