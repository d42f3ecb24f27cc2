// Causal attention per (batch, head): S = scale Q K^T (gemm), causal softmax rows, O = P V
// (gemm). Causal blocking: rows are taken kRowBlock at a time, and a block of rows [r0, r1) only
// needs columns [0, r1), so the GEMMs skip the masked upper triangle (almost half the attention
// FLOPs for long sequences). P keeps its full (T, T) layout with zeros above the diagonal.
// Threads: in float the (batch, head) pairs are spread over the threads, each running its small
// GEMMs on one thread (oneDNN runs single-threaded inside a parallel region), since splitting
// (64 x T x hd) GEMMs across threads loses; the backward's (T, T) scratch is the caller's on the
// first thread and a per-thread buffer on the others. Each pair computes exactly what it would
// alone, so the result does not depend on the thread count. In double (gradient checks) the
// pairs run in order, their GEMMs on all threads, with the shared TESSERA_HD softmax rows;
// float's softmax rows are vectorised (kernels/cpu_simd.h: exp_f32, kLanes partial sums).
#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/gemm.h"
#include "kernels/math/softmax.h"

namespace tessera::kernels {

namespace {

constexpr int64_t kRowBlock = 64;

void check_strides(const char* op, int64_t H, int64_t hd, int64_t ld_a, const char* name_a,
                   int64_t ld_b, const char* name_b) {
  if (ld_a < H * hd || ld_b < H * hd) {
    throw std::invalid_argument(std::string(op) + ": row strides " + name_a + "=" +
                                std::to_string(ld_a) + ", " + name_b + "=" +
                                std::to_string(ld_b) + " must be >= H*hd = " +
                                std::to_string(H * hd));
  }
}

// math::causal_softmax_row in float: exp_f32, the sum in kLanes partial sums. Lanes past n_valid,
// up to the next whole vector where the row has them, are set to -inf first: their exponential is
// 0, so the row's tail runs in the vector loop (a scalar tail cost as much as the rest of a row)
// and adds 0 to the same partial sums it would have reached one by one.
TESSERA_CPU_CLONES void causal_softmax_row_f32(float* p, int64_t n_valid, int64_t n_total) {
  float mx = p[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n_valid; ++j) mx = p[j] > mx ? p[j] : mx;
  const int64_t padded =
      std::min((n_valid + cpu::kLanes - 1) / cpu::kLanes * cpu::kLanes, n_total);
  std::fill(p + n_valid, p + padded, -std::numeric_limits<float>::infinity());
  float part[cpu::kLanes] = {};
  const int64_t full = padded / cpu::kLanes * cpu::kLanes;
  for (int64_t j0 = 0; j0 < full; j0 += cpu::kLanes) {
#pragma omp simd
    for (int l = 0; l < cpu::kLanes; ++l) {
      const float e = cpu::exp_f32(p[j0 + l] - mx);
      p[j0 + l] = e;
      part[l] += e;
    }
  }
  for (int64_t j = full; j < padded; ++j) {
    const float e = cpu::exp_f32(p[j] - mx);
    p[j] = e;
    part[j - full] += e;
  }
  float sum = 0;
  for (int l = 0; l < cpu::kLanes; ++l) sum += part[l];
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n_valid; ++j) p[j] *= inv;
  std::fill(p + n_valid, p + n_total, 0.0f);
}

// math::causal_softmax_backward_row in float, the dot product in kLanes partial sums.
TESSERA_CPU_CLONES void causal_softmax_backward_row_f32(float* dp, const float* p,
                                                        int64_t n_valid, int64_t n_total,
                                                        float scale) {
  float part[cpu::kLanes] = {};
  const int64_t full = n_valid / cpu::kLanes * cpu::kLanes;
  for (int64_t j0 = 0; j0 < full; j0 += cpu::kLanes) {
#pragma omp simd
    for (int l = 0; l < cpu::kLanes; ++l) part[l] += p[j0 + l] * dp[j0 + l];
  }
  for (int64_t j = full; j < n_valid; ++j) part[j - full] += p[j] * dp[j];
  float dot = 0;
  for (int l = 0; l < cpu::kLanes; ++l) dot += part[l];
#pragma omp simd
  for (int64_t j = 0; j < n_valid; ++j) dp[j] = scale * p[j] * (dp[j] - dot);
  std::fill(dp + n_valid, dp + n_total, 0.0f);
}

template <typename T>
void softmax_row(T* p, int64_t n_valid, int64_t n_total) {
  if constexpr (std::is_same_v<T, float>) {
    causal_softmax_row_f32(p, n_valid, n_total);
  } else {
    math::causal_softmax_row(p, n_valid, n_total);
  }
}

template <typename T>
void softmax_backward_row(T* dp, const T* p, int64_t n_valid, int64_t n_total, T scale) {
  if constexpr (std::is_same_v<T, float>) {
    causal_softmax_backward_row_f32(dp, p, n_valid, n_total, scale);
  } else {
    math::causal_softmax_backward_row(dp, p, n_valid, n_total, scale);
  }
}

// One (batch, head) pair of the forward. q, k, v, out point at the pair's first element; P is
// its (T, T) softmax.
template <typename T>
void attention_forward_pair(T* out, int64_t ld_out, T* P, const T* q, const T* k, const T* v,
                            int64_t ld_qkv, int64_t T_len, int64_t hd, T scale) {
  for (int64_t r0 = 0; r0 < T_len; r0 += kRowBlock) {
    const int64_t r1 = std::min(T_len, r0 + kRowBlock), rows = r1 - r0;
    gemm<T>(Trans::kNo, Trans::kYes, rows, r1, hd, scale, q + r0 * ld_qkv, ld_qkv, k, ld_qkv,
            T(0), P + r0 * T_len, T_len);
#pragma omp parallel for if (rows * r1 >= cpu::kMinParallelWork && !omp_in_parallel())
    for (int64_t t = r0; t < r1; ++t) softmax_row(P + t * T_len, t + 1, T_len);
    gemm<T>(Trans::kNo, Trans::kNo, rows, hd, r1, T(1), P + r0 * T_len, T_len, v, ld_qkv, T(0),
            out + r0 * ld_out, ld_out);
  }
}

// One (batch, head) pair of the backward, pointers as the forward's; scratch is (T, T).
template <typename T>
void attention_backward_pair(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dO,
                             int64_t ld_out, const T* P, const T* q, const T* k, const T* v,
                             int64_t ld_qkv, int64_t T_len, int64_t hd, T scale) {
  // Row blocks from the last: it spans every column, so its beta = 0 initialises all of dK and
  // dV, and the earlier (narrower) blocks accumulate into their prefix.
  const int64_t last_r0 = (T_len - 1) / kRowBlock * kRowBlock;
  for (int64_t r0 = last_r0; r0 >= 0; r0 -= kRowBlock) {
    const int64_t r1 = std::min(T_len, r0 + kRowBlock), rows = r1 - r0;
    const T beta = r0 == last_r0 ? T(0) : T(1);
    const T* Pb = P + r0 * T_len;
    const T* dOb = dO + r0 * ld_out;
    T* dSb = scratch + r0 * T_len;
    // dV[0:r1] += P_b^T dO_b
    gemm<T>(Trans::kYes, Trans::kNo, r1, hd, rows, T(1), Pb, T_len, dOb, ld_out, beta, dv,
            ld_dqkv);
    // dP_b = dO_b V[0:r1]^T, then dS_b = scale * softmax_backward(dP_b) in place
    gemm<T>(Trans::kNo, Trans::kYes, rows, r1, hd, T(1), dOb, ld_out, v, ld_qkv, T(0), dSb,
            T_len);
#pragma omp parallel for if (rows * r1 >= cpu::kMinParallelWork && !omp_in_parallel())
    for (int64_t t = r0; t < r1; ++t) {
      softmax_backward_row(scratch + t * T_len, P + t * T_len, t + 1, r1, scale);
    }
    // dQ_b = dS_b K[0:r1], dK[0:r1] += dS_b^T Q_b
    gemm<T>(Trans::kNo, Trans::kNo, rows, hd, r1, T(1), dSb, T_len, k, ld_qkv, T(0),
            dq + r0 * ld_dqkv, ld_dqkv);
    gemm<T>(Trans::kYes, Trans::kNo, r1, hd, rows, T(1), dSb, T_len, q + r0 * ld_qkv, ld_qkv,
            beta, dk, ld_dqkv);
  }
}

// Pairs over threads (float, more than one thread and pair) or in order.
template <typename T>
bool pairs_in_parallel(int64_t pairs) {
  return std::is_same_v<T, float> && pairs > 1 && cpu_threads() > 1;
}

}  // namespace

