#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;

constexpr int64_t V = 6, C = 5, N = 7;
const std::vector<int32_t> kIds = {3, 0, 3, 5, 1, 3, 0};  // repeated ids must add up

TEST(Embedding, ForwardGathersRows) {
  auto table = random_vector(V * C, 1);
  std::vector<double> out(N * C);
  embedding_forward(out.data(), kIds.data(), table.data(), N, C);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[kIds[n] * C + c]);
}

TEST(Embedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  auto table = random_vector(V * C, 2), dout = random_vector(N * C, 3);
  auto loss = [&] {
    std::vector<double> out(N * C);
    embedding_forward(out.data(), kIds.data(), table.data(), N, C);
    return testing::dot(dout, out);
  };
  const auto g = testing::numeric_grad(table, loss);
  const auto d0 = random_vector(V * C, 4);
  auto d = d0;
  embedding_backward_weight(d.data(), dout.data(), kIds.data(), N, C);
  for (int64_t i = 0; i < V * C; ++i) d[i] -= d0[i];
  EXPECT_LE(testing::rel_error(d, g), testing::kFdTolerance);
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(d[2 * C + c], 0.0);  // id 2 never used
}

TEST(Embedding, WeightGradientIndependentOfThreadCount) {
  testing::ThreadGuard guard;
  constexpr int64_t kN = 128, kC = 160, kV = 9;
  std::vector<int32_t> ids(kN);
  for (int64_t n = 0; n < kN; ++n) ids[n] = static_cast<int32_t>((n * 7) % kV);
  auto dout = testing::to_float(random_vector(kN * kC, 5));
  std::vector<float> d1(kV * kC, 0.5f), d2(kV * kC, 0.5f);
  set_cpu_threads(1);
  embedding_backward_weight(d1.data(), dout.data(), ids.data(), kN, kC);
  set_cpu_threads(2);
  embedding_backward_weight(d2.data(), dout.data(), ids.data(), kN, kC);
  EXPECT_EQ(d1, d2);
}

TEST(Embedding, RejectsNegativeIds) {
  std::vector<float> table(V * C), out(2 * C);
  std::vector<int32_t> ids = {1, -1};
  EXPECT_THROW(embedding_forward(out.data(), ids.data(), table.data(), 2, C), std::out_of_range);
}

}  // namespace
}  // namespace tessera::kernels
