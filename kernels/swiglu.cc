#include "kernels/swiglu.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/math/swiglu.h"

namespace tessera::kernels {

namespace {
void check_ld(const char* op, int64_t ld_ab, int64_t F) {
  if (ld_ab < F) {
    throw std::invalid_argument(std::string(op) + ": row stride ld_ab=" + std::to_string(ld_ab) +
                                " < F=" + std::to_string(F));
  }
}

// float rows: math/swiglu.h's formulas, operation for operation, vectorised with the CPU's
// exp_f32 (kernels/cpu_simd.h) in place of expf.
TESSERA_CPU_CLONES void swiglu_forward_row(float* h, const float* a, const float* b, int64_t F) {
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) h[f] = a[f] * cpu::sigmoid_f32(a[f]) * b[f];
}

TESSERA_CPU_CLONES void swiglu_backward_row(float* da, float* db, const float* dh, const float* a,
                                            const float* b, int64_t F) {
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) {
    const float x = a[f], s = cpu::sigmoid_f32(x), g = dh[f];
    const float da_f = g * b[f] * s * (1.0f + x * (1.0f - s));
    db[f] = g * x * s;
    da[f] = da_f;
  }
}
}  // namespace

template <typename T>
void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N, int64_t F) {
  check_ld("swiglu_forward", ld_ab, F);
#pragma omp parallel for if (N * F >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const T* a_row = a + n * ld_ab;
    const T* b_row = b + n * ld_ab;
    T* h_row = h + n * F;
    if constexpr (std::is_same_v<T, float>) {
      swiglu_forward_row(h_row, a_row, b_row, F);
    } else {
      for (int64_t f = 0; f < F; ++f) h_row[f] = math::swiglu_forward_elem(a_row[f], b_row[f]);
    }
  }
}

template <typename T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab, int64_t N,
                     int64_t F) {
  check_ld("swiglu_backward", ld_ab, F);
#pragma omp parallel for if (N * F >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t o = n * ld_ab;
    const T* dh_row = dh + n * F;
    if constexpr (std::is_same_v<T, float>) {
      swiglu_backward_row(da + o, db + o, dh_row, a + o, b + o, F);
    } else {
      for (int64_t f = 0; f < F; ++f) {
        math::swiglu_backward_elem(da + o + f, db + o + f, dh_row[f], a[o + f], b[o + f]);
      }
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);        \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                   int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
