// Grow-only buffers for per-slot activations, allocated through the model's backend (so they
// live on its device): allocated on first use and reused, since a first touch of fresh pages
// costs more than the math of a small layer (MACHINE-FACTS.md).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace tessera::trainer {

// Returns a pointer to at least n elements of t, reallocating (on `backend`) only when t is too
// small. The contents are unspecified after a reallocation.
inline float* ensure_floats(kernels::Backend& backend, kernels::Tensor& t, int64_t n) {
  if (!t.defined() || t.numel() < n) t = backend.alloc({n}, kernels::DType::kF32);
  return t.data<float>();
}
inline int32_t* ensure_ints(kernels::Backend& backend, kernels::Tensor& t, int64_t n) {
  if (!t.defined() || t.numel() < n) t = backend.alloc({n}, kernels::DType::kI32);
  return t.data<int32_t>();
}

}  // namespace tessera::trainer
