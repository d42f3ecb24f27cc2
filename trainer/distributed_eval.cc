#include "trainer/distributed_eval.h"

#include <memory>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tessera::trainer {

EvalResult evaluate_distributed(Model& model, const ParallelLayout& layout, parallel::Comm& world,
                                parallel::Comm& pipeline, const std::string& dataset_dir,
                                int64_t seq_len, int64_t batch, int64_t max_batches) {
  const int dp = layout.grid.dp(), pp = layout.grid.pp(), stage = layout.coords.pp_rank;
  if (batch % dp != 0) {
    throw std::invalid_argument("evaluate_distributed: batch " + std::to_string(batch) +
                                " is not divisible by the data-parallel size " + std::to_string(dp));
  }
  ValidationReader reader =
      open_validation(dataset_dir, seq_len, batch, model.config().vocab_size, max_batches,
                      layout.coords.dp_rank, dp);
  data::Loader& loader = *reader.loader;
  const int64_t n = reader.batches;
  const int64_t rows = batch / dp;
  const int64_t elements = rows * seq_len * model.config().dim;
  const int chunks = model.n_chunks();
  const int virtual_stages = pp * chunks;
  const LossScale scale{1.0, 1.0};  // only the unscaled ce_sum is used
  // Boundary activations live where the model computes.
  kernels::Tensor in_buffer = model.backend().alloc({elements}, kernels::DType::kF32);
  kernels::Tensor out_buffer = model.backend().alloc({elements}, kernels::DType::kF32);
  std::span<float> in(in_buffer.data<float>(), static_cast<size_t>(elements));
  std::span<float> out(out_buffer.data<float>(), static_cast<size_t>(elements));
  // One context per chunk: a forward-only micro-batch is done with it when the chunk returns.
  // (Allocated for this evaluation only; training's contexts stay untouched.)
  std::vector<std::unique_ptr<ChunkContext>> contexts;
  for (int c = 0; c < chunks; ++c) contexts.push_back(model.NewChunkContext(c, rows, seq_len));
  std::vector<int32_t> tokens;
  double sums[2] = {0, 0};  // cross-entropy sum, tokens
  for (int64_t b = 0; b < n; ++b) {
    loader.next(tokens);
    // Virtual stages in order; each rank works on the ones it holds. A send completes once
    // matched, and receives are posted in the order of the sends, so this cannot deadlock.
    std::vector<parallel::Work> sends;
    for (int vs = 0; vs < virtual_stages; ++vs) {
      if (parallel::stage_of_virtual(pp, vs) != stage) continue;
      const int chunk = parallel::chunk_of_virtual(pp, vs);
      const bool first = vs == 0, last = vs == virtual_stages - 1;
      if (!first) {
        const int from = parallel::stage_of_virtual(pp, vs - 1);
        if (from != stage) pipeline.recv(in, from, vs).wait();
      }
      if (!last) {  // `out` may still be on its way to the previous receiver
        parallel::wait_all(sends);
        sends.clear();
      }
      const MicroBatchLoss loss =
          model.ChunkForward(*contexts[chunk], tokens.data(), scale, /*training=*/false,
                             first ? nullptr : in.data(), last ? nullptr : out.data());
      sums[0] += loss.ce_sum;
      sums[1] += static_cast<double>(loss.tokens);
      if (!last) {
        const int to = parallel::stage_of_virtual(pp, vs + 1);
        if (to == stage) {
          std::swap(in, out);
        } else {
          sends.push_back(pipeline.send<float>(std::span<const float>(out), to, vs + 1));
        }
      }
    }
    parallel::wait_all(sends);
  }
  world.all_reduce(std::span<double>(sums)).wait();
  EvalResult result;
  result.tokens = static_cast<int64_t>(sums[1]);
  result.batches = n;
  result.loss = sums[0] / sums[1];
  return result;
}

}  // namespace tessera::trainer
