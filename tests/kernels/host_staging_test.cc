// Staging bf16 bits through the host chunk: every value of a region a few chunks long (the last
// one partial) reaches the backend at its offset, and comes back in chunks whose offsets and
// lengths tile the region exactly.
#include "kernels/host_staging.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/cpu_backend.h"

namespace tessera::kernels {
namespace {

TEST(HostStaging, ChunksTileTheRegionBothWays) {
  CpuBackend backend;
  const int64_t n = 2 * kHostStagingChunk + 123;
  Tensor region = backend.alloc({n}, DType::kU16);
  uint16_t* bits = region.data<uint16_t>();
  int64_t produced = 0;
  stage_to_backend(backend, bits, n, [&](uint16_t* chunk, int64_t offset, int64_t len) {
    EXPECT_EQ(offset, produced);
    EXPECT_LE(len, kHostStagingChunk);
    for (int64_t i = 0; i < len; ++i) chunk[i] = static_cast<uint16_t>((offset + i) * 7);
    produced += len;
  });
  EXPECT_EQ(produced, n);
  for (int64_t i : {int64_t{0}, kHostStagingChunk - 1, kHostStagingChunk, n - 1}) {
    EXPECT_EQ(bits[i], static_cast<uint16_t>(i * 7)) << i;
  }
  std::vector<uint16_t> back(static_cast<size_t>(n), 0);
  int64_t consumed = 0;
  stage_from_backend(backend, bits, n, [&](const uint16_t* chunk, int64_t offset, int64_t len) {
    EXPECT_EQ(offset, consumed);
    std::copy(chunk, chunk + len, back.begin() + offset);
    consumed += len;
  });
  EXPECT_EQ(consumed, n);
  EXPECT_EQ(back, std::vector<uint16_t>(bits, bits + n));
  stage_to_backend(backend, bits, 0, [](uint16_t*, int64_t, int64_t) { FAIL(); });  // nothing
}

}  // namespace
}  // namespace tessera::kernels
