#include "trainer/pipeline_stage.h"

#include <array>
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
  mb_per_chunk_.assign(peak_.size(), 0);
  for (size_t c = 0; c < peak_.size(); ++c) {
    const int vs = schedule.placement.virtual_stage(stage, static_cast<int>(c));
    for (int mb = 0; mb < schedule.micro_batches; ++mb) {
      mb_per_chunk_[c] += schedule.placement.visits(mb, vs) ? 1 : 0;
    }
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

void ModelStage::BeginStep(const int32_t* batch) {
  batch_ = batch;
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

ChunkContext& ModelStage::Acquire(int mb, int chunk) {
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
  return *contexts_[chunk][i];
}

void ModelStage::Release(int mb, int chunk) {
  busy_[chunk][context_of_mb_[chunk][mb]] = false;
  context_of_mb_[chunk][mb] = -1;
}

Model::ParamsDone ModelStage::CountWeightStep(int chunk) {
  const bool last = ++weight_steps_.at(chunk) == mb_per_chunk_.at(chunk);
  return last ? grads_final_ : Model::ParamsDone();
}

StepObserver ModelStage::TraceObserver(std::pair<int, int> list0, std::pair<int, int> list1) {
  if (trace_ == nullptr || !trace_->enabled()) return {};
  using Clock = parallel::TraceRecorder::Clock;
  // Steps of one list never nest, so one start time per list.
  return [this, units = std::array{list0, list1}, started = std::array<Clock::time_point, 2>{}](
             int list, const ChunkStep& step, bool begin) mutable {
    if (begin) {
      started[list] = Clock::now();
      return;
    }
    const std::string name = std::string(1, step.phase) + " " + step.name;
    trace_->record(parallel::TraceRecorder::kComputeLane, name, started[list], Clock::now(),
                   {{"micro_batch", units[list].first},
                    {"chunk", units[list].second},
                    {"layer", step.layer}});
  };
}

void ModelStage::Forward(int mb, int chunk, const float* in, float* out) {
  ChunkContext& ctx = Acquire(mb, chunk);
  loss_ += model_.ChunkForward(ctx, TokensOf(mb), scale_, /*training=*/true, in, out,
                               TraceObserver({mb, chunk}));
}

void ModelStage::BackwardInput(int mb, int chunk, const float* dout, float* din) {
  model_.ChunkBackwardInput(ContextOf(mb, chunk), dout, din, TraceObserver({mb, chunk}));
}

void ModelStage::BackwardWeight(int mb, int chunk) {
  model_.ChunkBackwardWeight(ContextOf(mb, chunk), CountWeightStep(chunk),
                             TraceObserver({mb, chunk}));
  Release(mb, chunk);
}

void ModelStage::ForwardBackward(int mb_f, int chunk_f, const float* in, float* out, int mb_b,
                                 int chunk_b, const float* dout, float* din) {
  if (!overlap_) {
    parallel::StageCompute::ForwardBackward(mb_f, chunk_f, in, out, mb_b, chunk_b, dout, din);
    return;
  }
  ChunkContext& b = ContextOf(mb_b, chunk_b);
  ChunkContext& f = Acquire(mb_f, chunk_f);
  loss_ += model_.ChunkForwardBackward(f, TokensOf(mb_f), scale_, in, out, b, dout, din,
                                       CountWeightStep(chunk_b),
                                       TraceObserver({mb_b, chunk_b}, {mb_f, chunk_f}));
  Release(mb_b, chunk_b);
}

}  // namespace tessera::trainer
