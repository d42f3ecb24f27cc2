#include "kernels/gemm_operand.h"

#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"

namespace tessera::kernels {

namespace {

// A contiguous row rounded to bf16 (cpu::round_bf16_f32 vectorises; math::round_to_bf16 would
// not).
TESSERA_CPU_CLONES void round_bf16_row(float* out, const float* x, int64_t cols) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) out[c] = cpu::round_bf16_f32(x[c]);
}

}  // namespace

void round_gemm_operand(float* out, Precision precision, Fp8Tiling tiling, Trans trans,
                        const float* x, int64_t ldx, int64_t rows, int64_t cols) {
  if (precision == Precision::kFP8) {
    std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
    std::vector<float> scales(
        static_cast<size_t>(fp8_scale_rows(tiling, rows) * fp8_scale_cols(cols)));
    fp8_quantize(codes.data(), scales.data(), tiling, trans, x, ldx, rows, cols);
    fp8_dequantize(out, codes.data(), scales.data(), tiling, rows, cols);
    return;
  }
  const bool bf16 = precision == Precision::kBF16;
#pragma omp parallel for if (rows * cols >= cpu::kMinParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    if (bf16 && trans == Trans::kNo) {
      round_bf16_row(out + r * cols, x + r * ldx, cols);
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) {
      const float v = trans == Trans::kNo ? x[r * ldx + c] : x[c * ldx + r];
      out[r * cols + c] = bf16 ? cpu::round_bf16_f32(v) : v;
    }
  }
}

}  // namespace tessera::kernels
