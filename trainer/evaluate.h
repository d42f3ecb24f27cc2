// Validation loss: mean cross-entropy of the model over a dataset's validation split, read in
// order from its start (no shuffle), in batches of `batch` sequences.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "data/loader.h"
#include "trainer/model.h"

namespace tessera::trainer {

struct EvalResult {
  double loss = 0;      // mean cross-entropy per token (nats)
  int64_t tokens = 0;
  int64_t batches = 0;
};

// A reader of a dataset's validation split in order, from its start: replica `replica` of
// `n_replicas` reads its rows of each batch of `batch` sequences; `batches` = min(max_batches, whole
// batches in the split). Throws std::runtime_error naming the dataset if not one batch fits.
struct ValidationReader {
  std::unique_ptr<data::Loader> loader;
  int64_t batches = 0;
};
// Rows carry model.row_tokens(seq_len) tokens, ids checked against model.vocab_size.
ValidationReader open_validation(const std::string& dataset_dir, int64_t seq_len, int64_t batch,
                                 const ModelConfig& model, int64_t max_batches, int replica = 0,
                                 int n_replicas = 1);

// Evaluates min(max_batches, whole batches in the split) batches; at least one batch must fit,
// else std::runtime_error naming the dataset. `progress`, if set, is called after each batch.
EvalResult evaluate(Model& model, const std::string& dataset_dir, int64_t seq_len, int64_t batch,
                    int64_t max_batches,
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace tessera::trainer
