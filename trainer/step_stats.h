// The per-step numbers every rank contributes to, by name, and the world all-reduces that
// combine them: one sum before the optimizer step (what the step needs) and, after it, one sum
// and one max for the metrics (instead of one all-reduce per metric).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/comm.h"

namespace tessera::trainer {

// Summed over the world before the optimizer step.
struct StepSums {
  double grad_sum_squares = 0;  // this rank's share of the squared gradient norm
  double loss = 0;              // loss, CE and aux: sums that the last stage holds
  double ce_sum = 0;
  double aux = 0;
  double tokens = 0;
  double pipeline_compute_s = 0;  // the executor's compute and total time (the bubble)
  double pipeline_total_s = 0;
  double stop_requests = 0;        // ranks asked to stop (a signal)
  std::vector<double> mtp_ce_sum;  // one per MTP depth
};
// Collective over `world`; every rank gets the sums. mtp_ce_sum must have one size everywhere.
StepSums all_reduce_step_sums(parallel::Comm& world, const StepSums& mine);

// Metrics after the step: sums (divided by the world size where the metric is a mean) and maxima.
struct StepMetricTotals {
  double exposed_comm_s = 0;  // summed over ranks
  double comm_s = 0;
  double expert_exposed_comm_s = 0;
  double expert_comm_s = 0;
  double expert_cross_node_bytes = 0;  // exact below 2^53 bytes
  // The expert row exchanges' bytes to other ranks, in their wire format (fp8/bf16/fp32):
  // forward dispatch, forward combine, and both backward exchanges together.
  double expert_dispatch_bytes = 0;
  double expert_combine_bytes = 0;
  double expert_grad_bytes = 0;
  double expert_load_max_over_mean = 0;  // maximum over ranks
  double expert_ep_rank_load_max_over_mean = 0;  // maximum over ranks
  double peak_rss_mib = 0;               // maximum over ranks
  double device_peak_mib = 0;            // maximum over ranks
};
StepMetricTotals all_reduce_step_metrics(parallel::Comm& world, const StepMetricTotals& mine);

}  // namespace tessera::trainer
