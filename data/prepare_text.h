// `tessera prepare text`: a dataset from UTF-8 text files.
//
// Input that is not valid UTF-8 is refused (DataError naming the file, the byte offset and line of
// the first invalid sequence) before anything is written, unless replace_invalid_utf8 asks for each
// invalid sequence to become U+FFFD (counted in the summary and the manifest's notes).
//
// Documents (text_corpus.h: a file each, or split by a delimiter) are encoded with the byte
// tokenizer (vocabulary 257) or a byte-level BPE trained here on the training documents (merges
// saved as DIR/bpe-merges.txt and named in the manifest, so later runs encode identically). Every
// document is followed by the end-of-document id 256 (manifest eod_token). A deterministic
// pseudo-random choice of round(val_fraction * documents) documents (at least one; seeded by
// `seed`) forms the validation split; the rest, in input order, the train split.
//
// Passes over the input: count documents; (bpe) count pre-tokens of the training documents and
// learn merges; encode and write shards.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "data/prepare_summary.h"

namespace tessera::data {

struct PrepareTextOptions {
  std::vector<std::string> inputs;  // files and/or directories
  std::string out_dir;
  std::string tokenizer = "byte";   // "byte" | "bpe"
  int64_t vocab_size = 0;           // bpe: target vocabulary (> 257); byte: 0 or 257
  double val_fraction = 0.05;       // in (0, 1)
  uint64_t shard_tokens = uint64_t{1} << 24;
  std::string doc_delimiter;        // empty: each file is one document
  uint64_t seed = 0;                // validation selection
  bool overwrite = false;
  bool replace_invalid_utf8 = false;  // else invalid UTF-8 is an error
  std::ostream* log = nullptr;      // progress lines (null: quiet)
  bool tty = false;                 // draw progress bars on `log`
};

// Throws DataError naming the bad option or file.
PrepareSummary prepare_text(const PrepareTextOptions& options);
// The option checks prepare_text starts with (no I/O): DataError naming the option.
void validate(const PrepareTextOptions& options);

}  // namespace tessera::data
