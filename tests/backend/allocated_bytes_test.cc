// Backend::allocated_bytes (kernels/memory_meter.h): alloc() buffers are counted from allocation
// until their last view goes, the peak holds the high-water mark until reset, alloc_host() is
// not device memory, and a wrapper (ProfilingBackend) reports its inner backend's count.
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/cpu_backend.h"
#include "kernels/profiling_backend.h"

namespace tessera::kernels {
namespace {

TEST(AllocatedBytes, CountsLiveBuffersAndTheirPeak) {
  CpuBackend cpu;
  EXPECT_EQ(cpu.allocated_bytes().live, 0);
  {
    const Tensor a = cpu.alloc({1000}, DType::kF32);
    Tensor view;
    {
      const Tensor b = cpu.alloc({10, 10}, DType::kF64);
      EXPECT_EQ(cpu.allocated_bytes().live, 4000 + 800);
      view = b;  // a view keeps the buffer
    }
    EXPECT_EQ(cpu.allocated_bytes().live, 4800);
    view = Tensor();
    EXPECT_EQ(cpu.allocated_bytes().live, 4000);
    const Tensor host = cpu.alloc_host({1 << 20}, DType::kF32);
    EXPECT_EQ(cpu.allocated_bytes().live, 4000);
    EXPECT_EQ(cpu.allocated_bytes().peak, 4800);
  }
  EXPECT_EQ(cpu.allocated_bytes().live, 0);
  EXPECT_EQ(cpu.allocated_bytes().peak, 4800);
  cpu.reset_peak_allocated();
  EXPECT_EQ(cpu.allocated_bytes().peak, 0);
  const Tensor c = cpu.alloc({16}, DType::kF32);
  EXPECT_EQ(cpu.allocated_bytes().peak, 64);
}

TEST(AllocatedBytes, OutliveTheBackendAndPassThroughAWrapper) {
  Tensor kept;
  {
    CpuBackend cpu;
    ProfilingBackend prof(cpu);
    kept = prof.alloc({8}, DType::kF32);
    EXPECT_EQ(prof.allocated_bytes().live, 32);
    EXPECT_EQ(cpu.allocated_bytes().live, 32);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(kept.data<float>()) % 64, 0u);
  }
  kept.data<float>()[7] = 1.0f;  // the buffer is still valid after its backend is gone
  kept = Tensor();
}

}  // namespace
}  // namespace tessera::kernels
