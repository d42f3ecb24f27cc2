// A dataset directory's table of contents, `manifest.yaml` (format in data/README.md):
//
//   format_version: 1
//   tokenizer: byte            # byte | bpe | synthetic
//   vocab_size: 257
//   token_dtype: uint16        # uint16 when vocab_size <= 65536, else uint32
//   eod_token: 256             # text datasets: the id that ends every document
//   bpe_merges: bpe-merges.txt # bpe only, relative to the dataset directory
//   entropy_rate_nats: 1.234   # synthetic only: the exact entropy rate of the source
//   synthetic: {order: 1, support: 4, concentration: 1, seed: 7, ...}
//   splits:
//     train:      {tokens: N, documents: D, shards: [{file: shard-00000.h5, tokens: n,
//                                                     documents: d, checksum: "xxh64:..."}, ...]}
//     validation: {...}
//
// The manifest is written last (atomically), so a directory with a manifest holds a finished dataset.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tessera::data {

inline constexpr int kManifestVersion = 1;
inline constexpr const char* kManifestFile = "manifest.yaml";
inline constexpr const char* kTrainSplit = "train";
inline constexpr const char* kValidationSplit = "validation";

enum class TokenDtype { kUint16, kUint32 };

const char* dtype_name(TokenDtype dtype);
size_t dtype_bytes(TokenDtype dtype);
// The narrowest dtype that holds every id of a vocabulary of this size.
TokenDtype dtype_for_vocab(int64_t vocab_size);

struct ShardInfo {
  std::string file;        // name inside the dataset directory, e.g. "shard-00000.h5"
  uint64_t tokens = 0;
  uint64_t documents = 0;  // documents that START in this shard (entries of its doc_offsets)
  uint64_t checksum = 0;   // XXH64 of the stored token bytes
};

struct SplitInfo {
  std::vector<ShardInfo> shards;  // in stream order
  uint64_t tokens() const;
  uint64_t documents() const;
};

// How a synthetic dataset's source was built (prepare_synthetic.h documents the construction).
struct SyntheticInfo {
  int64_t order = 0;
  int64_t support = 0;
  double concentration = 0.0;
  double smoothing = 0.0;
  uint64_t seed = 0;
  double entropy_rate_nats = 0.0;
};

struct Manifest {
  int format_version = kManifestVersion;
  std::string tokenizer;               // "byte" | "bpe" | "synthetic"
  int64_t vocab_size = 0;
  TokenDtype dtype = TokenDtype::kUint16;
  std::optional<int64_t> eod_token;    // text datasets
  std::string bpe_merges;              // bpe datasets: merges file, relative to the directory
  std::optional<double> entropy_rate_nats;  // synthetic datasets: the floor for the loss
  std::optional<SyntheticInfo> synthetic;
  std::map<std::string, SplitInfo> splits;  // "train", "validation"
  // Free-form facts for people (how the data was made, sources); kept but never interpreted.
  std::map<std::string, std::string> notes;

  // The named split; throws DataError naming `manifest_path` if it does not exist.
  const SplitInfo& split(const std::string& name, const std::string& manifest_path) const;
};

std::string manifest_path(const std::string& dataset_dir);

// Reads and validates DIR/manifest.yaml: throws DataError naming the file (and the key) when it is
// missing, not YAML, of an unknown format_version, or inconsistent (dtype too narrow for
// vocab_size, bad checksum syntax, shard names with '/', duplicate shards, ...).
Manifest read_manifest(const std::string& dataset_dir);

// Writes DIR/manifest.yaml atomically (temporary name, fsync, rename).
void write_manifest(const std::string& dataset_dir, const Manifest& manifest);

}  // namespace tessera::data
