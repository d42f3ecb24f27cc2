#include "data/text_corpus.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "data/data_error.h"
#include "data/pretokenize.h"

namespace tessera::data {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

}  // namespace

TextCorpus::TextCorpus(const std::vector<std::string>& inputs, std::string delimiter,
                       Utf8Filter::Policy invalid_utf8, size_t read_block, size_t max_pending)
    : delimiter_(std::move(delimiter)),
      invalid_utf8_(invalid_utf8),
      read_block_(std::max<size_t>(read_block, 1)),
      max_pending_(max_pending) {
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(input, ec);
    if (ec || !fs::exists(status)) throw DataError(input + ": input not found");
    if (fs::is_regular_file(status)) {
      files_.push_back(input);
    } else if (fs::is_directory(status)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(input, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (hidden(it->path())) {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file()) found.push_back(it->path().string());
      }
      if (ec) throw DataError(input + ": cannot list directory: " + ec.message());
      std::sort(found.begin(), found.end());
      files_.insert(files_.end(), found.begin(), found.end());
    } else {
      throw DataError(input + ": not a regular file or directory");
    }
  }
  if (files_.empty()) throw DataError("no input text files found");
  for (const std::string& file : files_) total_bytes_ += fs::file_size(file);
}

TextCorpus::Counts TextCorpus::for_each(const Visitor& visitor) const {
  uint64_t doc = 0;
  uint64_t replaced = 0;
  uint64_t consumed = 0;
  bool open = false;  // the current document has had a piece
  const auto emit = [&](std::string_view piece) {
    if (piece.empty()) return;
    open = true;
    visitor.piece(doc, piece);
  };
  const auto end_document = [&] {
    if (!open) return;  // empty documents are skipped
    visitor.end(doc);
    ++doc;
    open = false;
  };

  std::string pending;
  std::vector<char> block(read_block_);
  for (const std::string& path : files_) {
    // Closed on every path: a visitor or the UTF-8 check may throw.
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                               &std::fclose);
    if (file == nullptr) throw DataError(path + ": cannot open: " + std::strerror(errno));
    Utf8Filter utf8(path, invalid_utf8_);
    pending.clear();
    size_t search_from = 0;
    for (;;) {
      const size_t got = std::fread(block.data(), 1, block.size(), file.get());
      if (got == 0) {
        if (std::ferror(file.get())) throw DataError(path + ": read error: " + std::strerror(errno));
        utf8.finish(pending);
      }
      if (got > 0) {
        consumed += got;
        utf8.feed(std::string_view(block.data(), got), pending);
      }
      if (!delimiter_.empty()) {
        size_t start = 0;
        for (;;) {
          const size_t at = pending.find(delimiter_, std::max(search_from, start));
          if (at == std::string::npos) break;
          emit(std::string_view(pending).substr(start, at - start));
          end_document();
          start = at + delimiter_.size();
          search_from = start;
        }
        pending.erase(0, start);
        search_from = pending.size() >= delimiter_.size() ? pending.size() - delimiter_.size() + 1 : 0;
      }
      if (pending.size() > max_pending_) {
        // Keep a tail that could still hold the start of a delimiter.
        const size_t keep = delimiter_.empty() ? 0 : delimiter_.size() - 1;
        const size_t cut = last_safe_cut(std::string_view(pending).substr(0, pending.size() - keep));
        if (cut > 0) {
          emit(std::string_view(pending).substr(0, cut));
          pending.erase(0, cut);
          search_from = search_from > cut ? search_from - cut : 0;
        }
      }
      if (visitor.progress) visitor.progress(consumed);
      if (got == 0) break;
    }
    replaced += utf8.replaced();
    emit(pending);
    end_document();
  }
  return {doc, replaced};
}

}  // namespace tessera::data
