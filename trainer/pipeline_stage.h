// ModelStage: this rank's part of the model as the pipeline executor's StageCompute. For each
// step it serves the replica's micro-batches (rows of the loader's batch) to the model chunks the
// executor names. It owns the micro-batch contexts (Model::NewChunkContext): per chunk, as many
// as the schedule has in flight at its peak (parallel::peak_in_flight), all allocated when the
// stage is made, before the first step; a context is reused once its micro-batch's weight
// gradients are done. It also sums the losses of the forwards it ran.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
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
  // seq_len + 1 tokens, micro_batches of them; `batch` must stay valid until the step's run()
  // returned. Clears loss().
  void BeginStep(const int32_t* batch, int micro_batches);
  // Sum of the losses of this step's forwards on this rank (CE only where the head lives).
  const MicroBatchLoss& loss() const { return loss_; }
  // Contexts per chunk and the bytes of each one's arena.
  const std::vector<int>& contexts_per_chunk() const { return peak_; }
  int64_t context_bytes(int chunk) const { return context_bytes_.at(chunk); }

  void Forward(int mb, int chunk, const float* in, float* out) override;
  void BackwardInput(int mb, int chunk, const float* dout, float* din) override;
  void BackwardWeight(int mb, int chunk) override;

 private:
  ChunkContext& ContextOf(int mb, int chunk);

  Model& model_;
  LossScale scale_;
  Model::ParamsDone grads_final_;
  int64_t mb_rows_, seq_len_;
  std::vector<int> peak_;
  std::vector<int64_t> context_bytes_;
  const int32_t* batch_ = nullptr;
  int micro_batches_ = 0;
  std::vector<int> weight_steps_;  // per chunk: weight-gradient steps run this step
  MicroBatchLoss loss_;
  // Per chunk: the contexts, the one each micro-batch occupies (-1: none) and which are in use.
  std::vector<std::vector<std::unique_ptr<ChunkContext>>> contexts_;
  std::vector<std::vector<int>> context_of_mb_;
  std::vector<std::vector<bool>> busy_;
};

}  // namespace tessera::trainer
