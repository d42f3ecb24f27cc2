// An activation a block keeps from its forward piece for a later piece of its backward: in fp32,
// or, with precision fp8, as DeepSeek-V3 keeps the inputs of its fp8 linears (and the SwiGLU
// inputs it recomputes from): e4m3 codes in 1x128 tiles along the row, one fp32 scale per tile,
// a quarter of the bytes. The fp32 values then live in a transient buffer
// (ActivationArena::take_transient): the forward piece writes them and Save() quantises them;
// a backward piece's Load() refills the buffer with the dequantised values. A weight gradient
// then requantises them in 128x1 tiles along the tokens: V3's dequantise, transpose, requantise.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "trainer/activation_arena.h"

namespace tessera::trainer {

struct SavedActivation {
  float* values = nullptr;   // (rows, cols): saved, or transient when fp8
  uint8_t* codes = nullptr;  // (rows, cols) e4m3 when fp8
  float* scales = nullptr;   // (rows, ceil(cols / 128)) when fp8
  int64_t cols = 0;
  bool fp8 = false;

  // Room for up to `rows` rows.
  static SavedActivation Carve(ActivationArena& arena, int64_t rows, int64_t cols, bool fp8);

  // After the forward piece wrote the first `rows` rows of `values`: keeps them.
  void Save(kernels::BackendOps<float>& ops, int64_t rows) const;
  // In a later piece: the first `rows` rows as saved (fp8: dequantised into `values`).
  const float* Load(kernels::BackendOps<float>& ops, int64_t rows) const;
};

}  // namespace tessera::trainer
