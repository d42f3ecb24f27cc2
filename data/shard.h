// One shard of a dataset: DIR/shard-NNNNN.h5, an HDF5 file with two 1-D datasets
//   tokens       uint16 or uint32 (little-endian), chunked by kShardChunkTokens elements
//   doc_offsets  uint64, ascending: the positions in `tokens` where a document starts (a document
//                continued from the previous shard has no entry)
// Its checksum (in the manifest) is XXH64 of the token bytes as stored.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/hdf5.h"
#include "data/manifest.h"

namespace tessera::data {

inline constexpr uint64_t kShardChunkTokens = uint64_t{1} << 16;

// "shard-00042.h5"
std::string shard_file_name(uint64_t index);

// Writes DIR/file atomically (as DIR/file.tmp, renamed when complete) and returns its manifest
// entry. Throws DataError naming the file if a token does not fit `dtype` or on I/O failure.
ShardInfo write_shard(const std::string& dir, const std::string& file, TokenDtype dtype,
                      std::span<const uint32_t> tokens, std::span<const uint64_t> doc_offsets);

// Reads one shard. The constructor checks the file against its manifest entry (it exists, opens as
// HDF5 - a truncated file does not -, has a 1-D unsigned `tokens` of the manifest's dtype and token
// count); every failure is a DataError naming the file. A signed `tokens` is refused naming its
// first negative id, if it has one. `vocab_size` (the manifest's; 0: unknown) is only named in
// errors. Not thread-safe; takes the HDF5 lock.
class ShardReader {
 public:
  ShardReader(std::string path, const ShardInfo& info, TokenDtype dtype, int64_t vocab_size = 0);

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  TokenDtype dtype() const { return dtype_; }

  // Tokens [begin, begin + count) in the stored dtype: count * dtype_bytes(dtype()) bytes to out.
  void read_raw(uint64_t begin, uint64_t count, void* out);
  // Throws DataError unless there are as many as the manifest's `documents`, in ascending order,
  // none past size().
  std::vector<uint64_t> read_doc_offsets();

 private:
  std::string path_;
  TokenDtype dtype_;
  uint64_t size_ = 0;
  uint64_t documents_ = 0;  // the manifest's
  H5Id file_;
  H5Id tokens_;
};

}  // namespace tessera::data
