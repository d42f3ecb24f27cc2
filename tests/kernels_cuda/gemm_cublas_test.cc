#include "kernels/cuda/gemm_cublas.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

struct GemmCase {
  int64_t M, N, K, pad_a, pad_b, pad_c;
  double alpha, beta;
};

// Runs the CPU gemm and the cuBLAS gemm on the same padded row-major operands and compares
// all of C, padding included (both must leave it alone). With beta == 0, C starts as NaN to
// check that it is overwritten, not scaled.
template <typename T>
void check_gemm(const cuda::CublasHandle& handle, Trans ta, Trans tb, const GemmCase& c) {
  SCOPED_TRACE("M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" +
               std::to_string(c.K) + " ta=" + std::to_string(ta == Trans::kYes) +
               " tb=" + std::to_string(tb == Trans::kYes) + " beta=" + std::to_string(c.beta));
  const int64_t a_rows = ta == Trans::kNo ? c.M : c.K, a_cols = ta == Trans::kNo ? c.K : c.M;
  const int64_t b_rows = tb == Trans::kNo ? c.K : c.N, b_cols = tb == Trans::kNo ? c.N : c.K;
  const int64_t lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
  const auto A = random_as<T>(a_rows * lda, 81), B = random_as<T>(b_rows * ldb, 82);
  auto C0 = random_as<T>(c.M * ldc, 83);
  if (c.beta == 0) {
    for (int64_t i = 0; i < c.M; ++i) {
      for (int64_t j = 0; j < c.N; ++j) C0[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
    }
  }
  const T alpha = static_cast<T>(c.alpha), beta = static_cast<T>(c.beta);
  auto C = C0;
  gemm(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);

  DeviceBuffer<T> d_A(A), d_B(B), d_C(C0);
  cuda::gemm(handle.get(), ta, tb, c.M, c.N, c.K, alpha, d_A.data(), lda, d_B.data(), ldb, beta,
             d_C.data(), ldc);
  const auto got = fetch(d_C);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_FALSE(std::isnan(got[i])) << "element " << i;
  EXPECT_LE(rel_error(got, C), kDeviceTolerance<T>);
}

const GemmCase kCases[] = {
    {37, 29, 41, 3, 0, 5, 0.7, 0.3},  // padded rows, C accumulated
    {64, 48, 80, 0, 2, 0, 1.0, 0.0},  // C overwritten
    {1, 130, 7, 0, 0, 1, -1.5, 1.0},  // a single row
    {5, 6, 0, 1, 1, 1, 1.0, 0.0},     // K == 0 with beta == 0: C = 0
    {5, 6, 0, 1, 1, 1, 1.0, 2.0},     // K == 0: C = beta * C
};

TEST(CudaGemm, MatchesCpuForEveryTransposeAndBeta) {
  TESSERA_SKIP_WITHOUT_CUDA();
  cuda::CublasHandle handle;
  for (const GemmCase& c : kCases) {
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      for (Trans tb : {Trans::kNo, Trans::kYes}) {
        check_gemm<float>(handle, ta, tb, c);
        check_gemm<double>(handle, ta, tb, c);
      }
    }
  }
}

TEST(CudaGemm, RunsOnTheHandlesStream) {
  TESSERA_SKIP_WITHOUT_CUDA();
  cudaStream_t stream = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    cuda::CublasHandle handle(stream);
    check_gemm<float>(handle, Trans::kNo, Trans::kYes, kCases[0]);
  }
  TESSERA_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Host-side checks run before the handle is touched, so a null handle is fine here.
TEST(CudaGemm, RejectsBadArgumentsBeforeUsingTheHandle) {
  auto call = [](int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    cuda::gemm<float>(nullptr, Trans::kNo, Trans::kNo, M, N, K, 1.0f, nullptr, lda, nullptr, ldb,
                      0.0f, nullptr, ldc);
  };
  EXPECT_THROW(call(-1, 2, 2, 2, 2, 2), std::invalid_argument);
  EXPECT_THROW(call(2, 2, 3, 2, 2, 2), std::invalid_argument);  // lda < K
  EXPECT_THROW(call(2, 4, 3, 3, 3, 4), std::invalid_argument);  // ldb < N
  EXPECT_THROW(call(2, 4, 3, 3, 4, 3), std::invalid_argument);  // ldc < N
  EXPECT_THROW(call(int64_t{1} << 31, 1, 1, 1, 1, 1), std::invalid_argument);
}

TEST(CudaGemm, CublasErrorsNameTheCall) {
  try {
    cuda::check_cublas(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm");
    FAIL() << "check_cublas() did not throw";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cublasSgemm"), std::string::npos) << what;
    EXPECT_NE(what.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace tessera::kernels
