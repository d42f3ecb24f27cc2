#include "trainer/distributed_eval.h"

#include <memory>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "parallel/schedule_generators.h"

namespace tessera::trainer {
namespace {

// The forward of this rank's chunks for the pipeline executor: one context per chunk (a
// forward-only micro-batch is done with it when the chunk returns), allocated for this
// evaluation only, so training's contexts stay untouched.
class EvalStage final : public parallel::StageCompute {
 public:
  EvalStage(Model& model, int64_t rows, int64_t seq_len) : model_(model) {
    for (int c = 0; c < model.n_chunks(); ++c) {
      contexts_.push_back(model.NewChunkContext(c, rows, seq_len));
    }
  }
  void set_tokens(const int32_t* tokens) { tokens_ = tokens; }
  MicroBatchLoss& loss() { return loss_; }

  void Forward(int, int chunk, const float* in, float* out) override {
    const LossScale scale{1.0, 1.0};  // only the unscaled ce_sum is used
    loss_ += model_.ChunkForward(*contexts_.at(chunk), tokens_, scale, /*training=*/false, in, out);
  }
  void BackwardInput(int, int, const float*, float*) override {
    throw std::logic_error("evaluation runs no backward");
  }
  void BackwardWeight(int, int) override { throw std::logic_error("evaluation runs no backward"); }

 private:
  Model& model_;
  std::vector<std::unique_ptr<ChunkContext>> contexts_;
  const int32_t* tokens_ = nullptr;
  MicroBatchLoss loss_;
};

}  // namespace

EvalResult evaluate_distributed(Model& model, const ParallelLayout& layout, parallel::Comm& world,
                                parallel::Comm& pipeline, const std::string& dataset_dir,
                                int64_t seq_len, int64_t batch, int64_t max_batches) {
  const int dp = layout.grid.dp();
  if (batch % dp != 0) {
    throw std::invalid_argument("evaluate_distributed: batch " + std::to_string(batch) +
                                " is not divisible by the data-parallel size " + std::to_string(dp));
  }
  ValidationReader reader =
      open_validation(dataset_dir, seq_len, batch, model.config(), max_batches,
                      layout.coords.dp_rank, dp);
  data::Loader& loader = *reader.loader;
  const int64_t n = reader.batches;
  const int64_t rows = batch / dp;
  // One validation batch per run of a forward-only list over the training schedule's placement.
  parallel::PipelineExecutor executor(
      pipeline, parallel::forward_only_schedule(layout.schedule.placement, 1),
      rows * seq_len * model.config().dim, model.backend());
  EvalStage stage(model, rows, seq_len);
  std::vector<int32_t> tokens;
  for (int64_t b = 0; b < n; ++b) {
    loader.next(tokens);
    stage.set_tokens(tokens.data());
    executor.run(stage);
  }
  double sums[2] = {stage.loss().ce_sum, static_cast<double>(stage.loss().tokens)};
  world.all_reduce(std::span<double>(sums)).wait();
  EvalResult result;
  result.tokens = static_cast<int64_t>(sums[1]);
  result.batches = n;
  result.loss = sums[0] / sums[1];
  return result;
}

}  // namespace tessera::trainer
