// `tessera prepare synthetic`: a dataset drawn from a random order-K Markov chain over V tokens
// whose entropy rate is known exactly (markov_chain.h documents the construction and why it is
// ergodic). The manifest records entropy_rate_nats: no model can average a lower loss on this
// data, so training can be judged against that floor.
//
// One stream of `tokens` tokens is drawn, starting from a state drawn from the stationary
// distribution (so the data is stationary from its first token); its first tokens form the train
// split and its last round(val_fraction * tokens) tokens (at least 1) the validation split. There
// are no documents: the stream is one document, and there is no end-of-document token.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "data/markov_chain.h"
#include "data/prepare_summary.h"

namespace tessera::data {

struct PrepareSyntheticOptions {
  MarkovChainSpec chain;            // vocab, order, support, concentration, smoothing, seed
  uint64_t tokens = 0;              // >= 2
  double val_fraction = 0.05;       // in (0, 1)
  uint64_t shard_tokens = uint64_t{1} << 24;
  std::string out_dir;
  bool overwrite = false;
  std::ostream* log = nullptr;
  bool tty = false;
};

// Throws DataError naming the bad option or file.
PrepareSummary prepare_synthetic(const PrepareSyntheticOptions& options);
// The option checks prepare_synthetic starts with (no I/O): DataError naming the option.
void validate(const PrepareSyntheticOptions& options);

}  // namespace tessera::data
