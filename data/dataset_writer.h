// Writes a dataset directory: token streams for the train and validation splits are cut into
// shards of at most `shard_tokens` tokens as they arrive; finish() writes the manifest last, so an
// interrupted prepare leaves no manifest (and never a complete-looking shard: see shard.h).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/manifest.h"

namespace tessera::data {

enum class Split { kTrain = 0, kValidation = 1 };
const char* split_name(Split split);

struct DatasetWriterOptions {
  std::string dir;
  int64_t vocab_size = 0;           // every appended token must be < vocab_size
  uint64_t shard_tokens = uint64_t{1} << 24;
  // An existing dataset in `dir` (manifest.yaml, shard files, BPE merges) is an error unless this
  // is set, in which case those files and their temporaries are removed first.
  bool overwrite = false;
};

class DatasetWriter {
 public:
  explicit DatasetWriter(DatasetWriterOptions options);

  // Throws the DataError the constructor would for an existing dataset in `dir` without
  // `overwrite`, so a prepare can fail before its expensive passes. Changes nothing.
  static void check_output(const std::string& dir, bool overwrite);

  // Appends tokens to a split's stream. `document_start`: a document begins at the first of them.
  void append(Split split, std::span<const uint32_t> tokens, bool document_start);

  // Flushes the partial shards and writes the manifest: `base` supplies everything but the
  // splits, vocab_size and dtype, which the writer fills in. Returns the manifest written.
  Manifest finish(Manifest base);

  uint64_t tokens(Split split) const { return state_[static_cast<int>(split)].total_tokens; }
  uint64_t documents(Split split) const { return state_[static_cast<int>(split)].total_documents; }
  uint64_t shards_written() const { return next_shard_; }
  uint64_t bytes_written() const { return bytes_written_; }
  TokenDtype dtype() const { return dtype_; }
  const std::string& dir() const { return options_.dir; }

 private:
  struct SplitState {
    std::vector<uint32_t> buffer;
    std::vector<uint64_t> doc_offsets;
    std::vector<ShardInfo> shards;
    uint64_t total_tokens = 0;
    uint64_t total_documents = 0;
  };
  void flush(Split split);

  DatasetWriterOptions options_;
  TokenDtype dtype_;
  SplitState state_[2];
  uint64_t next_shard_ = 0;
  uint64_t bytes_written_ = 0;
  bool finished_ = false;
};

}  // namespace tessera::data
