#include "trainer/pipeline_stage.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace tessera::trainer {

ModelStage::ModelStage(Model& model, const LossScale& scale, const parallel::Schedule& schedule,
                       int stage, int64_t mb_rows, int64_t seq_len, Model::ParamsDone grads_final)
    : model_(model),
      scale_(scale),
      grads_final_(std::move(grads_final)),
      mb_rows_(mb_rows),
      seq_len_(seq_len),
      peak_(parallel::peak_in_flight(schedule, stage)) {
  if (static_cast<int>(peak_.size()) != model.n_chunks()) {
    throw std::logic_error("ModelStage: the schedule has " + std::to_string(peak_.size()) +
                           " chunks per stage, the model part " +
                           std::to_string(model.n_chunks()));
  }
  contexts_.resize(peak_.size());
  context_of_mb_.resize(peak_.size());
  busy_.resize(peak_.size());
  for (int c = 0; c < model.n_chunks(); ++c) {
    for (int i = 0; i < peak_[c]; ++i) {
      contexts_[c].push_back(model.NewChunkContext(c, mb_rows, seq_len));
    }
    busy_[c].assign(peak_[c], false);
    context_bytes_.push_back(contexts_[c].empty() ? 0
                                                  : static_cast<int64_t>(
                                                        contexts_[c][0]->arena.capacity()));
  }
}

void ModelStage::BeginStep(const int32_t* batch, int micro_batches) {
  batch_ = batch;
  micro_batches_ = micro_batches;
  weight_steps_.assign(model_.n_chunks(), 0);
  loss_ = {};
}

ChunkContext& ModelStage::ContextOf(int mb, int chunk) {
  const std::vector<int>& of = context_of_mb_.at(chunk);
  const int i = mb < static_cast<int>(of.size()) ? of[mb] : -1;
  if (i < 0) {
    throw std::logic_error("pipeline: micro-batch " + std::to_string(mb) + " of chunk " +
                           std::to_string(chunk) + " has no forward in flight");
  }
  return *contexts_[chunk][i];
}

void ModelStage::Forward(int mb, int chunk, const float* in, float* out) {
  std::vector<int>& of = context_of_mb_.at(chunk);
  std::vector<bool>& busy = busy_.at(chunk);
  if (mb >= static_cast<int>(of.size())) of.resize(mb + 1, -1);
  if (of[mb] >= 0) {
    throw std::logic_error("pipeline: second forward of micro-batch " + std::to_string(mb) +
                           " on chunk " + std::to_string(chunk) + " before its backward");
  }
  int i = 0;
  while (i < static_cast<int>(busy.size()) && busy[i]) ++i;
  if (i == static_cast<int>(busy.size())) {
    throw std::logic_error("pipeline: chunk " + std::to_string(chunk) + " has " +
                           std::to_string(busy.size()) +
                           " micro-batch contexts (the schedule's peak) and all are in use");
  }
  busy[i] = true;
  of[mb] = i;
  const int32_t* tokens = batch_ + mb * mb_rows_ * (seq_len_ + 1);
  loss_ += model_.ChunkForward(*contexts_[chunk][i], tokens, scale_, /*training=*/true, in, out);
}

void ModelStage::BackwardInput(int mb, int chunk, const float* dout, float* din) {
  model_.ChunkBackwardInput(ContextOf(mb, chunk), dout, din);
}

void ModelStage::BackwardWeight(int mb, int chunk) {
  ChunkContext& ctx = ContextOf(mb, chunk);
  const bool last = ++weight_steps_.at(chunk) == micro_batches_;
  model_.ChunkBackwardWeight(ctx, last ? grads_final_ : Model::ParamsDone());
  busy_[chunk][context_of_mb_[chunk][mb]] = false;
  context_of_mb_[chunk][mb] = -1;
}

}  // namespace tessera::trainer
