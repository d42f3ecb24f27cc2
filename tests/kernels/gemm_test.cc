#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;

class BackendGuard {
 public:
  BackendGuard() : saved_(gemm_backend()) {}
  ~BackendGuard() { set_gemm_backend(saved_); }

 private:
  GemmBackend saved_;
};

struct GemmCase {
  int64_t M, N, K, pad_a, pad_b, pad_c;
};

constexpr double kPadSentinel = 12345.0;

// Runs gemm<T> on row-major matrices with padded rows and compares with a triple loop in
// long double; the padding of C must come back untouched.
template <typename T>
void check_gemm(Trans ta, Trans tb, const GemmCase& c, double tol) {
  const int64_t a_rows = ta == Trans::kNo ? c.M : c.K, a_cols = ta == Trans::kNo ? c.K : c.M;
  const int64_t b_rows = tb == Trans::kNo ? c.K : c.N, b_cols = tb == Trans::kNo ? c.N : c.K;
  const int64_t lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
  auto a64 = testing::float_exact(random_vector(a_rows * lda, 1));
  auto b64 = testing::float_exact(random_vector(b_rows * ldb, 2));
  auto c64 = testing::float_exact(random_vector(c.M * ldc, 3));
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = c.N; j < ldc; ++j) c64[i * ldc + j] = kPadSentinel;
  }
  const double alpha = 0.75, beta = -0.5;
  std::vector<T> A(a64.begin(), a64.end()), B(b64.begin(), b64.end()), C(c64.begin(), c64.end());
  gemm<T>(ta, tb, c.M, c.N, c.K, T(alpha), A.data(), lda, B.data(), ldb, T(beta), C.data(), ldc);

  auto a_at = [&](int64_t i, int64_t k) {
    return ta == Trans::kNo ? a64[i * lda + k] : a64[k * lda + i];
  };
  auto b_at = [&](int64_t k, int64_t j) {
    return tb == Trans::kNo ? b64[k * ldb + j] : b64[j * ldb + k];
  };
  double max_err = 0, max_ref = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= c.N) {
        ASSERT_EQ(C[i * ldc + j], T(kPadSentinel)) << "padding of C written at " << i << "," << j;
        continue;
      }
      long double s = 0;
      for (int64_t k = 0; k < c.K; ++k) s += (long double)a_at(i, k) * b_at(k, j);
      const double ref = static_cast<double>(alpha * s + beta * c64[i * ldc + j]);
      max_err = std::max(max_err, std::abs(ref - static_cast<double>(C[i * ldc + j])));
      max_ref = std::max(max_ref, std::abs(ref));
    }
  }
  EXPECT_LE(max_err / max_ref, tol) << "M=" << c.M << " N=" << c.N << " K=" << c.K
                                    << " ta=" << int(ta) << " tb=" << int(tb);
}

const GemmCase kCases[] = {{7, 5, 9, 3, 2, 4}, {33, 17, 65, 1, 5, 3}, {1, 64, 3, 0, 7, 1}};

TEST(Gemm, AllTransposesWithPaddedRowsFp32EveryBackend) {
  BackendGuard guard;
  for (GemmBackend backend : {GemmBackend::kAuto, GemmBackend::kOneDnn, GemmBackend::kCblas}) {
    SCOPED_TRACE(gemm_backend_name(backend));
    set_gemm_backend(backend);
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      for (Trans tb : {Trans::kNo, Trans::kYes}) {
        for (const auto& c : kCases) check_gemm<float>(ta, tb, c, 1e-6);
      }
    }
  }
}

// With several threads and enough rows, oneDNN runs once per block of rows, one block per
// thread (uneven blocks here): every row and transpose must still land in its place.
TEST(Gemm, RowsSplitOverThreadsFp32) {
  BackendGuard guard;
  testing::ThreadGuard threads;
  set_gemm_backend(GemmBackend::kOneDnn);
  for (int n : {2, 3}) {
    SCOPED_TRACE(std::to_string(n) + " threads");
    set_cpu_threads(n);
    const GemmCase c{256 * n + 37, 17, 33, 3, 2, 4};
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      for (Trans tb : {Trans::kNo, Trans::kYes}) check_gemm<float>(ta, tb, c, 1e-6);
    }
  }
}

