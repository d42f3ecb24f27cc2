// ActivationArena: the memory of ONE micro-batch in flight (DESIGN.md "Layers"): every buffer its
// forward saves for the backward and every backward workspace, carved by a bump pointer from one
// allocation on the model's backend. Buffers that live within one piece come from a workspace
// shared by all micro-batches instead (take_transient). Contexts are owned by the caller (the
// pipeline stage keeps one per micro-batch the schedule has in flight at its peak) and sized
// before the first step: the blocks carve the same buffers from a MEASURING arena (no memory,
// take() returns nullptr), which gives the size without allocating, for the real arena and for
// `train --dry-run`.
//
// Thread-safety: none; one micro-batch's arena is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace tessera::trainer {

class ActivationArena {
 public:
  // A measuring arena for buffers on `device`: take() counts bytes and returns nullptr.
  explicit ActivationArena(kernels::Device device) : device_(device) {}
  // `bytes` of backend memory, allocated now.
  ActivationArena(kernels::Backend& backend, size_t bytes);

  // n elements of T, aligned to kAlignment bytes. Throws std::logic_error naming the sizes when
  // a real arena runs out (a block carved more than it measured: a bug, never silent).
  template <typename T>
  T* take(int64_t n) {
    const size_t at = (used_ + kAlignment - 1) / kAlignment * kAlignment;
    const size_t bytes = static_cast<size_t>(n < 0 ? 0 : n) * sizeof(T);
    if (!measuring() && at + bytes > capacity_) overflow(at + bytes);
    used_ = at + bytes;
    return measuring() ? nullptr : reinterpret_cast<T*>(base_ + at);
  }
  // Starts carving from the beginning again (the next micro-batch of this context).
  void reset() { used_ = 0; }

  // Transient buffers: written and read within ONE piece of a block (trainer/layers/block.h),
  // never kept from one piece to the next. They come from the attached workspace, one arena the
  // model shares between every block and every micro-batch in flight (pieces run one at a time,
  // in order on the compute stream); without one, from this arena like any other buffer.
  void attach_workspace(ActivationArena* workspace) { workspace_ = workspace; }
  template <typename T>
  T* take_transient(int64_t n) {
    return workspace_ ? workspace_->take<T>(n) : take<T>(n);
  }
  // A block's transient buffers start at the workspace's beginning: they may alias every other
  // block's, whose pieces never run at the same time.
  void begin_block() {
    if (workspace_) workspace_->rewind();
  }
  // The most bytes carved between rewinds (a workspace's size).
  size_t peak() const { return used_ > peak_ ? used_ : peak_; }

  bool measuring() const { return base_ == nullptr; }
  // The device whose buffers are carved (some sizes depend on it: kernels::attention_*_numel).
  kernels::Device device() const { return device_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }

  static constexpr size_t kAlignment = 256;  // cuBLAS and vector loads like aligned rows

 private:
  void rewind() {
    peak_ = peak();
    used_ = 0;
  }
  [[noreturn]] void overflow(size_t needed) const;
  kernels::Device device_ = kernels::Device::kCPU;
  kernels::Tensor memory_;
  std::byte* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0, peak_ = 0;
  ActivationArena* workspace_ = nullptr;
};

}  // namespace tessera::trainer
