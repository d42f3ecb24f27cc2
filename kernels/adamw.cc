#include "kernels/adamw.h"

#include <cstdint>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/math/adamw.h"
#include "kernels/math/low_precision.h"

namespace tessera::kernels {

namespace {

// Elements per parallel chunk: each chunk is one vectorised (kernels/cpu_simd.h) loop.
constexpr int64_t kChunk = 4096;

// math::adamw_elem over [0, n), vectorised: the same operations, element by element.
TESSERA_CPU_CLONES void adamw_f32(float* param, const float* grad, float* m, float* v, int64_t n,
                                  const math::AdamWCoeffs<float>& k) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) math::adamw_elem(param + i, grad[i], m + i, v + i, k);
}

// One chunk with bf16 moments: widened into fp32 copies, updated, rounded back.
TESSERA_CPU_CLONES void adamw_bf16_moments_f32(float* param, const float* grad, uint16_t* m,
                                               uint16_t* v, int64_t n,
                                               const math::AdamWCoeffs<float>& k) {
  float mf[kChunk], vf[kChunk];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    mf[i] = math::bf16_to_float(m[i]);
    vf[i] = math::bf16_to_float(v[i]);
  }
  adamw_f32(param, grad, mf, vf, n, k);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    m[i] = cpu::bf16_bits_f32(mf[i]);
    v[i] = cpu::bf16_bits_f32(vf[i]);
  }
}

}  // namespace

void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& hp, bool decay, float grad_scale) {
  const math::AdamWCoeffs<float> k =
      math::adamw_coeffs(hp, decay, grad_scale, "adamw_update_bf16_moments");
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i = c * kChunk;
    adamw_bf16_moments_f32(param + i, grad + i, m + i, v + i,
                           n - i < kChunk ? n - i : kChunk, k);
  }
}

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp, bool decay,
                  T grad_scale) {
  const math::AdamWCoeffs<T> k = math::adamw_coeffs(hp, decay, grad_scale, "adamw_update");
  if constexpr (std::is_same_v<T, float>) {
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i = c * kChunk;
      adamw_f32(param + i, grad + i, m + i, v + i, n - i < kChunk ? n - i : kChunk, k);
    }
  } else {
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) math::adamw_elem(param + i, grad[i], m + i, v + i, k);
  }
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWStep&, bool, float);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWStep&, bool, double);

}  // namespace tessera::kernels