template <typename T>
void attention_forward(T* out, int64_t ld_out, T* probs, const T* q, const T* k, const T* v,
                       int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_forward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const int64_t pairs = B * H;
  auto pair = [&](int64_t i) {
    const int64_t b = i / H, h = i % H;
    const int64_t base = b * T_len * ld_qkv + h * hd;
    attention_forward_pair(out + b * T_len * ld_out + h * hd, ld_out,
                           probs + i * T_len * T_len, q + base, k + base, v + base, ld_qkv,
                           T_len, hd, scale);
  };
  if (pairs_in_parallel<T>(pairs)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < pairs; ++i) pair(i);
  } else {
    for (int64_t i = 0; i < pairs; ++i) pair(i);
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                        int64_t ld_out, const T* probs, const T* q, const T* k, const T* v,
                        int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_backward", H, hd, ld_dqkv, "ld_dqkv", ld_qkv, "ld_qkv");
  check_strides("attention_backward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const int64_t pairs = B * H;
  auto pair = [&](int64_t i, T* pair_scratch) {
    const int64_t b = i / H, h = i % H;
    const int64_t base = b * T_len * ld_qkv + h * hd;
    const int64_t dbase = b * T_len * ld_dqkv + h * hd;
    attention_backward_pair(dq + dbase, dk + dbase, dv + dbase, ld_dqkv, pair_scratch,
                            dout + b * T_len * ld_out + h * hd, ld_out,
                            probs + i * T_len * T_len, q + base, k + base, v + base, ld_qkv,
                            T_len, hd, scale);
  };
  if (pairs_in_parallel<T>(pairs)) {
#pragma omp parallel
    {
      // The caller's scratch serves the first thread; the others keep one of their own.
      thread_local std::vector<T> own;
      T* mine = scratch;
      if (omp_get_thread_num() != 0) {
        if (own.size() < static_cast<size_t>(T_len * T_len)) own.resize(T_len * T_len);
        mine = own.data();
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < pairs; ++i) pair(i, mine);
    }
  } else {
    for (int64_t i = 0; i < pairs; ++i) pair(i, scratch);
  }
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void attention_forward<T>(T*, int64_t, T*, const T*, const T*, const T*, int64_t,  \
                                     int64_t, int64_t, int64_t, int64_t);                     \
  template void attention_backward<T>(T*, T*, T*, int64_t, T*, const T*, int64_t, const T*,   \
                                      const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                      int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
