#include "data/xxhash64.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

namespace tessera::data {

static_assert(std::endian::native == std::endian::little,
              "checksums read the token bytes as stored, which are little-endian");

namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round64(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = rotl(acc, 31);
  return acc * kP1;
}
inline uint64_t merge_round(uint64_t acc, uint64_t v) {
  acc ^= round64(0, v);
  return acc * kP1 + kP4;
}

// Consumes whole 32-byte stripes from p; returns the number of bytes consumed.
inline size_t consume_stripes(uint64_t v[4], const unsigned char* p, size_t size) {
  const size_t n = size / 32 * 32;
  uint64_t v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3];
  for (size_t i = 0; i < n; i += 32) {
    v1 = round64(v1, read64(p + i));
    v2 = round64(v2, read64(p + i + 8));
    v3 = round64(v3, read64(p + i + 16));
    v4 = round64(v4, read64(p + i + 24));
  }
  v[0] = v1, v[1] = v2, v[2] = v3, v[3] = v4;
  return n;
}

uint64_t finish(uint64_t h, const unsigned char* p, size_t remaining) {
  while (remaining >= 8) {
    h ^= round64(0, read64(p));
    h = rotl(h, 27) * kP1 + kP4;
    p += 8;
    remaining -= 8;
  }
  if (remaining >= 4) {
    h ^= static_cast<uint64_t>(read32(p)) * kP1;
    h = rotl(h, 23) * kP2 + kP3;
    p += 4;
    remaining -= 4;
  }
  while (remaining > 0) {
    h ^= static_cast<uint64_t>(*p) * kP5;
    h = rotl(h, 11) * kP1;
    ++p;
    --remaining;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

uint64_t converge(const uint64_t v[4]) {
  uint64_t h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
  for (int i = 0; i < 4; ++i) h = merge_round(h, v[i]);
  return h;
}

void init_lanes(uint64_t v[4], uint64_t seed) {
  v[0] = seed + kP1 + kP2;
  v[1] = seed + kP2;
  v[2] = seed;
  v[3] = seed - kP1;
}

}  // namespace

uint64_t xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h;
  size_t done = 0;
  if (size >= 32) {
    uint64_t v[4];
    init_lanes(v, seed);
    done = consume_stripes(v, p, size);
    h = converge(v);
  } else {
    h = seed + kP5;
  }
  h += size;
  return finish(h, p + done, size - done);
}

Xxh64::Xxh64(uint64_t seed) : seed_(seed) { init_lanes(v_, seed); }

void Xxh64::update(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ > 0) {
    const size_t take = std::min(size, 32 - buffered_);
    std::memcpy(buffer_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < 32) return;
    consume_stripes(v_, buffer_, 32);
    buffered_ = 0;
  }
  const size_t done = consume_stripes(v_, p, size);
  std::memcpy(buffer_, p + done, size - done);
  buffered_ = size - done;
}

uint64_t Xxh64::digest() const {
  uint64_t h = total_ >= 32 ? converge(v_) : seed_ + kP5;
  h += total_;
  return finish(h, buffer_, buffered_);
}

std::string format_checksum(uint64_t checksum) {
  char text[32];
  std::snprintf(text, sizeof text, "xxh64:%016llx", static_cast<unsigned long long>(checksum));
  return text;
}

bool parse_checksum(const std::string& text, uint64_t* checksum) {
  constexpr const char* kPrefix = "xxh64:";
  if (text.size() != 6 + 16 || text.compare(0, 6, kPrefix) != 0) return false;
  uint64_t value = 0;
  for (size_t i = 6; i < text.size(); ++i) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else return false;
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  *checksum = value;
  return true;
}

}  // namespace tessera::data
