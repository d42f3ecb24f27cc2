#include "data/prepare_text.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "data/data_error.h"
#include "data/dataset_writer.h"
#include "data/pretokenize.h"
#include "data/progress.h"
#include "data/random.h"
#include "data/text_corpus.h"
#include "data/tokenizer.h"

namespace tessera::data {

namespace {

// Which documents go to validation: the `count` documents with the smallest seeded hash.
std::vector<bool> choose_validation(uint64_t documents, uint64_t count, uint64_t seed) {
  std::vector<std::pair<uint64_t, uint64_t>> keys(documents);
  const uint64_t salt = mix64(seed ^ 0xA0761D6478BD642Full);
  for (uint64_t i = 0; i < documents; ++i) keys[i] = {mix64(salt + i), i};
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(count), keys.end());
  std::vector<bool> chosen(documents, false);
  for (uint64_t i = 0; i < count; ++i) chosen[keys[i].second] = true;
  return chosen;
}

}  // namespace

void validate(const PrepareTextOptions& o) {
  if (o.out_dir.empty()) throw DataError("prepare text: --out is required");
  if (o.tokenizer != "byte" && o.tokenizer != "bpe") {
    throw DataError("prepare text: --tokenizer must be byte or bpe, got '" + o.tokenizer + "'");
  }
  if (o.tokenizer == "byte" && o.vocab_size != 0 && o.vocab_size != Tokenizer::kFirstMerge) {
    throw DataError("prepare text: the byte tokenizer's vocabulary is 257 (256 bytes + end of "
                    "document); --vocab " + std::to_string(o.vocab_size) + " is only for bpe");
  }
  if (o.tokenizer == "bpe" &&
      (o.vocab_size <= Tokenizer::kFirstMerge || o.vocab_size > (int64_t{1} << 31))) {
    throw DataError("prepare text: bpe needs --vocab N with 257 < N <= 2^31 (256 bytes, "
                    "end of document and N - 257 merges), got " + std::to_string(o.vocab_size));
  }
  if (!(o.val_fraction > 0.0 && o.val_fraction < 1.0)) {
    throw DataError("prepare text: --val-fraction must be in (0, 1), got " + std::to_string(o.val_fraction));
  }
  if (o.shard_tokens < 1) throw DataError("prepare text: --shard-tokens must be >= 1");
}

