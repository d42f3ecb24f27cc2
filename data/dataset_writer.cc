#include "data/dataset_writer.h"

#include <algorithm>
#include <filesystem>

#include "data/atomic_file.h"
#include "data/data_error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace tessera::data {

namespace fs = std::filesystem;

const char* split_name(Split split) {
  return split == Split::kTrain ? kTrainSplit : kValidationSplit;
}

namespace {

bool is_dataset_file(const std::string& name) {
  return name == kManifestFile || name == temporary_path(kManifestFile) ||
         name == kBpeMergesFile || name == temporary_path(kBpeMergesFile) ||
         (name.rfind("shard-", 0) == 0 &&
          (name.ends_with(".h5") || name.ends_with(".h5.tmp")));
}

std::vector<fs::path> dataset_files(const std::string& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (is_dataset_file(entry.path().filename().string())) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

void DatasetWriter::check_output(const std::string& dir, bool overwrite) {
  const std::vector<fs::path> existing = dataset_files(dir);
  if (!existing.empty() && !overwrite) {
    throw DataError(dir + ": already holds a dataset (" + existing.front().filename().string() +
                    "); remove it or pass --overwrite");
  }
}

DatasetWriter::DatasetWriter(DatasetWriterOptions options)
    : options_(std::move(options)), dtype_(dtype_for_vocab(options_.vocab_size)) {
  if (options_.dir.empty()) throw DataError("dataset writer: no output directory given");
  if (options_.vocab_size < 1 || options_.vocab_size > (int64_t{1} << 32)) {
    throw DataError(options_.dir + ": vocab_size must be in [1, 2^32], got " +
                    std::to_string(options_.vocab_size));
  }
  if (options_.shard_tokens < 1) throw DataError(options_.dir + ": shard_tokens must be >= 1");
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec || !fs::is_directory(options_.dir)) {
    throw DataError(options_.dir + ": cannot create output directory: " + ec.message());
  }
  std::vector<fs::path> existing = dataset_files(options_.dir);
  if (!existing.empty()) {
    check_output(options_.dir, options_.overwrite);
    // The manifest goes first so that a crash part-way never leaves it pointing at missing shards.
    std::sort(existing.begin(), existing.end(), [](const fs::path& a, const fs::path& b) {
      return (a.filename() == kManifestFile) > (b.filename() == kManifestFile);
    });
    for (const fs::path& path : existing) {
      if (!fs::remove(path, ec) || ec) throw DataError(path.string() + ": cannot remove: " + ec.message());
    }
  }
}

void DatasetWriter::append(Split split, std::span<const uint32_t> tokens, bool document_start) {
  SplitState& s = state_[static_cast<int>(split)];
  if (document_start) {
    if (s.buffer.size() >= options_.shard_tokens) flush(split);
    s.doc_offsets.push_back(s.buffer.size());
    ++s.total_documents;
  }
  for (const uint32_t token : tokens) {
    if (token >= static_cast<uint64_t>(options_.vocab_size)) {
      throw DataError(options_.dir + ": token id " + std::to_string(token) +
                      " >= vocab_size " + std::to_string(options_.vocab_size) +
                      " in the " + split_name(split) + " stream");
    }
  }
  while (!tokens.empty()) {
    if (s.buffer.size() >= options_.shard_tokens) flush(split);
    const size_t take = std::min<size_t>(tokens.size(), options_.shard_tokens - s.buffer.size());
    s.buffer.insert(s.buffer.end(), tokens.begin(), tokens.begin() + take);
    tokens = tokens.subspan(take);
    s.total_tokens += take;
  }
}

void DatasetWriter::flush(Split split) {
  SplitState& s = state_[static_cast<int>(split)];
  if (s.buffer.empty()) return;
  ShardInfo info = write_shard(options_.dir, shard_file_name(next_shard_++), dtype_, s.buffer, s.doc_offsets);
  bytes_written_ += fs::file_size(fs::path(options_.dir) / info.file);
  s.shards.push_back(std::move(info));
  s.buffer.clear();
  s.doc_offsets.clear();
}

Manifest DatasetWriter::finish(Manifest base) {
  if (finished_) throw DataError(options_.dir + ": dataset already finished");
  finished_ = true;
  flush(Split::kTrain);
  flush(Split::kValidation);
  base.vocab_size = options_.vocab_size;
  base.dtype = dtype_;
  base.splits.clear();
  for (Split split : {Split::kTrain, Split::kValidation}) {
    base.splits[split_name(split)].shards = state_[static_cast<int>(split)].shards;
  }
  write_manifest(options_.dir, base);
  bytes_written_ += fs::file_size(manifest_path(options_.dir));
  return base;
}

}  // namespace tessera::data
