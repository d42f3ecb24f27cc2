#include "kernels/host_staging.h"

#include <algorithm>
#include <vector>

namespace tessera::kernels {

void stage_to_backend(Backend& backend, uint16_t* dst, int64_t n,
                      const std::function<void(uint16_t*, int64_t, int64_t)>& produce) {
  std::vector<uint16_t> chunk(static_cast<size_t>(std::clamp<int64_t>(n, 0, kHostStagingChunk)));
  for (int64_t c = 0; c < n; c += kHostStagingChunk) {
    const int64_t len = std::min(kHostStagingChunk, n - c);
    produce(chunk.data(), c, len);
    backend.copy_from_host(dst + c, chunk.data(), sizeof(uint16_t) * len);
  }
}

void stage_from_backend(Backend& backend, const uint16_t* src, int64_t n,
                        const std::function<void(const uint16_t*, int64_t, int64_t)>& consume) {
  std::vector<uint16_t> chunk(static_cast<size_t>(std::clamp<int64_t>(n, 0, kHostStagingChunk)));
  for (int64_t c = 0; c < n; c += kHostStagingChunk) {
    const int64_t len = std::min(kHostStagingChunk, n - c);
    backend.copy_to_host(chunk.data(), src + c, sizeof(uint16_t) * len);
    consume(chunk.data(), c, len);
  }
}

}  // namespace tessera::kernels