PrepareSummary prepare_text(const PrepareTextOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  validate(o);
  DatasetWriter::check_output(o.out_dir, o.overwrite);

  const TextCorpus corpus(o.inputs, o.doc_delimiter,
                          o.replace_invalid_utf8 ? Utf8Filter::Policy::kReplace
                                                 : Utf8Filter::Policy::kRefuse);
  if (o.log != nullptr) {
    *o.log << "prepare text: " << corpus.files().size() << " file(s), "
           << human_count(static_cast<double>(corpus.total_bytes())) << "B\n";
  }

  // Pass 1: count documents and choose the validation ones. It also checks the UTF-8 of every
  // file, so invalid input stops the prepare before anything is written.
  TextCorpus::Counts counts;
  {
    Progress progress(o.log, o.tty, "scan documents", corpus.total_bytes(), "B");
    counts = corpus.for_each({[](uint64_t, std::string_view) {}, [](uint64_t) {},
                              [&](uint64_t bytes) { progress.update(bytes); }});
  }
  const uint64_t documents = counts.documents;
  if (o.replace_invalid_utf8 && o.log != nullptr) {
    *o.log << "prepare text: replaced " << counts.invalid_utf8_replaced
           << " invalid UTF-8 sequence(s) with U+FFFD\n";
  }
  if (documents < 2) {
    throw DataError("prepare text: found " + std::to_string(documents) +
                    " non-empty document(s); a train/validation split needs at least 2 (pass "
                    "more files, or --doc-delimiter to split files into documents)");
  }
  const uint64_t n_validation = std::clamp<uint64_t>(
      static_cast<uint64_t>(std::llround(o.val_fraction * static_cast<double>(documents))), 1,
      documents - 1);
  const std::vector<bool> is_validation = choose_validation(documents, n_validation, o.seed);

  DatasetWriterOptions writer_options;
  writer_options.dir = o.out_dir;
  writer_options.shard_tokens = o.shard_tokens;
  writer_options.overwrite = o.overwrite;
  writer_options.vocab_size = o.tokenizer == "byte" ? Tokenizer::kFirstMerge : o.vocab_size;

  // Pass 2 (bpe): learn merges from the training documents' pre-tokens.
  Tokenizer tokenizer;
  if (o.tokenizer == "bpe") {
    std::unordered_map<std::string, uint64_t> pretokens;
    {
      Progress progress(o.log, o.tty, "count pre-tokens", corpus.total_bytes(), "B");
      corpus.for_each({[&](uint64_t doc, std::string_view piece) {
                         if (is_validation[doc]) return;
                         for_each_pretoken(piece, [&](std::string_view p) { ++pretokens[std::string(p)]; });
                       },
                       [](uint64_t) {}, [&](uint64_t bytes) { progress.update(bytes); }});
    }
    const size_t wanted = static_cast<size_t>(o.vocab_size - Tokenizer::kFirstMerge);
    std::vector<BpeMerge> merges;
    {
      Progress progress(o.log, o.tty, "learn BPE merges", wanted, "merges");
      merges = train_bpe(pretokens, wanted, Tokenizer::kFirstMerge,
                         [&](size_t done) { progress.update(done); });
    }
    if (merges.size() < wanted && o.log != nullptr) {
      *o.log << "prepare text: only " << merges.size() << " merges occur at least twice; the "
             << "vocabulary is " << Tokenizer::kFirstMerge + merges.size() << ", not "
             << o.vocab_size << "\n";
    }
    tokenizer = Tokenizer(std::move(merges));
    writer_options.vocab_size = tokenizer.vocab_size();
  }

  DatasetWriter writer(writer_options);
  if (o.tokenizer == "bpe") {
    tokenizer.save((std::filesystem::path(o.out_dir) / kBpeMergesFile).string());
  }

  // Pass 3: encode and write.
  {
    Progress progress(o.log, o.tty, "encode", corpus.total_bytes(), "B");
    std::vector<uint32_t> ids;
    uint64_t started = UINT64_MAX;  // the document whose first piece was written
    const uint32_t eod[1] = {Tokenizer::kEod};
    corpus.for_each(
        {[&](uint64_t doc, std::string_view piece) {
           ids.clear();
           tokenizer.encode(piece, ids);
           writer.append(is_validation[doc] ? Split::kValidation : Split::kTrain, ids, doc != started);
           started = doc;
         },
         [&](uint64_t doc) {
           writer.append(is_validation[doc] ? Split::kValidation : Split::kTrain, eod, false);
         },
         [&](uint64_t bytes) { progress.update(bytes); }});
  }

  Manifest manifest;
  manifest.tokenizer = o.tokenizer;
  manifest.eod_token = Tokenizer::kEod;
  if (o.tokenizer == "bpe") manifest.bpe_merges = kBpeMergesFile;
  manifest.notes["created_by"] = "tessera prepare text";
  manifest.notes["input_files"] = std::to_string(corpus.files().size());
  manifest.notes["input_bytes"] = std::to_string(corpus.total_bytes());
  manifest.notes["document_delimiter"] = o.doc_delimiter.empty() ? "(one document per file)" : o.doc_delimiter;
  manifest.notes["validation"] = std::to_string(n_validation) + " of " + std::to_string(documents) +
                                 " documents chosen by hash with seed " + std::to_string(o.seed);
  if (o.replace_invalid_utf8) {
    manifest.notes["invalid_utf8"] = std::to_string(counts.invalid_utf8_replaced) +
                                     " invalid sequence(s) replaced with U+FFFD";
  }
  if (o.tokenizer == "bpe") {
    manifest.notes["bpe"] = "byte-level: ids 0-255 bytes, 256 end of document, merge i makes id 257+i";
  }
  const Manifest written = writer.finish(manifest);

  PrepareSummary summary = summarize(writer, written, o.out_dir, o.tokenizer);
  if (o.replace_invalid_utf8) summary.invalid_utf8_replaced = counts.invalid_utf8_replaced;
  if (o.tokenizer == "bpe") {
    summary.bytes += std::filesystem::file_size(std::filesystem::path(o.out_dir) / kBpeMergesFile);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace tessera::data
