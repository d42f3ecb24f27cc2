#include "kernels/permute.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/math/permute.h"

namespace tessera::kernels {

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
    math::copy_row(xp + p * C, x + (int64_t{slot_of_pos[p]} / k) * C, C);
  }
}

template <typename T>
void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N, int64_t k,
                          int64_t C, bool accumulate) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::permute_backward_row(dx + n * C, dxp, pos_of_slot + n * k, k, C, accumulate);
  }
}

template <typename T>
void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                           int64_t N, int64_t k, int64_t C, bool accumulate) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::combine_row(y + n * C, yp, gates + n * k, pos_of_slot + n * k, k, C, accumulate);
  }
}

// Each token writes its own k rows of dyp (pos_of_slot is a bijection): no races.
template <typename T>
void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp, const T* gates,
                                    const int32_t* pos_of_slot, int64_t N, int64_t k,
                                    int64_t C) {
#pragma omp parallel for if (N * k * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::combine_backward_row(dyp, dgates + n * k, dy + n * C, yp, gates + n * k,
                               pos_of_slot + n * k, k, C);
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
