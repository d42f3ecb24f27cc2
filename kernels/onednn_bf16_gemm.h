// The native bf16 GEMM of the CPU backend's bf16 linear maps (kernels/bf16_gemm_choice.h):
// operands rounded to bf16 (nearest even, kernels/math/low_precision.h) into packed scratch, then
// oneDNN's matmul primitive, bf16 x bf16 -> fp32 with fp32 accumulation, writing or adding into
// the fp32 output in place. The rounded values are the emulation's (kernels/gemm_operand.h);
// the sums differ only in order, and the hardware (VDPBF16PS, AMX) flushes subnormals to zero.
//
// The operands are rounded in the order they are stored and transposes given to oneDNN as
// strides (rounding into transposed copies cost up to 30% of a wgrad on a Xeon).
//
// Primitives are cached per shape (m, n, k, ldc, beta, transposes): creating one took 13-130 us
// on a Xeon (model 207) even when oneDNN's own primitive cache hit, as long as a small expert
// GEMM. The cache is cleared when it holds kMaxPrimitives (expert GEMMs see many row counts).
//
// Thread-safety: none; one thread drives an instance (as a backend's ops).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/gemm.h"

namespace tessera::kernels {

class OneDnnBf16Gemm {
 public:
  // Makes oneDNN's CPU engine and stream (throws dnnl::error, a std::exception, if it cannot).
  OneDnnBf16Gemm();
  ~OneDnnBf16Gemm();
  OneDnnBf16Gemm(const OneDnnBf16Gemm&) = delete;
  OneDnnBf16Gemm& operator=(const OneDnnBf16Gemm&) = delete;

  // C (m, n) [row stride ldc] = A·Bᵀ + beta·C, A = op_a(a) (m, k), B = op_b(b) (n, k), both
  // rounded to bf16; a is stored (m, k) [lda] for kNo, (k, m) for kYes; b (n, k) [ldb] for kNo,
  // (k, n) for kYes.
  // beta 0 overwrites C (NaN included). Throws std::invalid_argument on bad sizes or strides
  // (check_gemm_args) and std::runtime_error when oneDNN refuses the shape.
  void run(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, Trans trans_a,
           const float* b, int64_t ldb, Trans trans_b, float beta, float* c, int64_t ldc);

  // The oneDNN implementation chosen for the last shape run (e.g. "brg:avx512_core_bf16"), for
  // logs and tests ("" before the first run).
  const std::string& last_implementation() const { return last_impl_; }

  // Primitives created so far (cache misses), for the tests.
  int64_t primitives_created() const { return created_; }

  static constexpr size_t kMaxPrimitives = 1024;

 private:
  struct State;  // oneDNN objects (keeps dnnl.hpp out of this header)
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, uint32_t, bool, bool>;

  std::unique_ptr<State> state_;
  std::vector<uint16_t> a_, b_;  // packed bf16 operands, grown to the largest seen
  std::string last_impl_;
  int64_t created_ = 0;
};

}  // namespace tessera::kernels
