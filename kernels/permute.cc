#include "kernels/permute.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/math/permute.h"

namespace tessera::kernels {

namespace {

// math/permute.h's float rows, vectorised per ISA (cpu_simd.h): the baseline build ran them at
// SSE2 width, and the gate gradient's dot product as one chain of adds.

// out = sum_j g_j * rows[pos_row[j]] (j ascending; written, or added onto out), g_j the gates,
// or 1 without them (permute's backward: 1 * x is x, bit for bit).
TESSERA_CPU_CLONES void gather_rows_f32(float* out, const float* rows, const int32_t* pos_row,
                                        const float* gates_row, int64_t k, int64_t C,
                                        bool accumulate) {
  if (!accumulate) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) out[c] = 0.0f;
  }
  for (int64_t j = 0; j < k; ++j) {
    const float g = gates_row != nullptr ? gates_row[j] : 1.0f;
    const float* src = rows + int64_t{pos_row[j]} * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) out[c] += g * src[c];
  }
}

// dyp[pos_row[j]] = g_j * dy; dgates[j] = <dy, yp[pos_row[j]]> by cpu::lane_sum (the one-chain
// sum ran at an add's latency: ~0.7 ms a call on bench-moe, Zen 5, the largest of these ops).
TESSERA_CPU_CLONES void combine_backward_row_f32(float* dyp, float* dgates_row, const float* dy,
                                                 const float* yp, const float* gates_row,
                                                 const int32_t* pos_row, int64_t k, int64_t C) {
  for (int64_t j = 0; j < k; ++j) {
    const int64_t p = pos_row[j];
    const float g = gates_row[j];
    float* out = dyp + p * C;
    const float* y = yp + p * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) out[c] = g * dy[c];
    dgates_row[j] = cpu::lane_sum<float>(C, [&](int64_t c) { return dy[c] * y[c]; });
  }
}

}  // namespace

// Counting sort by expert; slots are visited in increasing order, so equal experts keep token
// order (stable) and the result is the same on every run and thread count.
void moe_build_permutation(int32_t* pos_of_slot, int32_t* slot_of_pos, int64_t* expert_counts,
                           const int32_t* expert_idx, int64_t N, int64_t k, int64_t E) {
  const int64_t slots = N * k;
  if (slots > INT32_MAX) {
    throw std::invalid_argument("moe_build_permutation: N*k=" + std::to_string(slots) +
                                " does not fit int32 positions");
  }
  for (int64_t e = 0; e < E; ++e) expert_counts[e] = 0;
  for (int64_t s = 0; s < slots; ++s) {
    const int32_t e = expert_idx[s];
    if (e < 0 || e >= E) {
      throw std::out_of_range("moe_build_permutation: expert index " + std::to_string(e) +
                              " at slot " + std::to_string(s) + " is outside [0, " +
                              std::to_string(E) + ")");
    }
    ++expert_counts[e];
  }
  std::vector<int64_t> next(E);
  int64_t offset = 0;
  for (int64_t e = 0; e < E; ++e) {
    next[e] = offset;
    offset += expert_counts[e];
  }
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t p = next[expert_idx[s]]++;
    pos_of_slot[s] = static_cast<int32_t>(p);
    slot_of_pos[p] = static_cast<int32_t>(s);
  }
}

template <typename T>
void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k,
                 int64_t C) {
  const int64_t rows = N * k;
#pragma omp parallel for if (rows * C >= cpu::kMinParallelWork)
  for (int64_t p = 0; p < rows; ++p) {
    const T* src = x + (int64_t{slot_of_pos[p]} / k) * C;
    std::copy(src, src + C, xp + p * C);  // libc's vector copy (the element loop ran at SSE2 width)
  }
}

template <typename T>
void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N, int64_t k,
                          int64_t C, bool accumulate) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      gather_rows_f32(dx + n * C, dxp, pos_of_slot + n * k, nullptr, k, C, accumulate);
    } else {
      math::permute_backward_row(dx + n * C, dxp, pos_of_slot + n * k, k, C, accumulate);
    }
  }
}

template <typename T>
void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                           int64_t N, int64_t k, int64_t C, bool accumulate) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      gather_rows_f32(y + n * C, yp, pos_of_slot + n * k, gates + n * k, k, C, accumulate);
    } else {
      math::combine_row(y + n * C, yp, gates + n * k, pos_of_slot + n * k, k, C, accumulate);
    }
  }
}

// Each token writes its own k rows of dyp (pos_of_slot is a bijection): no races.
template <typename T>
void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp, const T* gates,
                                    const int32_t* pos_of_slot, int64_t N, int64_t k,
                                    int64_t C) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      combine_backward_row_f32(dyp, dgates + n * k, dy + n * C, yp, gates + n * k,
                               pos_of_slot + n * k, k, C);
    } else {
      math::combine_backward_row(dyp, dgates + n * k, dy + n * C, yp, gates + n * k,
                                 pos_of_slot + n * k, k, C);
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void moe_permute<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t);     \
  template void moe_permute_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t,      \
                                        int64_t, bool);                                      \
  template void moe_unpermute_combine<T>(T*, const T*, const T*, const int32_t*, int64_t,    \
                                         int64_t, int64_t, bool);                            \
  template void moe_unpermute_combine_backward<T>(T*, T*, const T*, const T*, const T*,      \
                                                  const int32_t*, int64_t, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
