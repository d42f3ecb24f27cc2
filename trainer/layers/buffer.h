// Grow-only float buffers for per-slot activations: allocated on first use and reused, since a
// first touch of fresh pages costs more than the math of a small layer (MACHINE-FACTS.md).
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace tessera::trainer {

// Returns a float pointer to at least n elements of t, reallocating only when t is too small.
inline float* ensure_floats(kernels::Tensor& t, int64_t n) {
  if (!t.defined() || t.numel() < n) t = kernels::Tensor::empty({n}, kernels::DType::kF32);
  return t.data<float>();
}
inline int32_t* ensure_ints(kernels::Tensor& t, int64_t n) {
  if (!t.defined() || t.numel() < n) t = kernels::Tensor::empty({n}, kernels::DType::kI32);
  return t.data<int32_t>();
}

}  // namespace tessera::trainer
