// Moving 16-bit values (bf16 bits) between the host and backend memory the host cannot address,
// through one host buffer of at most kHostStagingChunk values, so a large region never needs a
// host copy of its own size. The callers convert on the host side of each chunk: AdamW's bf16
// moments start as zeros, and checkpoints widen them to float32 or round float32 into them.
#pragma once
#include <cstdint>
#include <functional>

#include "kernels/backend.h"

namespace tessera::kernels {

inline constexpr int64_t kHostStagingChunk = int64_t{1} << 18;  // values: 512 KiB of bits

// Fills dst[0, n) on the backend: produce(chunk, offset, len) writes the host values of
// [offset, offset + len) into chunk, which is then copied over.
void stage_to_backend(Backend& backend, uint16_t* dst, int64_t n,
                      const std::function<void(uint16_t* chunk, int64_t offset, int64_t len)>&
                          produce);

// Reads src[0, n) from the backend: consume(chunk, offset, len) gets the host copy of
// [offset, offset + len).
void stage_from_backend(Backend& backend, const uint16_t* src, int64_t n,
                        const std::function<void(const uint16_t* chunk, int64_t offset,
                                                 int64_t len)>& consume);

}  // namespace tessera::kernels
