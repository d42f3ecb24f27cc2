// Validation loss of a model spread over a parallel layout, without gathering it anywhere: every
// data replica reads its rows of each validation batch (as training does), the pipeline executor
// runs a forward-only list over the training schedule's placement (each stage's chunks in the
// order of the data flow, activations passed on by the same executor as training), MoE layers
// exchange tokens over their EP groups, and the cross-entropy sums of the last stage are added up
// over the world. Gives what trainer/evaluate.h's single-process evaluate() gives for the whole
// model (the same samples, sums in another order).
#pragma once

#include <cstdint>
#include <string>

#include "parallel/comm.h"
#include "trainer/evaluate.h"
#include "trainer/model.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

// Collective over `world`. `pipeline`: a communicator over this rank's pipeline group used only
// here (its point-to-point traffic must not mix with the training executor's). `batch`: sequences
// per validation batch over all replicas (divisible by the data-parallel size); evaluates
// min(max_batches, whole batches in the split) batches. Every rank returns the same result.
EvalResult evaluate_distributed(Model& model, const ParallelLayout& layout, parallel::Comm& world,
                                parallel::Comm& pipeline, const std::string& dataset_dir,
                                int64_t seq_len, int64_t batch, int64_t max_batches);

}  // namespace tessera::trainer
