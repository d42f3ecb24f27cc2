#include "data/split_reader.h"

#include <algorithm>
#include <filesystem>

#include "data/data_error.h"
#include "data/xxhash64.h"

namespace tessera::data {

namespace {

constexpr size_t kMaxOpenShards = 32;
constexpr uint64_t kVerifyBlockTokens = uint64_t{1} << 20;

template <typename T>
void widen(const T* src, uint64_t n, int32_t* dst) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(src[i]);
}

// Position of the first id >= limit in tokens, or n if there is none.
template <typename T>
uint64_t first_out_of_range(const T* tokens, uint64_t n, uint64_t limit) {
  T max = 0;
  for (uint64_t i = 0; i < n; ++i) max = std::max(max, tokens[i]);
  if (max < limit) return n;
  for (uint64_t i = 0; i < n; ++i) {
    if (tokens[i] >= limit) return i;
  }
  return n;
}

}  // namespace

SplitReader::SplitReader(std::string dataset_dir, const Manifest& manifest,
                         const std::string& split, int64_t model_vocab, uint64_t cache_bytes)
    : dir_(std::move(dataset_dir)),
      dtype_(manifest.dtype),
      vocab_size_(manifest.vocab_size),
      cache_bytes_(cache_bytes) {
  // A model smaller than the dataset's vocabulary has no embedding row for some of its ids; refuse
  // it up front rather than at the first out-of-range id, which may come hours into a run.
  if (model_vocab > 0 && model_vocab < vocab_size_) {
    throw DataError(manifest_path(dir_) + ": vocab_size " + std::to_string(vocab_size_) +
                    " is larger than the model's model.vocab_size " + std::to_string(model_vocab) +
                    ": the dataset's ids go up to " + std::to_string(vocab_size_ - 1) +
                    "; set model.vocab_size >= " + std::to_string(vocab_size_));
  }
  if (vocab_size_ > (int64_t{1} << 31)) {
    throw DataError(manifest_path(dir_) + ": vocab_size " + std::to_string(vocab_size_) +
                    " does not fit int32 token ids");
  }
  const SplitInfo& info = manifest.split(split, manifest_path(dir_));
  for (const ShardInfo& shard_info : info.shards) {
    Shard shard;
    shard.info = shard_info;
    shard.path = (std::filesystem::path(dir_) / shard_info.file).string();
    shard.begin = size_;
    ShardReader check(shard.path, shard_info, dtype_, vocab_size_);  // metadata only
    size_ += shard_info.tokens;
    ends_.push_back(size_);
    shards_.push_back(std::move(shard));
  }
}

SplitReader::~SplitReader() = default;

ShardReader& SplitReader::open(Shard& shard) {
  const size_t index = static_cast<size_t>(&shard - shards_.data());
  for (auto it = open_.begin(); it != open_.end(); ++it) {
    if (it->first == index) {
      open_.splice(open_.begin(), open_, it);
      return *open_.front().second;
    }
  }
  if (open_.size() >= kMaxOpenShards) open_.pop_back();
  open_.emplace_front(index, std::make_unique<ShardReader>(shard.path, shard.info, dtype_, vocab_size_));
  return *open_.front().second;
}

