// Element-wise reduction of host buffers by a Comm's dtype and ReduceOp: what the host
// communicators (FakeComm's ranks, MpiComm's reduce-scatter) compute themselves.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "kernels/tensor.h"
#include "parallel/comm.h"

namespace tessera::parallel {

// Calls f(T{}) with the C++ type of `dtype`.
template <typename F>
void visit_dtype(kernels::DType dtype, F&& f) {
  switch (dtype) {
    case kernels::DType::kF32:
      f(float{});
      return;
    case kernels::DType::kF64:
      f(double{});
      return;
    case kernels::DType::kI32:
      f(int32_t{});
      return;
    case kernels::DType::kI64:
      f(int64_t{});
      return;
    case kernels::DType::kU16:
      f(uint16_t{});
      return;
    case kernels::DType::kU32:
      f(uint32_t{});
      return;
  }
  throw std::invalid_argument("host reduce: unsupported dtype");
}

// acc[i] = acc[i] op x[i] (min, max: std::min / std::max) for i < n; acc and x of `dtype`.
// The op is chosen outside the loop, so each loop is a plain vectorisable one.
inline void reduce_into(void* acc, const void* x, int64_t n, kernels::DType dtype, ReduceOp op) {
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* a = static_cast<T*>(acc);
    const T* b = static_cast<const T*>(x);
    auto each = [&](auto f) {
      for (int64_t i = 0; i < n; ++i) a[i] = f(a[i], b[i]);
    };
    switch (op) {
      case ReduceOp::kSum:
        return each([](T u, T v) { return static_cast<T>(u + v); });
      case ReduceOp::kProd:
        return each([](T u, T v) { return static_cast<T>(u * v); });
      case ReduceOp::kMin:
        return each([](T u, T v) { return std::min(u, v); });
      case ReduceOp::kMax:
        return each([](T u, T v) { return std::max(u, v); });
    }
  });
}

}  // namespace tessera::parallel
