#include "kernels/vector_ops.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

TEST(VectorOps, SumSquaresMatchesLongDouble) {
  const auto x = testing::to_float(testing::random_vector(50000, 1));
  long double ref = 0;
  for (float v : x) ref += (long double)v * v;
  EXPECT_NEAR(sum_squares(x.data(), 50000), static_cast<double>(ref), 1e-10 * double(ref));
  EXPECT_EQ(sum_squares(x.data(), 0), 0.0);
}

TEST(VectorOps, SumSquaresIndependentOfThreadCount) {
  testing::ThreadGuard guard;
  const auto x = testing::random_vector(100003, 2);
  set_cpu_threads(1);
  const double one = sum_squares(x.data(), 100003);
  set_cpu_threads(2);
  EXPECT_EQ(sum_squares(x.data(), 100003), one);
}

TEST(VectorOps, AddAndScale) {
  std::vector<double> y = {1, 2, 3}, x = {0.5, -1, 4};
  add_inplace(y.data(), x.data(), 3);
  EXPECT_EQ(y, (std::vector<double>{1.5, 1, 7}));
  scale_inplace(y.data(), 2.0, 3);
  EXPECT_EQ(y, (std::vector<double>{3, 2, 14}));
}

}  // namespace
}  // namespace tessera::kernels
