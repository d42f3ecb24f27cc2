// Byte-level tokenizers for text datasets. Ids 0..255 are the bytes, kEod = 256 ends every
// document, and a BPE's i-th merge creates id 257 + i. With no merges this is the byte tokenizer
// (vocabulary 257). Because every byte has an id, decode(encode(x)) == x for any bytes, valid
// UTF-8 or not.
//
// A BPE's merges are saved in the dataset directory (kBpeMergesFile, text):
//   tessera-bpe 1
//   eod 256
//   merges <count>
//   <left id> <right id>      one line per merge, in order
//
// Thread-safety: encode() uses an internal cache; use one Tokenizer per thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/bpe_trainer.h"
#include "data/manifest.h"

namespace tessera::data {

inline constexpr const char* kBpeMergesFile = "bpe-merges.txt";

class Tokenizer {
 public:
  static constexpr uint32_t kEod = 256;
  static constexpr uint32_t kFirstMerge = 257;

  Tokenizer();  // the byte tokenizer
  // Throws DataError if a merge names an id that does not exist yet.
  explicit Tokenizer(std::vector<BpeMerge> merges);

  static Tokenizer load(const std::string& merges_path);  // errors name the file and line
  // The tokenizer a text dataset was encoded with (byte, or bpe from its merges file).
  static Tokenizer for_dataset(const std::string& dataset_dir, const Manifest& manifest);
  void save(const std::string& merges_path) const;        // atomic

  int64_t vocab_size() const { return static_cast<int64_t>(kFirstMerge + merges_.size()); }
  uint32_t eod() const { return kEod; }
  const std::vector<BpeMerge>& merges() const { return merges_; }

  // Appends the ids of `text` (no EOD) to out.
  void encode(std::string_view text, std::vector<uint32_t>& out);
  // The bytes of `tokens`; EOD decodes to nothing. Throws DataError for ids >= vocab_size().
  std::string decode(std::span<const uint32_t> tokens) const;
  const std::string& token_bytes(uint32_t id) const { return bytes_.at(id); }

 private:
  void encode_piece(std::string_view piece, std::vector<uint32_t>& out);

  std::vector<BpeMerge> merges_;
  std::vector<std::string> bytes_;                  // id -> bytes
  std::unordered_map<uint64_t, uint32_t> rank_;     // (left, right) -> merge index
  std::unordered_map<std::string, std::vector<uint32_t>> cache_;  // piece -> ids
  std::vector<uint32_t> work_;
};

}  // namespace tessera::data
