// ModelStage: this rank's part of the model as the pipeline executor's StageCompute. For each
// step it serves the replica's micro-batches (rows of the loader's batch) to the model chunks the
// executor names. It owns the micro-batch contexts (Model::NewChunkContext): per chunk, as many
// as the schedule has in flight at its peak (parallel::peak_in_flight), all allocated when the
// stage is made, before the first step; a context is reused once its micro-batch's weight
// gradients are done. It also sums the losses of the forwards it ran.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
#include "parallel/trace_recorder.h"
#include "trainer/model.h"

namespace tessera::trainer {

class ModelStage final : public parallel::StageCompute {
 public:
  // Contexts for micro-batches of mb_rows x seq_len tokens on `stage` of `schedule`.
  // grads_final, if set, hears of parameter ranges whose gradients are final for the step: those
  // of a layer once its weight-gradient step of the step's last micro-batch on its chunk ran.
  ModelStage(Model& model, const LossScale& scale, const parallel::Schedule& schedule, int stage,
             int64_t mb_rows, int64_t seq_len, Model::ParamsDone grads_final = {});

  // The step's batch: micro-batch m is rows [m * mb_rows, (m + 1) * mb_rows) of `batch`, each row
  // ModelConfig::row_tokens(seq_len) tokens, as many micro-batches as the schedule has; `batch`
  // must stay valid until the step's run() returned. Clears loss().
  void BeginStep(const int32_t* batch);
  // The loss scale of the next steps (the MTP weight follows a schedule of tokens seen).
  void set_loss_scale(const LossScale& scale) { scale_ = scale; }
  // Sum of the losses of this step's forwards on this rank (CE only where the head lives).
  const MicroBatchLoss& loss() const { return loss_; }
  // Contexts per chunk and the bytes of each one's arena.
  const std::vector<int>& contexts_per_chunk() const { return peak_; }
  int64_t context_bytes(int chunk) const { return context_bytes_.at(chunk); }

  void Forward(int mb, int chunk, const float* in, float* out) override;
  void BackwardInput(int mb, int chunk, const float* dout, float* din) override;
  void BackwardWeight(int mb, int chunk) override;
  // FB: the two micro-batches' pieces interleaved (Model::ChunkForwardBackward), unless the
  // stage was made with overlap off (then Forward, BackwardInput, BackwardWeight in turn).
  void ForwardBackward(int mb_f, int chunk_f, const float* in, float* out, int mb_b, int chunk_b,
                       const float* dout, float* din) override;
  // false: FB runs F then B then W (to compare, and for parallel.overlap: off).
  void set_overlap(bool on) { overlap_ = on; }
  // Where every step of the chunks' phases is recorded while the recorder is enabled: an event
  // "F <piece>", "B <piece>" or "W <piece>" with micro_batch, chunk and layer. Null: none.
  void set_trace(parallel::TraceRecorder* recorder) { trace_ = recorder; }

 private:
  ChunkContext& ContextOf(int mb, int chunk);
  ChunkContext& Acquire(int mb, int chunk);  // a free context for a new forward
  void Release(int mb, int chunk);           // after its weight step
  // The grads_final callback when this weight step of `chunk` is its last of the step.
  Model::ParamsDone CountWeightStep(int chunk);
  const int32_t* TokensOf(int mb) const {
    return batch_ + mb * mb_rows_ * model_.config().row_tokens(seq_len_);
  }
  // A step observer recording into trace_ (empty when tracing is off). list_units[l]: the
  // (micro-batch, chunk) of step list l (0: the only list, or the FB pair's backward; 1: its
  // forward).
  StepObserver TraceObserver(std::pair<int, int> list0, std::pair<int, int> list1 = {-1, -1});

  Model& model_;
  LossScale scale_;
  Model::ParamsDone grads_final_;
  int64_t mb_rows_, seq_len_;
  std::vector<int> peak_;
  std::vector<int64_t> context_bytes_;
  const int32_t* batch_ = nullptr;
  std::vector<int> weight_steps_;  // per chunk: weight-gradient steps run this step
  std::vector<int> mb_per_chunk_;  // per chunk: micro-batches passing through it per step
  bool overlap_ = true;
  parallel::TraceRecorder* trace_ = nullptr;
  MicroBatchLoss loss_;
  // Per chunk: the contexts, the one each micro-batch occupies (-1: none) and which are in use.
  std::vector<std::vector<std::unique_ptr<ChunkContext>>> contexts_;
  std::vector<std::vector<int>> context_of_mb_;
  std::vector<std::vector<bool>> busy_;
};

}  // namespace tessera::trainer