void SplitReader::verify(Shard& shard) {
  const uint64_t n = shard.info.tokens;
  const uint64_t bytes = n * dtype_bytes(dtype_);
  const uint64_t limit = static_cast<uint64_t>(vocab_size_);
  uint64_t checksum = 0;
  uint64_t bad = n;  // position of the first id out of range
  uint64_t bad_id = 0;
  if (resident_bytes_ + bytes <= cache_bytes_) {
    ShardReader reader(shard.path, shard.info, dtype_, vocab_size_);
    if (dtype_ == TokenDtype::kUint16) {
      shard.u16.resize(n);
      reader.read_raw(0, n, shard.u16.data());
      checksum = xxh64(shard.u16.data(), bytes);
      bad = first_out_of_range(shard.u16.data(), n, limit);
      if (bad < n) bad_id = shard.u16[bad];
    } else {
      shard.u32.resize(n);
      reader.read_raw(0, n, shard.u32.data());
      checksum = xxh64(shard.u32.data(), bytes);
      bad = first_out_of_range(shard.u32.data(), n, limit);
      if (bad < n) bad_id = shard.u32[bad];
    }
  } else {
    ShardReader& reader = open(shard);
    Xxh64 hash;
    scratch_.resize(kVerifyBlockTokens * dtype_bytes(dtype_));
    for (uint64_t at = 0; at < n; at += kVerifyBlockTokens) {
      const uint64_t count = std::min(kVerifyBlockTokens, n - at);
      reader.read_raw(at, count, scratch_.data());
      hash.update(scratch_.data(), count * dtype_bytes(dtype_));
      if (bad == n) {
        uint64_t local;
        if (dtype_ == TokenDtype::kUint16) {
          const auto* t = reinterpret_cast<const uint16_t*>(scratch_.data());
          local = first_out_of_range(t, count, limit);
          if (local < count) bad_id = t[local];
        } else {
          const auto* t = reinterpret_cast<const uint32_t*>(scratch_.data());
          local = first_out_of_range(t, count, limit);
          if (local < count) bad_id = t[local];
        }
        if (local < count) bad = at + local;
      }
    }
    checksum = hash.digest();
  }
  if (checksum != shard.info.checksum) {
    shard.u16 = {};
    shard.u32 = {};
    throw DataError(shard.path + ": checksum mismatch: the manifest says " +
                    format_checksum(shard.info.checksum) + " but the tokens hash to " +
                    format_checksum(checksum) + " (corrupt or replaced shard)");
  }
  if (bad < n) {
    shard.u16 = {};
    shard.u32 = {};
    throw DataError(shard.path + ": token id " + std::to_string(bad_id) + " at position " +
                    std::to_string(bad) + " is >= the manifest's vocab_size " +
                    std::to_string(vocab_size_) + " (" + manifest_path(dir_) +
                    "): corrupt shard or wrong manifest");
  }
  shard.resident = !shard.u16.empty() || !shard.u32.empty();
  if (shard.resident) resident_bytes_ += bytes;
  shard.verified = true;
}

void SplitReader::read_from_shard(Shard& shard, uint64_t begin, uint64_t count, int32_t* out) {
  if (!shard.verified) verify(shard);
  if (shard.resident) {
    if (dtype_ == TokenDtype::kUint16) {
      widen(shard.u16.data() + begin, count, out);
    } else {
      widen(shard.u32.data() + begin, count, out);
    }
    return;
  }
  scratch_.resize(count * dtype_bytes(dtype_));
  open(shard).read_raw(begin, count, scratch_.data());
  if (dtype_ == TokenDtype::kUint16) {
    widen(reinterpret_cast<const uint16_t*>(scratch_.data()), count, out);
  } else {
    widen(reinterpret_cast<const uint32_t*>(scratch_.data()), count, out);
  }
}

void SplitReader::read(uint64_t begin, uint64_t count, int32_t* out) {
  if (begin + count > size_) {
    throw DataError(dir_ + ": read of tokens [" + std::to_string(begin) + ", " +
                    std::to_string(begin + count) + ") past the end of the split (" +
                    std::to_string(size_) + " tokens)");
  }
  size_t index = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), begin) - ends_.begin());
  while (count > 0) {
    Shard& shard = shards_[index];
    const uint64_t local = begin - shard.begin;
    const uint64_t take = std::min(count, shard.info.tokens - local);
    read_from_shard(shard, local, take, out);
    out += take;
    begin += take;
    count -= take;
    ++index;
  }
}

void SplitReader::verify_all() {
  for (Shard& shard : shards_) {
    if (!shard.verified) verify(shard);
  }
}

std::vector<uint32_t> read_split_tokens(const std::string& dataset_dir, const std::string& split) {
  const Manifest manifest = read_manifest(dataset_dir);
  SplitReader reader(dataset_dir, manifest, split, 0, 0);
  std::vector<int32_t> tokens(reader.size());
  reader.read(0, reader.size(), tokens.data());
  return std::vector<uint32_t>(tokens.begin(), tokens.end());
}

}  // namespace tessera::data
