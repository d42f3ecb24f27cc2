// What a `tessera prepare` run wrote, for its final report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "data/dataset_writer.h"
#include "data/manifest.h"

namespace tessera::data {

struct PrepareSummary {
  std::string dir;
  std::string tokenizer;
  int64_t vocab_size = 0;
  TokenDtype dtype = TokenDtype::kUint16;
  uint64_t train_tokens = 0;
  uint64_t validation_tokens = 0;
  uint64_t train_documents = 0;
  uint64_t validation_documents = 0;
  uint64_t shards = 0;
  uint64_t bytes = 0;  // shards + manifest (+ merges)
  double seconds = 0.0;
  std::optional<double> entropy_rate_nats;
  std::optional<uint64_t> invalid_utf8_replaced;  // text with --replace-invalid-utf8
};

// The counts of a finished writer and the manifest it wrote; the caller adds what only it knows
// (extra bytes it wrote, seconds, entropy rate).
PrepareSummary summarize(const DatasetWriter& writer, const Manifest& written, std::string dir,
                         std::string tokenizer);

// A few human-readable lines: tokens per split, documents, shards, bytes, time and throughput.
std::string format_summary(const PrepareSummary& summary);

}  // namespace tessera::data
