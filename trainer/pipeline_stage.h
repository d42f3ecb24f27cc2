// ModelStage: this rank's part of the model as the pipeline executor's StageCompute. For each
// step it serves the replica's micro-batches (rows of the loader's batch) to the model chunks the
// executor names, keeps one activation slot per micro-batch in flight on each chunk (reused once
// the micro-batch's weight gradients are done, so memory follows the schedule's peak, not the
// number of micro-batches), and sums the losses of the forwards it ran.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "trainer/model.h"

namespace tessera::trainer {

class ModelStage final : public parallel::StageCompute {
 public:
  // grads_final, if set, hears of parameter ranges whose gradients are final for the step: those
  // of a layer once its weight-gradient step of the step's last micro-batch on its chunk ran.
  ModelStage(Model& model, const LossScale& scale, Model::ParamsDone grads_final = {});

  // The step's batch: micro-batch m is rows [m * mb_rows, (m + 1) * mb_rows) of `batch`, each row
  // seq_len + 1 tokens, micro_batches of them; `batch` must stay valid until the step's run()
  // returned. Clears loss().
  void BeginStep(const int32_t* batch, int micro_batches, int64_t mb_rows, int64_t seq_len);
  // Sum of the losses of this step's forwards on this rank (CE only where the head lives).
  const MicroBatchLoss& loss() const { return loss_; }

  void Forward(int mb, int chunk, const float* in, float* out) override;
  void BackwardInput(int mb, int chunk, const float* dout, float* din) override;
  void BackwardWeight(int mb, int chunk) override;

 private:
  int SlotOf(int mb, int chunk) const;

  Model& model_;
  LossScale scale_;
  Model::ParamsDone grads_final_;
  const int32_t* batch_ = nullptr;
  int micro_batches_ = 0;
  std::vector<int> weight_steps_;  // per chunk: weight-gradient steps run this step
  int64_t mb_rows_ = 0, seq_len_ = 0;
  MicroBatchLoss loss_;
  // Per chunk: the slot each micro-batch occupies (-1: none) and which slots are in use.
  std::vector<std::vector<int>> slot_of_mb_;
  std::vector<std::vector<bool>> slot_busy_;
};

}  // namespace tessera::trainer
