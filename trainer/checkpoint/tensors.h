// What model.h5 holds: the checkpoint's global tensors, the slices of them a rank holds, and the
// layout-independent checksum of a slice.
//
// Checksums are layout-independent: the sum mod 2^64 over a tensor's elements of a 64-bit mix of
// (element index, float bits), so ranks add up the partial sums of the slices they own, whatever
// the layout, and a reader of any layout checks the slices it owns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Dataset names of a parameter's AdamW moments: prefix + parameter name.
constexpr const char* kExpAvgPrefix = "optimizer/exp_avg/";
constexpr const char* kExpAvgSqPrefix = "optimizer/exp_avg_sq/";

// A dataset of model.h5: a global tensor.
struct CheckpointTensor {
  std::string name;
  kernels::Shape shape;
  int64_t numel() const { return kernels::shape_numel(shape); }
};

// The datasets of the whole model's checkpoint, in a fixed order (the order they are created in).
std::vector<CheckpointTensor> checkpoint_tensors(const ModelConfig& config);

// Elements [begin, end) (row-major) of tensor `tensor` (an index into the tensor list), held at
// `data` in this process.
struct TensorSlice {
  int tensor = 0;
  int64_t begin = 0, end = 0;
  float* data = nullptr;
};

// Partial checksum of elements [begin, begin + n) of a tensor.
uint64_t slice_checksum(int64_t begin, const float* data, int64_t n);

}  // namespace tessera::trainer
