#include "kernels/cuda/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cross_entropy.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

constexpr int64_t N = 170, V = 1000;

std::vector<int32_t> random_targets(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, V - 1);
  std::vector<int32_t> t(N);
  for (auto& x : t) x = dist(rng);
  return t;
}

template <typename T>
void check_cross_entropy_matches_cpu() {
  const double tol = kDeviceTolerance<T>;
  const T scale = T(1) / T(N);
  const auto logits = random_as<T>(N * V, 31, -6.0, 6.0);
  const auto targets = random_targets(32);

  std::vector<T> losses(N), lse(N), dlogits(N * V);
  cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N, V);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), N, V, scale);

  DeviceBuffer<T> d_logits(logits), d_losses(N), d_lse(N), d_dlogits(N * V);
  DeviceBuffer<int32_t> d_targets(targets);
  cuda::cross_entropy_forward(d_losses.data(), d_lse.data(), d_logits.data(), d_targets.data(),
                              N, V);
  cuda::cross_entropy_backward(d_dlogits.data(), d_logits.data(), d_lse.data(),
                               d_targets.data(), N, V, scale);
  EXPECT_LE(rel_error(fetch(d_losses), losses), tol);
  EXPECT_LE(rel_error(fetch(d_lse), lse), tol);
  EXPECT_LE(rel_error(fetch(d_dlogits), dlogits), tol);

  // In place (dlogits aliasing logits), as the training loop saves memory.
  cuda::cross_entropy_backward(d_logits.data(), d_logits.data(), d_lse.data(), d_targets.data(),
                               N, V, scale);
  EXPECT_LE(rel_error(fetch(d_logits), dlogits), tol);
}

TEST(CudaCrossEntropy, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_cross_entropy_matches_cpu<float>();
  check_cross_entropy_matches_cpu<double>();
}

TEST(CudaCrossEntropy, BadTargetGivesNanRowsNotAnOutOfBoundsRead) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const auto logits = random_as<float>(N * V, 33);
  auto targets = random_targets(34);
  targets[3] = V;
  targets[5] = -1;
  DeviceBuffer<float> d_logits(logits), d_losses(N), d_lse(N), d_dlogits(N * V);
  DeviceBuffer<int32_t> d_targets(targets);
  cuda::cross_entropy_forward(d_losses.data(), d_lse.data(), d_logits.data(), d_targets.data(),
                              N, V);
  cuda::cross_entropy_backward(d_dlogits.data(), d_logits.data(), d_lse.data(),
                               d_targets.data(), N, V, 1.0f);
  const auto losses = fetch(d_losses), dlogits = fetch(d_dlogits);
  for (int64_t n = 0; n < N; ++n) {
    const bool bad = n == 3 || n == 5;
    EXPECT_EQ(std::isnan(losses[n]), bad) << "row " << n;
    EXPECT_EQ(std::isnan(dlogits[n * V + V / 2]), bad) << "row " << n;
  }
}

TEST(CudaCrossEntropy, RejectsEmptyVocabularyBeforeLaunching) {
  EXPECT_THROW(cuda::cross_entropy_forward<float>(nullptr, nullptr, nullptr, nullptr, 4, 0),
               std::invalid_argument);
  EXPECT_THROW(
      cuda::cross_entropy_backward<double>(nullptr, nullptr, nullptr, nullptr, 4, 0, 1.0),
      std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
