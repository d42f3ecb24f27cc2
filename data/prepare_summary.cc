#include "data/prepare_summary.h"

#include <cmath>
#include <cstdio>
#include <utility>

#include "data/progress.h"

namespace tessera::data {

PrepareSummary summarize(const DatasetWriter& writer, const Manifest& written, std::string dir,
                         std::string tokenizer) {
  PrepareSummary summary;
  summary.dir = std::move(dir);
  summary.tokenizer = std::move(tokenizer);
  summary.vocab_size = written.vocab_size;
  summary.dtype = written.dtype;
  summary.train_tokens = writer.tokens(Split::kTrain);
  summary.validation_tokens = writer.tokens(Split::kValidation);
  summary.train_documents = writer.documents(Split::kTrain);
  summary.validation_documents = writer.documents(Split::kValidation);
  summary.shards = writer.shards_written();
  summary.bytes = writer.bytes_written();
  return summary;
}

std::string format_summary(const PrepareSummary& s) {
  const uint64_t tokens = s.train_tokens + s.validation_tokens;
  const double rate = s.seconds > 0 ? static_cast<double>(tokens) / s.seconds : 0.0;
  char text[1024];
  int n = std::snprintf(
      text, sizeof text,
      "prepared %s: %llu tokens (train %llu in %llu docs, validation %llu in %llu docs)\n"
      "  tokenizer %s, vocab %lld, %s; %llu shards, %s bytes; %.2f s, %s tokens/s\n",
      s.dir.c_str(), static_cast<unsigned long long>(tokens),
      static_cast<unsigned long long>(s.train_tokens),
      static_cast<unsigned long long>(s.train_documents),
      static_cast<unsigned long long>(s.validation_tokens),
      static_cast<unsigned long long>(s.validation_documents), s.tokenizer.c_str(),
      static_cast<long long>(s.vocab_size), dtype_name(s.dtype),
      static_cast<unsigned long long>(s.shards), human_count(static_cast<double>(s.bytes)).c_str(),
      s.seconds, human_count(rate).c_str());
  std::string out(text, static_cast<size_t>(n));
  if (s.entropy_rate_nats) {
    std::snprintf(text, sizeof text,
                  "  entropy rate %.6f nats/token (%.6f bits): the lowest achievable loss\n",
                  *s.entropy_rate_nats, *s.entropy_rate_nats / std::log(2.0));
    out += text;
  }
  if (s.invalid_utf8_replaced) {
    out += "  replaced " + std::to_string(*s.invalid_utf8_replaced) +
           " invalid UTF-8 sequence(s) with U+FFFD\n";
  }
  return out;
}

}  // namespace tessera::data