TEST(Gemm, AllTransposesWithPaddedRowsFp64) {
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      for (const auto& c : kCases) check_gemm<double>(ta, tb, c, 1e-14);
    }
  }
}

TEST(Gemm, BetaZeroOverwritesNaN) {
  BackendGuard guard;
  for (GemmBackend backend : {GemmBackend::kOneDnn, GemmBackend::kCblas}) {
    set_gemm_backend(backend);
    std::vector<float> A = {1, 2, 3, 4}, B = {1, 0, 0, 1};
    std::vector<float> C(4, std::numeric_limits<float>::quiet_NaN());
    gemm<float>(Trans::kNo, Trans::kNo, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(),
                2);
    EXPECT_EQ(C, A) << gemm_backend_name(backend);
  }
}

TEST(Gemm, EmptyInnerDimensionScalesC) {
  std::vector<double> C = {1, 2, 3, 4};
  gemm<double>(Trans::kNo, Trans::kNo, 2, 2, 0, 1.0, nullptr, 1, nullptr, 2, 3.0, C.data(), 2);
  EXPECT_EQ(C, (std::vector<double>{3, 6, 9, 12}));
}

TEST(Gemm, RejectsRowStrideBelowWidth) {
  std::vector<float> A(12), B(12), C(12);
  EXPECT_THROW(gemm<float>(Trans::kNo, Trans::kNo, 3, 3, 4, 1.0f, A.data(), 3, B.data(), 3, 0.0f,
                           C.data(), 3),
               std::invalid_argument);
  EXPECT_THROW(gemm<float>(Trans::kNo, Trans::kNo, 3, 3, 3, 1.0f, A.data(), 3, B.data(), 3, 0.0f,
                           C.data(), 2),
               std::invalid_argument);
}

TEST(Gemm, BackendNames) {
  EXPECT_EQ(parse_gemm_backend("auto"), GemmBackend::kAuto);
  EXPECT_EQ(parse_gemm_backend("onednn"), GemmBackend::kOneDnn);
  EXPECT_EQ(parse_gemm_backend("cblas"), GemmBackend::kCblas);
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kAuto), "auto");
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kOneDnn), "onednn");
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kCblas), "cblas");
  try {
    parse_gemm_backend("mkl");
    FAIL() << "parse_gemm_backend accepted 'mkl'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'mkl'"), std::string::npos) << e.what();
  }
}

TEST(Gemm, DefaultBackendFollowsEnvironment) {
  const char* env = std::getenv("TESSERA_GEMM");
  const GemmBackend expected = env && *env ? parse_gemm_backend(env) : GemmBackend::kAuto;
  EXPECT_EQ(gemm_backend(), expected);
}

// Auto sends only transposed-A products (weight gradients) to OpenBLAS, and only where it wins
// them; an explicit library is used for every layout.
TEST(Gemm, AutoPicksTheLibraryByLayout) {
  for (bool cblas_wins : {false, true}) {
    EXPECT_EQ(resolve_gemm_backend(GemmBackend::kAuto, Trans::kNo, cblas_wins),
              GemmBackend::kOneDnn);
    EXPECT_EQ(resolve_gemm_backend(GemmBackend::kAuto, Trans::kYes, cblas_wins),
              cblas_wins ? GemmBackend::kCblas : GemmBackend::kOneDnn);
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      EXPECT_EQ(resolve_gemm_backend(GemmBackend::kOneDnn, ta, cblas_wins), GemmBackend::kOneDnn);
      EXPECT_EQ(resolve_gemm_backend(GemmBackend::kCblas, ta, cblas_wins), GemmBackend::kCblas);
    }
  }
}

TEST(Gemm, CpuThreads) {
  testing::ThreadGuard guard;
  set_cpu_threads(1);
  EXPECT_EQ(cpu_threads(), 1);
  set_cpu_threads(2);
  EXPECT_EQ(cpu_threads(), 2);
  EXPECT_THROW(set_cpu_threads(0), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
