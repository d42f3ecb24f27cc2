// Bytes a backend has allocated on its device: live now and the high-water mark since the last
// reset. The memory plan (trainer/memory_plan.h, `tessera plan`) predicts these allocations
// (and, on the CPU, the MoE blocks' packed exchange buffers, host vectors not counted here), so
// the peak checks it; a process's resident set also holds libraries, MPI and the heap. Shared with the deleters of the buffers, which may outlive the backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace tessera::kernels {

struct AllocatedBytes {
  int64_t live = 0;
  int64_t peak = 0;
};

class MemoryMeter {
 public:
  void allocated(int64_t bytes) {
    const int64_t now = live_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void freed(int64_t bytes) { live_.fetch_sub(bytes, std::memory_order_relaxed); }
  AllocatedBytes read() const {
    return {live_.load(std::memory_order_relaxed), peak_.load(std::memory_order_relaxed)};
  }
  // The high-water mark starts again from what is live now.
  void reset_peak() { peak_.store(live_.load(std::memory_order_relaxed)); }

 private:
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> peak_{0};
};

// Wraps `memory` (bytes long) so that the meter counts it until its last owner lets go.
inline std::shared_ptr<void> metered(std::shared_ptr<void> memory, int64_t bytes,
                                     std::shared_ptr<MemoryMeter> meter) {
  meter->allocated(bytes);
  void* ptr = memory.get();
  return std::shared_ptr<void>(ptr, [memory = std::move(memory), bytes,
                                     meter = std::move(meter)](void*) mutable {
    memory.reset();
    meter->freed(bytes);
  });
}

}  // namespace tessera::kernels
