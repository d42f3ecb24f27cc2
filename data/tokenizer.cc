#include "data/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/atomic_file.h"
#include "data/data_error.h"
#include "data/pretokenize.h"

namespace tessera::data {

namespace {

inline uint64_t pair_key(uint32_t left, uint32_t right) {
  return static_cast<uint64_t>(left) << 32 | right;
}

constexpr size_t kMaxCachedPieces = size_t{1} << 20;
constexpr size_t kMaxCachedPieceBytes = 64;

}  // namespace

Tokenizer::Tokenizer() : Tokenizer(std::vector<BpeMerge>{}) {}

Tokenizer::Tokenizer(std::vector<BpeMerge> merges) : merges_(std::move(merges)) {
  bytes_.reserve(kFirstMerge + merges_.size());
  for (int b = 0; b < 256; ++b) bytes_.push_back(std::string(1, static_cast<char>(b)));
  bytes_.push_back(std::string());  // EOD
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto [left, right] = merges_[i];
    const uint32_t id = kFirstMerge + static_cast<uint32_t>(i);
    if (left >= id || right >= id || left == kEod || right == kEod) {
      throw DataError("BPE merge " + std::to_string(i) + " (" + std::to_string(left) + ", " +
                      std::to_string(right) + ") names an id that is not a byte or an earlier merge");
    }
    if (!rank_.emplace(pair_key(left, right), static_cast<uint32_t>(i)).second) {
      throw DataError("BPE merge " + std::to_string(i) + " (" + std::to_string(left) + ", " +
                      std::to_string(right) + ") is listed twice");
    }
    bytes_.push_back(bytes_[left] + bytes_[right]);
  }
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open BPE merges file");
  std::string line;
  int line_no = 0;
  auto fail = [&](const std::string& what) -> DataError {
    return DataError(path + ":" + std::to_string(line_no) + ": " + what);
  };
  auto next_line = [&](const char* expected) {
    if (!std::getline(in, line)) {
      ++line_no;
      throw fail(std::string("unexpected end of file, expected ") + expected);
    }
    ++line_no;
  };
  next_line("'tessera-bpe 1'");
  if (line != "tessera-bpe 1") throw fail("not a tessera BPE merges file (expected 'tessera-bpe 1')");
  next_line("'eod 256'");
  if (line != "eod " + std::to_string(kEod)) throw fail("expected 'eod 256'");
  next_line("'merges <count>'");
  std::istringstream header(line);
  std::string word;
  long long count = -1;
  if (!(header >> word >> count) || word != "merges" || count < 0) throw fail("expected 'merges <count>'");
  std::vector<BpeMerge> merges;
  merges.reserve(static_cast<size_t>(count));
  for (long long i = 0; i < count; ++i) {
    next_line("a merge '<left> <right>'");
    std::istringstream fields(line);
    long long left = -1, right = -1;
    std::string rest;
    if (!(fields >> left >> right) || (fields >> rest) || left < 0 || right < 0 ||
        left > UINT32_MAX || right > UINT32_MAX) {
      throw fail("expected two token ids, got '" + line + "'");
    }
    merges.emplace_back(static_cast<uint32_t>(left), static_cast<uint32_t>(right));
  }
  try {
    return Tokenizer(std::move(merges));
  } catch (const DataError& e) {
    throw DataError(path + ": " + e.what());
  }
}

Tokenizer Tokenizer::for_dataset(const std::string& dataset_dir, const Manifest& manifest) {
  if (manifest.tokenizer == "byte") return Tokenizer();
  if (manifest.tokenizer == "bpe") {
    return load((std::filesystem::path(dataset_dir) / manifest.bpe_merges).string());
  }
  throw DataError(manifest_path(dataset_dir) + ": tokenizer '" + manifest.tokenizer +
                  "' has no text encoding");
}

void Tokenizer::save(const std::string& path) const {
  std::ostringstream out;
  out << "tessera-bpe 1\neod " << kEod << "\nmerges " << merges_.size() << "\n";
  for (const auto& [left, right] : merges_) out << left << ' ' << right << '\n';
  write_file_atomic(path, out.str());
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<uint32_t>& out) {
  if (piece.size() == 1 || merges_.empty()) {
    for (const char c : piece) out.push_back(static_cast<unsigned char>(c));
    return;
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    const auto hit = cache_.find(std::string(piece));
    if (hit != cache_.end()) {
      out.insert(out.end(), hit->second.begin(), hit->second.end());
      return;
    }
  }
  // Merge the lowest-ranked adjacent pair everywhere it occurs (left to right), until none is a
  // merge: this replays the training merges in order.
  std::vector<uint32_t>& s = work_;
  s.clear();
  for (const char c : piece) s.push_back(static_cast<unsigned char>(c));
  for (;;) {
    uint32_t best = UINT32_MAX;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const auto it = rank_.find(pair_key(s[i], s[i + 1]));
      if (it != rank_.end() && it->second < best) best = it->second;
    }
    if (best == UINT32_MAX) break;
    const auto [left, right] = merges_[best];
    const uint32_t id = kFirstMerge + best;
    size_t w = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
        s[w++] = id;
        ++i;
      } else {
        s[w++] = s[i];
      }
    }
    s.resize(w);
  }
  out.insert(out.end(), s.begin(), s.end());
  if (cacheable) {
    if (cache_.size() >= kMaxCachedPieces) cache_.clear();
    cache_.emplace(std::string(piece), s);
  }
}

void Tokenizer::encode(std::string_view text, std::vector<uint32_t>& out) {
  if (merges_.empty()) {
    for (const char c : text) out.push_back(static_cast<unsigned char>(c));
    return;
  }
  for_each_pretoken(text, [&](std::string_view piece) { encode_piece(piece, out); });
}

std::string Tokenizer::decode(std::span<const uint32_t> tokens) const {
  std::string text;
  for (const uint32_t id : tokens) {
    if (id >= bytes_.size()) {
      throw DataError("token id " + std::to_string(id) + " is >= the tokenizer's vocabulary size " +
                      std::to_string(bytes_.size()));
    }
    text += bytes_[id];
  }
  return text;
}

}  // namespace tessera::data
