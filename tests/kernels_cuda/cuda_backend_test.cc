// The CUDA backend's own launchers (attention, embedding, vector ops) against the CPU kernels,
// and a smoke test of CudaBackend itself. The op-by-op comparison of every Backend op with the
// CPU backend lives with the backend tests (through make_backend).
#include "kernels/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/vector_ops.h"
#include "kernels/embedding.h"
#include "kernels/vector_ops.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

// Attention sums longer products than the row-wise ops (hd-long dots, then T-long sums), and
// the online softmax rescales in a different order from the CPU's: a looser bound in fp32.
template <typename T>
constexpr double kAttentionTolerance = std::is_same_v<T, float> ? 1e-4 : 1e-11;

// q|k|v fused (row stride 3*H*hd + 2, as a padded fused projection), out padded, gradients
// written into a fused dq|dk|dv buffer. Whole buffers are compared: padding must stay as it was.
template <typename T>
void check_attention_matches_cpu(int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  const double tol = kAttentionTolerance<T>;
  const int64_t ld_qkv = 3 * H * hd + 2, ld_out = H * hd + 3, ld_d = 3 * H * hd;
  const auto qkv = random_as<T>(B * T_len * ld_qkv, 21, -2.0, 2.0);
  const auto dout = random_as<T>(B * T_len * ld_out, 22);
  const auto out0 = random_as<T>(B * T_len * ld_out, 23);
  const auto dqkv0 = random_as<T>(B * T_len * ld_d, 24);
  const T* q = qkv.data();

  auto out = out0, dqkv = dqkv0;
  std::vector<T> lse(B * H * T_len), scratch(B * H * T_len);
  attention_forward(out.data(), ld_out, lse.data(), q, q + H * hd, q + 2 * H * hd, ld_qkv, B,
                    T_len, H, hd);
  attention_backward(dqkv.data(), dqkv.data() + H * hd, dqkv.data() + 2 * H * hd, ld_d,
                     scratch.data(), dout.data(), ld_out, lse.data(), q, q + H * hd,
                     q + 2 * H * hd, ld_qkv, B, T_len, H, hd);

  DeviceBuffer<T> d_qkv(qkv), d_dout(dout), d_out(out0), d_dqkv(dqkv0);
  DeviceBuffer<T> d_lse(B * H * T_len), d_scratch(B * H * T_len);
  const T* dq = d_qkv.data();
  T* g = d_dqkv.data();
  cuda::attention_forward(d_out.data(), ld_out, d_lse.data(), dq, dq + H * hd, dq + 2 * H * hd,
                          ld_qkv, B, T_len, H, hd);
  auto backward = [&] {
    cuda::attention_backward(g, g + H * hd, g + 2 * H * hd, ld_d, d_scratch.data(),
                             d_dout.data(), d_out.data(), ld_out, d_lse.data(), dq, dq + H * hd,
                             dq + 2 * H * hd, ld_qkv, B, T_len, H, hd);
  };
  backward();
  EXPECT_LE(rel_error(fetch(d_out), out), tol) << "T=" << T_len << " hd=" << hd;
  EXPECT_LE(rel_error(fetch(d_lse), lse), tol) << "T=" << T_len << " hd=" << hd;
  const std::vector<T> first = fetch(d_dqkv);
  EXPECT_LE(rel_error(first, dqkv), tol) << "T=" << T_len << " hd=" << hd;
  // No atomics: a second backward gives the same bits.
  backward();
  EXPECT_EQ(fetch(d_dqkv), first);
}

TEST(CudaAttention, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  // T not a multiple of the tiles (32 in fp32, 16 in fp64): partial tiles on both axes.
  check_attention_matches_cpu<float>(2, 70, 3, 24);
  check_attention_matches_cpu<double>(2, 70, 3, 24);
  // The largest head dimension: the kernels' shared memory beyond the default 48 KiB.
  check_attention_matches_cpu<float>(1, 40, 1, cuda::kAttentionMaxHeadDim);
  check_attention_matches_cpu<double>(1, 40, 1, cuda::kAttentionMaxHeadDim);
  check_attention_matches_cpu<double>(1, 1, 2, 8);
}

