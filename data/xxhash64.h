// XXH64 (Yann Collet's xxHash, 64-bit variant), written out here so data/ needs no new dependency.
// Shard checksums are XXH64 with seed 0 over the shard's token bytes as stored (little-endian),
// written in manifests as "xxh64:<16 hex digits>". Results equal the reference xxHash library's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::data {

uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

// Incremental XXH64: update() any number of times, then digest() (which does not reset the state).
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  uint64_t seed_;
  uint64_t v_[4];
  uint64_t total_ = 0;
  unsigned char buffer_[32];
  size_t buffered_ = 0;
};

// "xxh64:0123456789abcdef" <-> value. parse_checksum returns false on a malformed string.
std::string format_checksum(uint64_t checksum);
bool parse_checksum(const std::string& text, uint64_t* checksum);

}  // namespace tessera::data
