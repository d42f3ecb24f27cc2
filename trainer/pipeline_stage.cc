#include "trainer/pipeline_stage.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace tessera::trainer {

ModelStage::ModelStage(Model& model, const LossScale& scale, Model::ParamsDone grads_final)
    : model_(model),
      scale_(scale),
      grads_final_(std::move(grads_final)),
      slot_of_mb_(model.n_chunks()),
      slot_busy_(model.n_chunks()) {}

void ModelStage::BeginStep(const int32_t* batch, int micro_batches, int64_t mb_rows,
                           int64_t seq_len) {
  batch_ = batch;
  micro_batches_ = micro_batches;
  weight_steps_.assign(model_.n_chunks(), 0);
  mb_rows_ = mb_rows;
  seq_len_ = seq_len;
  loss_ = {};
}

int ModelStage::SlotOf(int mb, int chunk) const {
  const std::vector<int>& slots = slot_of_mb_.at(chunk);
  const int slot = mb < static_cast<int>(slots.size()) ? slots[mb] : -1;
  if (slot < 0) {
    throw std::logic_error("pipeline: micro-batch " + std::to_string(mb) + " of chunk " +
                           std::to_string(chunk) + " has no forward in flight");
  }
  return slot;
}

void ModelStage::Forward(int mb, int chunk, const float* in, float* out) {
  std::vector<int>& slots = slot_of_mb_.at(chunk);
  std::vector<bool>& busy = slot_busy_.at(chunk);
  if (mb >= static_cast<int>(slots.size())) slots.resize(mb + 1, -1);
  if (slots[mb] >= 0) {
    throw std::logic_error("pipeline: second forward of micro-batch " + std::to_string(mb) +
                           " on chunk " + std::to_string(chunk) + " before its backward");
  }
  int slot = 0;
  while (slot < static_cast<int>(busy.size()) && busy[slot]) ++slot;
  if (slot == static_cast<int>(busy.size())) busy.push_back(false);
  busy[slot] = true;
  slots[mb] = slot;
  const int32_t* tokens = batch_ + mb * mb_rows_ * (seq_len_ + 1);
  loss_ += model_.ChunkForward(chunk, slot, tokens, mb_rows_, seq_len_, scale_,
                               /*training=*/true, in, out);
}

void ModelStage::BackwardInput(int mb, int chunk, const float* dout, float* din) {
  model_.ChunkBackwardInput(chunk, SlotOf(mb, chunk), dout, din);
}

void ModelStage::BackwardWeight(int mb, int chunk) {
  const int slot = SlotOf(mb, chunk);
  const bool last = ++weight_steps_.at(chunk) == micro_batches_;
  model_.ChunkBackwardWeight(chunk, slot, last ? grads_final_ : Model::ParamsDone());
  slot_busy_[chunk][slot] = false;
  slot_of_mb_[chunk][mb] = -1;
}

}  // namespace tessera::trainer
