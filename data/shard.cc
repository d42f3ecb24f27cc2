#include "data/shard.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "data/atomic_file.h"
#include "data/data_error.h"
#include "data/xxhash64.h"

namespace tessera::data {

std::string shard_file_name(uint64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "shard-%05llu.h5", static_cast<unsigned long long>(index));
  return name;
}

namespace {

hid_t file_type(TokenDtype dtype) {
  return dtype == TokenDtype::kUint16 ? H5T_STD_U16LE : H5T_STD_U32LE;
}

hid_t memory_type(TokenDtype dtype) {
  return dtype == TokenDtype::kUint16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32;
}

// A signed `tokens` (written by another tool) may hold negative ids: the first one, by position,
// makes a better error than "wrong dtype". Returns {size, -} when there is none.
std::pair<uint64_t, int64_t> first_negative(const H5Id& tokens, uint64_t size, const std::string& path) {
  std::vector<int64_t> ids(static_cast<size_t>(std::min<uint64_t>(size, kShardChunkTokens)));
  for (uint64_t at = 0; at < size; at += ids.size()) {
    const uint64_t count = std::min<uint64_t>(ids.size(), size - at);
    h5_read_1d(tokens, H5T_NATIVE_INT64, at, count, ids.data(), path);
    for (uint64_t i = 0; i < count; ++i) {
      if (ids[i] < 0) return {at + i, ids[i]};
    }
  }
  return {size, 0};
}

}  // namespace

ShardInfo write_shard(const std::string& dir, const std::string& file, TokenDtype dtype,
                      std::span<const uint32_t> tokens, std::span<const uint64_t> doc_offsets) {
  const std::string path = (std::filesystem::path(dir) / file).string();
  const std::string tmp = temporary_path(path);
  ShardInfo info;
  info.file = file;
  info.tokens = tokens.size();
  info.documents = doc_offsets.size();

  // The stored bytes are what the checksum covers, so narrow first and hash the narrow buffer.
  std::vector<uint16_t> narrow;
  const void* data = tokens.data();
  size_t bytes = tokens.size_bytes();
  if (dtype == TokenDtype::kUint16) {
    narrow.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] > 0xFFFF) {
        throw DataError(path + ": token id " + std::to_string(tokens[i]) + " at position " +
                        std::to_string(i) + " does not fit uint16");
      }
      narrow[i] = static_cast<uint16_t>(tokens[i]);
    }
    data = narrow.data();
    bytes = narrow.size() * sizeof(uint16_t);
  }
  info.checksum = xxh64(data, bytes);

  {
    Hdf5Guard guard;
    H5Id h5 = h5_create_file(tmp);
    const uint64_t chunk = std::clamp<uint64_t>(tokens.size(), 1, kShardChunkTokens);
    h5_write_1d(h5, "tokens", file_type(dtype), memory_type(dtype), data, tokens.size(), chunk, tmp);
    h5_write_1d(h5, "doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, doc_offsets.data(),
                doc_offsets.size(), std::clamp<uint64_t>(doc_offsets.size(), 1, 4096), tmp);
    if (!h5.close()) throw DataError(tmp + ": cannot close HDF5 file (" + hdf5_error_text() + ")");
  }
  commit_file(tmp, path);
  return info;
}

ShardReader::ShardReader(std::string path, const ShardInfo& info, TokenDtype dtype, int64_t vocab_size)
    : path_(std::move(path)), dtype_(dtype) {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) {
    throw DataError(path_ + ": shard file is missing (it is listed in the dataset's manifest.yaml)");
  }
  Hdf5Guard guard;
  file_ = h5_open_file(path_);
  tokens_ = h5_open_dataset(file_, "tokens", path_, /*uncached=*/true);
  const H5DatasetInfo d = h5_dataset_info(tokens_, path_);
  // (Only when the size matches the manifest's: a damaged size is reported as such, below.)
  if (d.rank == 1 && d.is_integer && d.is_signed && d.size == info.tokens) {
    const std::string vocab =
        vocab_size > 0 ? "; the manifest's vocab_size is " + std::to_string(vocab_size) : "";
    const auto [position, id] = first_negative(tokens_, d.size, path_);
    if (position < d.size) {
      throw DataError(path_ + ": token id " + std::to_string(id) + " at position " +
                      std::to_string(position) + " is negative (ids must be in [0, vocab_size)" +
                      vocab + "); 'tokens' must be uint16 or uint32, not a signed type");
    }
    throw DataError(path_ + ": 'tokens' is a signed integer dataset; it must be uint16 or uint32" + vocab);
  }
  if (d.rank != 1 || !d.is_integer || d.is_signed || (d.element_bytes != 2 && d.element_bytes != 4)) {
    throw DataError(path_ + ": 'tokens' must be a 1-D uint16 or uint32 dataset");
  }
  const TokenDtype stored = d.element_bytes == 2 ? TokenDtype::kUint16 : TokenDtype::kUint32;
  if (stored != dtype) {
    throw DataError(path_ + ": dtype mismatch: 'tokens' is " + dtype_name(stored) +
                    " but the manifest says token_dtype " + dtype_name(dtype));
  }
  if (d.size != info.tokens) {
    throw DataError(path_ + ": 'tokens' holds " + std::to_string(d.size) +
                    " tokens but the manifest lists " + std::to_string(info.tokens) +
                    " (truncated or replaced shard)");
  }
  size_ = d.size;
  documents_ = info.documents;
}

void ShardReader::read_raw(uint64_t begin, uint64_t count, void* out) {
  if (begin + count > size_) {
    throw DataError(path_ + ": read of tokens [" + std::to_string(begin) + ", " +
                    std::to_string(begin + count) + ") past the end (" + std::to_string(size_) + ")");
  }
  Hdf5Guard guard;
  h5_read_1d(tokens_, memory_type(dtype_), begin, count, out, path_);
}

std::vector<uint64_t> ShardReader::read_doc_offsets() {
  Hdf5Guard guard;
  H5Id offsets = h5_open_dataset(file_, "doc_offsets", path_);
  const H5DatasetInfo d = h5_dataset_info(offsets, path_);
  if (d.rank != 1 || !d.is_integer) throw DataError(path_ + ": 'doc_offsets' must be a 1-D integer dataset");
  // The manifest's count, not the file's, bounds the allocation.
  if (d.size != documents_) {
    throw DataError(path_ + ": 'doc_offsets' holds " + std::to_string(d.size) +
                    " entries but the manifest lists " + std::to_string(documents_) + " documents");
  }
  std::vector<uint64_t> out(d.size);
  h5_read_1d(offsets, H5T_NATIVE_UINT64, 0, d.size, out.data(), path_);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] > size_ || (i > 0 && out[i] < out[i - 1])) {
      throw DataError(path_ + ": 'doc_offsets' entry " + std::to_string(i) + " (" +
                      std::to_string(out[i]) + ") is not ascending within the shard's " +
                      std::to_string(size_) + " tokens");
    }
  }
  return out;
}

}  // namespace tessera::data
