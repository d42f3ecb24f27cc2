#include "trainer/evaluate.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "data/loader.h"

namespace tessera::trainer {

ValidationReader open_validation(const std::string& dataset_dir, int64_t seq_len, int64_t batch,
                                 const ModelConfig& model, int64_t max_batches, int replica,
                                 int n_replicas) {
  data::LoaderOptions options;
  options.dataset_dir = dataset_dir;
  options.split = "validation";
  options.seq_len = seq_len;
  options.extra_tokens = model.mtp_depth;
  options.global_batch = batch;
  options.replica = replica;
  options.n_replicas = n_replicas;
  options.vocab_size = model.vocab_size;
  options.shuffle = false;
  options.prefetch = 2;
  ValidationReader r;
  r.loader = std::make_unique<data::Loader>(options);
  const int64_t available = r.loader->samples_per_epoch() / batch;
  if (available < 1) {
    throw std::runtime_error(dataset_dir + ": validation split has " +
                             std::to_string(r.loader->samples_per_epoch()) +
                             " sequences of seq_len " + std::to_string(seq_len) +
                             ", fewer than one batch of " + std::to_string(batch));
  }
  r.batches = std::min(max_batches, available);
  return r;
}

EvalResult evaluate(Model& model, const std::string& dataset_dir, int64_t seq_len, int64_t batch,
                    int64_t max_batches,
                    const std::function<void(int64_t done, int64_t total)>& progress) {
  ValidationReader reader =
      open_validation(dataset_dir, seq_len, batch, model.config(), max_batches);
  data::Loader& loader = *reader.loader;
  const int64_t n = reader.batches;
  const LossScale scale{1.0, 1.0};  // ce_sum is what we use; scales only affect aux terms
  std::vector<int32_t> tokens;
  double ce_sum = 0;
  EvalResult result;
  for (int64_t b = 0; b < n; ++b) {
    loader.next(tokens);
    const MicroBatchLoss loss = model.EvalMicroBatch(tokens.data(), batch, seq_len, scale);
    ce_sum += loss.ce_sum;
    result.tokens += loss.tokens;
    ++result.batches;
    if (progress) progress(b + 1, n);
  }
  result.loss = ce_sum / static_cast<double>(result.tokens);
  return result;
}

}  // namespace tessera::trainer
