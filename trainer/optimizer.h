// AdamW over ranges of a ParamTable's flat buffers: the ranges this rank owns under ZeRO-1
// (its shard of each parameter region), or whole regions without data parallelism. The moments
// exist for the owned ranges only. Decoupled weight decay applies to parameters whose descriptor
// asks for it, frozen parameters are skipped, and region padding is never touched; global
// grad-norm clipping is folded into the update as a gradient scale.
//
// Moment storage (OptimizerConfig::state_dtype): fp32, or bf16 bit patterns (uint16_t). With bf16
// each update widens the moments to fp32 (exact), runs the fp32 AdamW and rounds the new moments
// to nearest even (kernels/math/low_precision.h): the parameters move exactly as an fp32 step
// from the widened moments would, and only the stored moments are rounded: the backend's
// adamw_update_bf16_moments does all three, in its memory (CPU: chunk by chunk through fp32
// copies on the stack; CUDA: on the device).
#pragma once

#include <cstdint>
#include <span>
#include <string>
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

enum class StateDtype : uint8_t { kF32, kBF16 };
// "fp32" | "bf16" (optimizer.state_dtype); throws std::invalid_argument naming the value otherwise.
StateDtype parse_state_dtype(const std::string& name);
// Bytes of one stored moment element: 4 or 2.
int64_t state_dtype_bytes(StateDtype dtype);

class AdamW {
 public:
  // `owned`: disjoint ranges of the table's flat buffers this optimizer updates. The moments live
  // on `backend` (the table's), zeroed, as config.state_dtype says. Throws std::invalid_argument
  // for bf16 state on a backend that does not offer adamw_update_bf16_moments
  // (capabilities().adamw_bf16_moments).
  AdamW(const OptimizerConfig& config, std::vector<FlatRange> owned, kernels::Backend& backend);
  // Updates the whole table (every region).
  AdamW(const OptimizerConfig& config, const ParamTable& params);

  // One update of the trainable parameters inside the owned ranges, with gradients scaled by
  // grad_scale. Values and gradients outside the owned ranges are neither read nor written.
  void Step(ParamTable& params, double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }

  const std::vector<FlatRange>& owned() const { return owned_; }
  StateDtype state_dtype() const { return state_dtype_; }
  // Moments of owned range k (owned()[k].size() elements, aligned with it), in the backend's
  // memory. exp_avg/exp_avg_sq REQUIRE fp32 state, the _bf16 ones bf16 state (std::logic_error
  // otherwise).
  std::span<float> exp_avg(size_t k) { return span_of<float>(m_[k]); }
  std::span<float> exp_avg_sq(size_t k) { return span_of<float>(v_[k]); }
  std::span<uint16_t> exp_avg_bf16(size_t k) { return span_of<uint16_t>(m_[k]); }
  std::span<uint16_t> exp_avg_sq_bf16(size_t k) { return span_of<uint16_t>(v_[k]); }

 private:
  OptimizerConfig config_;
  StateDtype state_dtype_;
  std::vector<FlatRange> owned_;
  template <typename T>
  static std::span<T> span_of(kernels::Tensor& t) {
    return {t.data<T>(), static_cast<size_t>(t.numel())};
  }
  std::vector<kernels::Tensor> m_, v_;  // per owned range: fp32, or bf16 bits (kU16)
  int64_t steps_ = 0;
};

}  // namespace tessera::trainer
