// Random access to one split of a dataset as a single token stream: the split's shards
// concatenated in manifest order.
//
// The constructor checks every shard's metadata against the manifest (ShardReader), and that the
// model's vocabulary holds the manifest's. A shard's contents are verified the first time any of
// its tokens is read: the XXH64 of its bytes must match the manifest and every id must be < the
// manifest's vocab_size; errors name the shard file, the id and the vocab_size. Verified shards are
// kept in memory while their total size stays within `cache_bytes`; shards beyond that budget are
// read range by range from their files (up to 32 kept open).
//
// Not thread-safe (the loader uses one from a single thread at a time).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "data/manifest.h"
#include "data/shard.h"

namespace tessera::data {

class SplitReader {
 public:
  // `model_vocab`: the model's vocab_size (model.vocab_size), which must be >= the manifest's, else
  // DataError naming both (0: no model to check against).
  SplitReader(std::string dataset_dir, const Manifest& manifest, const std::string& split,
              int64_t model_vocab, uint64_t cache_bytes);
  ~SplitReader();
  SplitReader(const SplitReader&) = delete;
  SplitReader& operator=(const SplitReader&) = delete;

  uint64_t size() const { return size_; }
  size_t n_shards() const { return shards_.size(); }

  // Tokens [begin, begin + count) of the stream, widened to int32. REQUIRES: begin + count <= size().
  void read(uint64_t begin, uint64_t count, int32_t* out);

  // Verifies every shard now (checksums, token range), instead of on first read.
  void verify_all();

  uint64_t resident_bytes() const { return resident_bytes_; }

 private:
  struct Shard {
    ShardInfo info;
    std::string path;
    uint64_t begin = 0;  // offset of its first token in the stream
    bool verified = false;
    std::vector<uint16_t> u16;  // resident tokens (one of the two, by dtype), else empty
    std::vector<uint32_t> u32;
    bool resident = false;
  };
  void verify(Shard& shard);
  ShardReader& open(Shard& shard);
  void read_from_shard(Shard& shard, uint64_t begin, uint64_t count, int32_t* out);

  std::string dir_;
  TokenDtype dtype_;
  int64_t vocab_size_;  // the manifest's: every id is < this
  uint64_t cache_bytes_;
  uint64_t resident_bytes_ = 0;
  uint64_t size_ = 0;
  std::vector<Shard> shards_;
  std::vector<uint64_t> ends_;  // ends_[i]: stream offset one past shard i
  // Open readers of non-resident shards, most recently used first.
  std::list<std::pair<size_t, std::unique_ptr<ShardReader>>> open_;
  std::vector<unsigned char> scratch_;
};

// Every token of a split, verified (checksums, ids < the manifest's vocab_size). For tests and tools.
std::vector<uint32_t> read_split_tokens(const std::string& dataset_dir, const std::string& split);

}  // namespace tessera::data
