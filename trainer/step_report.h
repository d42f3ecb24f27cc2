// What one training step did, by name: Trainer::Step()'s result, written as one metrics.jsonl
// line and, every logging.every_steps, as one progress line. Every field is the same on every
// rank (global sums, maxima or means over the world), except step_s and tokens_per_s (this
// rank's clock).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/metrics.h"

namespace tessera::trainer {

struct StepReport {
  int64_t step = 0;
  double loss = 0;      // what the gradients are of: CE + aux + weighted MTP
  double ce_loss = 0;   // mean cross-entropy per token of the main head
  double aux_loss = 0;  // the sequence-wise balance loss
  std::vector<double> mtp_loss;  // per MTP depth: mean CE over the same tokens (empty: no MTP)
  double mtp_weight = 0;
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double tokens_per_s = 0;
  double step_s = 0;
  double input_wait_s = 0;  // blocked on the data loader
  // Means over the ranks: seconds blocked on communication (exposed) and seconds of
  // communication in flight, all of it and the expert exchanges' share.
  double exposed_comm_s = 0;
  double comm_s = 0;
  double expert_exposed_comm_s = 0;
  double expert_comm_s = 0;
  double bubble_fraction = 0;   // measured: 1 - compute / total over the pipeline's ranks
  double bubble_predicted = 0;  // the schedule's theoretical (or simulated) bubble
  double peak_rss_mib = 0;      // the largest of the ranks
  // The largest of the ranks' peak backend allocations (kernels::Backend::allocated_bytes):
  // the device memory the memory plan predicts (but the MoE blocks' packed exchange buffers,
  // host vectors), without the process's own.
  double device_peak_mib = 0;
  double expert_load_max_over_mean = 0;  // the worst MoE layer
  // The busiest EP rank's routed rows over the EP ranks' mean, averaged over a stage's MoE
  // layers (the largest over stages): what the EP group waits for; 1 = balanced (or ep = 1).
  // `tessera plan --expert-imbalance` takes it.
  double expert_ep_rank_load_max_over_mean = 0;
  int64_t tokens_seen = 0;
  int64_t expert_cross_node_bytes = 0;  // summed over the ranks
  // Bytes the expert row exchanges sent to other EP ranks, in their wire format (fp8 rows with
  // their scales, bf16 or fp32: MoeBlock::take_exchange_bytes), summed over the ranks: forward
  // dispatch, forward combine, and both backward exchanges.
  int64_t expert_dispatch_bytes = 0;
  int64_t expert_combine_bytes = 0;
  int64_t expert_grad_bytes = 0;
  std::optional<double> mfu;             // with run.peak_tflops
  std::optional<double> val_loss;        // when this step evaluated
  int64_t val_tokens = 0;
  std::optional<double> checkpoint_stall_s;  // when this step saved a checkpoint
  std::string checkpoint;  // the directory this step's synchronous save wrote; else ""
  std::string stop_reason;  // not empty: a stop signal ends the run after this step
};

// The metrics.jsonl line of `report` (keys as in README's metrics table).
JsonLine metrics_line(const StepReport& report);

// "step 3/10  loss 4.1234  lr ..." (no newline); the bubble and exposed communication only when
// the world has more than one rank.
std::string progress_line(const StepReport& report, int64_t total_steps, int world_size);

}  // namespace tessera::trainer
