#include "trainer/activation_arena.h"

#include <stdexcept>

namespace tessera::trainer {

ActivationArena::ActivationArena(kernels::Backend& backend, size_t bytes)
    : device_(backend.device()) {
  // Whole floats, at least one, so that even an empty arena is a real (non-measuring) one.
  const int64_t words = static_cast<int64_t>((bytes + 3) / 4) + 1;
  memory_ = backend.alloc({words}, kernels::DType::kF32);
  base_ = reinterpret_cast<std::byte*>(memory_.data<float>());
  capacity_ = static_cast<size_t>(words) * 4;
}

void ActivationArena::overflow(size_t needed) const {
  throw std::logic_error("ActivationArena: " + std::to_string(needed) + " bytes needed, " +
                         std::to_string(capacity_) +
                         " sized: a block carved more than it measured");
}

}  // namespace tessera::trainer
