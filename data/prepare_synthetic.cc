#include "data/prepare_synthetic.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "data/data_error.h"
#include "data/dataset_writer.h"
#include "data/progress.h"

namespace tessera::data {

namespace {
constexpr uint64_t kBlockTokens = uint64_t{1} << 20;
}  // namespace

void validate(const PrepareSyntheticOptions& o) {
  if (o.out_dir.empty()) throw DataError("prepare synthetic: --out is required");
  if (o.tokens < 2) throw DataError("prepare synthetic: --tokens must be >= 2");
  if (!(o.val_fraction > 0.0 && o.val_fraction < 1.0)) {
    throw DataError("prepare synthetic: --val-fraction must be in (0, 1), got " +
                    std::to_string(o.val_fraction));
  }
  if (o.shard_tokens < 1) throw DataError("prepare synthetic: --shard-tokens must be >= 1");
  MarkovChain::validate(o.chain);
}

PrepareSummary prepare_synthetic(const PrepareSyntheticOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  validate(o);
  DatasetWriter::check_output(o.out_dir, o.overwrite);

  const MarkovChain chain(o.chain);
  if (o.log != nullptr) {
    *o.log << "prepare synthetic: order-" << o.chain.order << " chain over " << o.chain.vocab
           << " tokens (" << chain.n_states() << " states, support " << o.chain.support
           << "), entropy rate " << chain.entropy_rate_nats() << " nats/token (uniform: "
           << std::log(static_cast<double>(o.chain.vocab)) << ")\n";
  }

  DatasetWriterOptions writer_options;
  writer_options.dir = o.out_dir;
  writer_options.vocab_size = o.chain.vocab;
  writer_options.shard_tokens = o.shard_tokens;
  writer_options.overwrite = o.overwrite;
  DatasetWriter writer(writer_options);

  const uint64_t n_validation = std::clamp<uint64_t>(
      static_cast<uint64_t>(std::llround(o.val_fraction * static_cast<double>(o.tokens))), 1,
      o.tokens - 1);
  const uint64_t n_train = o.tokens - n_validation;

  Rng rng(mix64(o.chain.seed) ^ 0xBB67AE8584CAA73Bull);
  uint64_t state = chain.sample_state(rng);
  std::vector<uint32_t> block;
  {
    Progress progress(o.log, o.tty, "sample", o.tokens, "tokens");
    uint64_t done = 0;
    for (const auto& [split, count] : {std::pair{Split::kTrain, n_train}, std::pair{Split::kValidation, n_validation}}) {
      for (uint64_t at = 0; at < count; at += kBlockTokens) {
        block.clear();
        chain.sample(std::min(kBlockTokens, count - at), rng, &state, block);
        writer.append(split, block, at == 0);
        done += block.size();
        progress.update(done);
      }
    }
  }

  Manifest manifest;
  manifest.tokenizer = "synthetic";
  manifest.entropy_rate_nats = chain.entropy_rate_nats();
  SyntheticInfo info;
  info.order = o.chain.order;
  info.support = o.chain.support;
  info.concentration = o.chain.concentration;
  info.smoothing = o.chain.smoothing;
  info.seed = o.chain.seed;
  info.entropy_rate_nats = chain.entropy_rate_nats();
  manifest.synthetic = info;
  manifest.notes["created_by"] = "tessera prepare synthetic";
  manifest.notes["construction"] =
      "order-K Markov chain; state = last K tokens; each state's next token is drawn from a "
      "support of `support` tokens (its de Bruijn successor, plus 0 for the all-zero state, plus "
      "uniform picks) with probabilities (1 - smoothing) * Dirichlet(concentration) + smoothing / "
      "support; ergodic; entropy_rate_nats = sum_s pi_s H(P(.|s)) with pi stationary";
  manifest.notes["validation"] = "the last " + std::to_string(n_validation) + " tokens of the stream";
  const Manifest written = writer.finish(manifest);

  PrepareSummary summary = summarize(writer, written, o.out_dir, "synthetic");
  summary.entropy_rate_nats = chain.entropy_rate_nats();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace tessera::data
