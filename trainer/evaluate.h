// Validation loss: mean cross-entropy of the model over a dataset's validation split, read in
// order from its start (no shuffle), in batches of `batch` sequences.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "trainer/model.h"

namespace tessera::trainer {

struct EvalResult {
  double loss = 0;      // mean cross-entropy per token (nats)
  int64_t tokens = 0;
  int64_t batches = 0;
};

// Evaluates min(max_batches, whole batches in the split) batches; at least one batch must fit,
// else std::runtime_error naming the dataset. `progress`, if set, is called after each batch.
EvalResult evaluate(Model& model, const std::string& dataset_dir, int64_t seq_len, int64_t batch,
                    int64_t max_batches,
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace tessera::trainer
