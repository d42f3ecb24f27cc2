// AdamW over ranges of a ParamTable's flat buffers: the ranges this rank owns under ZeRO-1
// (its shard of each parameter region), or whole regions without data parallelism. The moments
// exist for the owned ranges only. Decoupled weight decay applies to parameters whose descriptor
// asks for it, frozen parameters are skipped, and region padding is never touched; global
// grad-norm clipping is folded into the update as a gradient scale.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Calls fn(desc, begin, end) for each piece [begin, end) of a TRAINABLE parameter that lies
// inside `range` (flat-buffer elements), in layout order.
template <typename Fn>
void for_each_trainable_piece(const ParamTable& params, FlatRange range, Fn&& fn) {
  for_each_param_piece(params, range, [&](int i, int64_t b, int64_t e) {
    if (params.descs()[i].trainable) fn(params.descs()[i], b, e);
  });
}

// Sum of squared gradients of trainable parameters inside `ranges`, accumulated in double.
// The global norm is the square root of this summed over disjoint ranges covering the model.
double grad_sum_squares(ParamTable& params, std::span<const FlatRange> ranges);
// Over the whole table.
double grad_norm(ParamTable& params);

// min(1, max_norm / norm); 1 when max_norm is 0 (clipping off).
double clip_scale(double norm, double max_norm);

class AdamW {
 public:
  // `owned`: disjoint ranges of the table's flat buffers this optimizer updates. The moments live
  // on `backend` (the table's), zeroed.
  AdamW(const OptimizerConfig& config, std::vector<FlatRange> owned, kernels::Backend& backend);
  // Updates the whole table (every region).
  AdamW(const OptimizerConfig& config, const ParamTable& params);

  // One update of the trainable parameters inside the owned ranges, with gradients scaled by
  // grad_scale. Values and gradients outside the owned ranges are neither read nor written.
  void Step(ParamTable& params, double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }

  const std::vector<FlatRange>& owned() const { return owned_; }
  // Moments of owned range k (owned()[k].size() elements, aligned with it), in the backend's
  // memory.
  std::span<float> exp_avg(size_t k) { return span_of(m_[k]); }
  std::span<float> exp_avg_sq(size_t k) { return span_of(v_[k]); }

 private:
  OptimizerConfig config_;
  std::vector<FlatRange> owned_;
  static std::span<float> span_of(kernels::Tensor& t) {
    return {t.data<float>(), static_cast<size_t>(t.numel())};
  }
  std::vector<kernels::Tensor> m_, v_;
  int64_t steps_ = 0;
};

}  // namespace tessera::trainer
