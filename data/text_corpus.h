// The documents of a set of UTF-8 text files, streamed in bounded memory.
//
// Inputs are files or directories (searched recursively; hidden files skipped; sorted by path so
// the order is reproducible). Each file is one document unless a delimiter is given, in which case
// the delimiter separates documents inside a file (and is dropped). Empty documents are skipped.
// Input must be UTF-8 (utf8_filter.h): invalid sequences are an error naming the file, byte offset
// and line, or, with Utf8Filter::Policy::kReplace, become U+FFFD before delimiters are looked for.
//
// A long document arrives in several pieces, cut only where pretokenisation is unaffected
// (pretokenize.h: last_safe_cut), so encoding piece by piece equals encoding the whole.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/utf8_filter.h"

namespace tessera::data {

class TextCorpus {
 public:
  static constexpr size_t kDefaultReadBlock = size_t{4} << 20;
  static constexpr size_t kDefaultMaxPending = size_t{16} << 20;

  // Throws DataError naming an input that does not exist or is neither file nor directory, and if
  // no input file is found. Files are read `read_block` bytes at a time; a document longer than
  // `max_pending` bytes is passed on in pieces (where a safe cut exists).
  TextCorpus(const std::vector<std::string>& inputs, std::string delimiter,
             Utf8Filter::Policy invalid_utf8 = Utf8Filter::Policy::kRefuse,
             size_t read_block = kDefaultReadBlock, size_t max_pending = kDefaultMaxPending);

  const std::vector<std::string>& files() const { return files_; }
  uint64_t total_bytes() const { return total_bytes_; }

  struct Visitor {
    // A piece of document `doc` (0, 1, ... in stream order); a document's pieces come in order.
    std::function<void(uint64_t doc, std::string_view piece)> piece;
    // Document `doc` is complete.
    std::function<void(uint64_t doc)> end;
    // Bytes of input consumed so far (optional).
    std::function<void(uint64_t bytes)> progress;
  };
  struct Counts {
    uint64_t documents = 0;
    uint64_t invalid_utf8_replaced = 0;  // ill-formed sequences made U+FFFD (kReplace)
  };
  // Streams every document. Under kRefuse, throws DataError at the first invalid UTF-8 sequence
  // (the pieces before it have been visited; prepare_text's first pass visits nothing).
  Counts for_each(const Visitor& visitor) const;

 private:
  std::vector<std::string> files_;
  uint64_t total_bytes_ = 0;
  std::string delimiter_;
  Utf8Filter::Policy invalid_utf8_;
  size_t read_block_;
  size_t max_pending_;
};

}  // namespace tessera::data