template <typename T>
void check_embedding_matches_cpu() {
  constexpr int64_t N = 300, C = 37, V = 20;
  std::vector<int32_t> ids(N);
  for (int64_t n = 0; n < N; ++n) ids[n] = static_cast<int32_t>((n * 7 + n / 5) % V);  // repeats
  const auto table = random_as<T>(V * C, 31), dout = random_as<T>(N * C, 32);
  const auto dtable0 = random_as<T>(V * C, 33);
  std::vector<T> out(N * C);
  auto dtable = dtable0;
  embedding_forward(out.data(), ids.data(), table.data(), N, C);
  embedding_backward_weight(dtable.data(), dout.data(), ids.data(), N, C);

  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<T> d_table(table), d_dout(dout), d_out(N * C), d_dtable(dtable0);
  cuda::embedding_forward(d_out.data(), d_ids.data(), d_table.data(), N, C, V);
  cuda::embedding_backward_weight(d_dtable.data(), d_dout.data(), d_ids.data(), N, C, V);
  EXPECT_EQ(fetch(d_out), out);  // a gather: exact
  // Rows added in the CPU's order: exact as well.
  EXPECT_EQ(fetch(d_dtable), dtable);

  // Ids outside [0, V): NaN rows, NaN in row 0 of the gradient, no out-of-bounds access.
  ids[3] = -1;
  ids[4] = V;
  d_ids.copy_from(ids);
  cuda::embedding_forward(d_out.data(), d_ids.data(), d_table.data(), N, C, V);
  cuda::embedding_backward_weight(d_dtable.data(), d_dout.data(), d_ids.data(), N, C, V);
  const auto bad_out = fetch(d_out), bad_dtable = fetch(d_dtable);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_TRUE(std::isnan(bad_out[3 * C + c]) && std::isnan(bad_out[4 * C + c])) << c;
    EXPECT_TRUE(std::isnan(bad_dtable[c])) << c;
  }
  EXPECT_FALSE(std::isnan(bad_out[5 * C]));
}

TEST(CudaEmbedding, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_embedding_matches_cpu<float>();
  check_embedding_matches_cpu<double>();
}

template <typename T>
void check_vector_ops_match_cpu() {
  constexpr int64_t n = 3 * cuda::kReduceChunk + 123;  // a ragged last chunk
  const auto x = random_as<T>(n, 41), y0 = random_as<T>(n, 42);
  auto y = y0;
  add_inplace(y.data(), x.data(), n);
  scale_inplace(y.data(), T(-0.75), n);
  double sum_ref = 0;
  for (T v : x) sum_ref += v;

  DeviceBuffer<T> d_x(x), d_y(y0), d_z(n);
  cuda::add_inplace(d_y.data(), d_x.data(), n);
  cuda::scale_inplace(d_y.data(), T(-0.75), n);
  EXPECT_EQ(fetch(d_y), y);  // one rounding per element, as on the CPU
  cuda::copy(d_z.data(), d_x.data(), n);
  EXPECT_EQ(fetch(d_z), x);
  cuda::fill(d_z.data(), T(2.5), n);
  EXPECT_EQ(fetch(d_z), std::vector<T>(n, T(2.5)));

  const double s = cuda::sum(d_x.data(), n), ss = cuda::sum_squares(d_x.data(), n);
  EXPECT_NEAR(s, sum_ref, 1e-12 * n);
  EXPECT_NEAR(ss, sum_squares(x.data(), n), 1e-12 * n);
  // Fixed chunking and order: the same bits every time.
  EXPECT_EQ(cuda::sum(d_x.data(), n), s);
  EXPECT_EQ(cuda::sum_squares(d_x.data(), n), ss);
  EXPECT_EQ(cuda::sum(d_x.data(), 0), 0.0);
}

TEST(CudaVectorOps, MatchCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_vector_ops_match_cpu<float>();
  check_vector_ops_match_cpu<double>();
}

