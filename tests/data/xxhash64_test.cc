#include "data/xxhash64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/random.h"

namespace tessera::data {
namespace {

// Reference values from the xxHash library (libxxhash 0.8.1, XXH64).
TEST(Xxh64, MatchesReferenceLibrary) {
  EXPECT_EQ(xxh64("", 0), 0xef46db3751d8e999ull);
  EXPECT_EQ(xxh64("a", 1), 0xd24ec4f1a98c6e5bull);
  EXPECT_EQ(xxh64("abc", 3), 0x44bc2cf5ad770999ull);
  const std::string sentence = "Nobody inspects the spammish repetition";
  EXPECT_EQ(xxh64(sentence.data(), sentence.size()), 0xfbcea83c8a378bf1ull);
  std::string bytes;
  for (int r = 0; r < 3; ++r) {
    for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  }
  bytes += "xyz";
  EXPECT_EQ(xxh64(bytes.data(), bytes.size()), 0xe921a1b45bd779f8ull);
  EXPECT_EQ(xxh64("abc", 3, 1234567), 0xcb54395bbf895909ull);
}

TEST(Xxh64, StreamingEqualsOneShotForAnySplit) {
  Rng rng(3);
  std::vector<unsigned char> data(1000);
  for (auto& b : data) b = static_cast<unsigned char>(rng.next());
  for (size_t size : {0, 1, 7, 31, 32, 33, 64, 100, 1000}) {
    const uint64_t expected = xxh64(data.data(), size);
    for (int trial = 0; trial < 20; ++trial) {
      Xxh64 hash;
      size_t at = 0;
      while (at < size) {
        const size_t take = std::min<size_t>(size - at, rng.below(40));
        hash.update(data.data() + at, take);
        at += take;
      }
      EXPECT_EQ(hash.digest(), expected) << "size " << size;
    }
  }
}

TEST(Xxh64, ChecksumTextRoundTrips) {
  uint64_t value = 0;
  EXPECT_EQ(format_checksum(0x0123456789abcdefull), "xxh64:0123456789abcdef");
  ASSERT_TRUE(parse_checksum("xxh64:0123456789abcdef", &value));
  EXPECT_EQ(value, 0x0123456789abcdefull);
  EXPECT_FALSE(parse_checksum("xxh64:0123456789abcde", &value));
  EXPECT_FALSE(parse_checksum("fnv64:0123456789abcdef", &value));
  EXPECT_FALSE(parse_checksum("xxh64:0123456789abcdeg", &value));
}

}  // namespace
}  // namespace tessera::data
