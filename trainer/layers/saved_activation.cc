#include "trainer/layers/saved_activation.h"

#include "kernels/fp8_quantize.h"

namespace tessera::trainer {

SavedActivation SavedActivation::Carve(ActivationArena& arena, int64_t rows, int64_t cols,
                                       bool fp8) {
  SavedActivation a;
  a.cols = cols;
  a.fp8 = fp8;
  if (!fp8) {
    a.values = arena.take<float>(rows * cols);
    return a;
  }
  a.codes = arena.take<uint8_t>(rows * cols);
  a.scales = arena.take<float>(rows * kernels::fp8_scale_cols(cols));
  a.values = arena.take_transient<float>(rows * cols);
  return a;
}

void SavedActivation::Save(kernels::BackendOps<float>& ops, int64_t rows) const {
  if (fp8) ops.fp8_quantize_rows(codes, scales, values, cols, rows, cols);
}

const float* SavedActivation::Load(kernels::BackendOps<float>& ops, int64_t rows) const {
  if (fp8) ops.fp8_dequantize_rows(values, codes, scales, rows, cols);
  return values;
}

}  // namespace tessera::trainer