TEST(CudaBackend, AllocCopyEventsAndOps) {
  TESSERA_SKIP_WITHOUT_CUDA();
  cuda::CudaBackend backend(0);
  const BackendCapabilities& caps = backend.capabilities();
  EXPECT_EQ(caps.device, Device::kCUDA);
  EXPECT_EQ(caps.name.rfind("cuda:0 ", 0), 0u) << caps.name;
  EXPECT_FALSE(caps.host_accessible);
  EXPECT_TRUE(caps.asynchronous);
  EXPECT_GT(caps.memory_bytes, 0);
  EXPECT_EQ(backend.native_stream(), static_cast<void*>(backend.stream()));

  const std::vector<double> host = {1.0, -2.0, 3.5, 4.0};
  Tensor pinned = backend.alloc_host({4}, DType::kF64);
  EXPECT_EQ(pinned.device(), Device::kCPU);
  std::copy(host.begin(), host.end(), pinned.data<double>());
  Tensor a = backend.alloc({4}, DType::kF64), b = backend.alloc({4}, DType::kF64);
  EXPECT_EQ(a.device(), Device::kCUDA);
  backend.copy_from_host(a.data<double>(), pinned.data<double>(), a.nbytes());
  backend.copy_bytes(b.data<double>(), a.data<double>(), a.nbytes());
  backend.ops<double>().scale_inplace(b.data<double>(), 2.0, 4);
  const auto event = backend.record_event();
  event->synchronize();
  EXPECT_TRUE(event->ready());
  EXPECT_NE(event->native(), nullptr);
  std::vector<double> back(4);
  backend.copy_to_host(back.data(), b.data<double>(), b.nbytes());
  EXPECT_EQ(back, (std::vector<double>{2.0, -4.0, 7.0, 8.0}));
  EXPECT_EQ(backend.ops<double>().sum(b.data<double>(), 4), 13.0);

  // y = x W^T through cuBLAS, fp32: x (2, 3), W (2, 3) = identity-like.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6}, W = {1, 0, 0, 0, 1, 1};
  Tensor dx = backend.alloc({6}, DType::kF32), dW = backend.alloc({6}, DType::kF32);
  Tensor dy = backend.alloc({4}, DType::kF32);
  backend.copy_from_host(dx.data<float>(), x.data(), dx.nbytes());
  backend.copy_from_host(dW.data<float>(), W.data(), dW.nbytes());
  backend.ops<float>().linear_forward(dy.data<float>(), 2, dx.data<float>(), 3, dW.data<float>(),
                                      2, 3, 2);
  std::vector<float> y(4);
  backend.copy_to_host(y.data(), dy.data<float>(), dy.nbytes());
  EXPECT_EQ(y, (std::vector<float>{1, 5, 4, 11}));
  EXPECT_EQ(backend.alloc({0}, DType::kF32).numel(), 0);
}

// ---- Host-side checks: thrown before any CUDA call, so they run without a device.

TEST(CudaBackend, RejectsAnOrdinalThatIsNotVisible) {
  EXPECT_THROW(cuda::CudaBackend backend(cuda::device_count()), std::runtime_error);
  EXPECT_THROW(cuda::CudaBackend backend(-1), std::runtime_error);
}

TEST(CudaAttention, RejectsBadShapesBeforeLaunching) {
  const int64_t too_big = cuda::kAttentionMaxHeadDim + 1;
  try {
    cuda::attention_forward<float>(nullptr, too_big, nullptr, nullptr, nullptr, nullptr, too_big,
                                   1, 8, 1, too_big);
    FAIL() << "head_dim " << too_big << " was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(too_big)), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda::attention_backward<double>(nullptr, nullptr, nullptr, 8, nullptr, nullptr,
                                                nullptr, 8, nullptr, nullptr, nullptr, nullptr,
                                                8, 1, 4, 1, 0),
               std::invalid_argument);  // head_dim 0
  EXPECT_THROW(cuda::attention_forward<float>(nullptr, 32, nullptr, nullptr, nullptr, nullptr,
                                              31, 1, 4, 2, 16),
               std::invalid_argument);  // ld_qkv < H*hd
  EXPECT_THROW(cuda::attention_backward<float>(nullptr, nullptr, nullptr, 31, nullptr, nullptr,
                                               nullptr, 32, nullptr, nullptr, nullptr, nullptr,
                                               32, 1, 4, 2, 16),
               std::invalid_argument);  // ld_dqkv < H*hd
  EXPECT_THROW(cuda::attention_forward<double>(nullptr, 8, nullptr, nullptr, nullptr, nullptr, 8,
                                               -1, 4, 1, 8),
               std::invalid_argument);  // negative batch
}

TEST(CudaEmbedding, RejectsBadSizesBeforeLaunching) {
  EXPECT_THROW(cuda::embedding_forward<float>(nullptr, nullptr, nullptr, -1, 4, 10),
               std::invalid_argument);
  EXPECT_THROW(cuda::embedding_forward<double>(nullptr, nullptr, nullptr, 3, 4, 0),
               std::invalid_argument);
  EXPECT_THROW(cuda::embedding_backward_weight<float>(nullptr, nullptr, nullptr, 3, -4, 10),
               std::invalid_argument);
}

TEST(CudaVectorOps, RejectNegativeSizesBeforeLaunching) {
  EXPECT_THROW(cuda::fill<float>(nullptr, 1.0f, -1), std::invalid_argument);
  EXPECT_THROW(cuda::copy<double>(nullptr, nullptr, -2), std::invalid_argument);
  EXPECT_THROW(cuda::add_inplace<float>(nullptr, nullptr, -3), std::invalid_argument);
  EXPECT_THROW(cuda::scale_inplace<double>(nullptr, 2.0, -4), std::invalid_argument);
  EXPECT_THROW(cuda::sum<float>(nullptr, -5), std::invalid_argument);
  EXPECT_THROW(cuda::sum_squares<double>(nullptr, -6), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
