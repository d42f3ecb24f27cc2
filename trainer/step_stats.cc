#include "trainer/step_stats.h"

#include <span>

namespace tessera::trainer {

StepSums all_reduce_step_sums(parallel::Comm& world, const StepSums& mine) {
  std::vector<double> packed = {mine.grad_sum_squares,   mine.loss,
                                mine.ce_sum,             mine.aux,
                                mine.tokens,             mine.pipeline_compute_s,
                                mine.pipeline_total_s,   mine.stop_requests};
  constexpr size_t kFixed = 8;
  packed.insert(packed.end(), mine.mtp_ce_sum.begin(), mine.mtp_ce_sum.end());
  world.all_reduce(std::span<double>(packed)).wait();
  StepSums all;
  all.grad_sum_squares = packed[0];
  all.loss = packed[1];
  all.ce_sum = packed[2];
  all.aux = packed[3];
  all.tokens = packed[4];
  all.pipeline_compute_s = packed[5];
  all.pipeline_total_s = packed[6];
  all.stop_requests = packed[7];
  all.mtp_ce_sum.assign(packed.begin() + kFixed, packed.end());
  return all;
}

StepMetricTotals all_reduce_step_metrics(parallel::Comm& world, const StepMetricTotals& mine) {
  if (world.size() == 1) return mine;
  double sums[] = {mine.exposed_comm_s,        mine.comm_s,
                   mine.expert_exposed_comm_s, mine.expert_comm_s,
                   mine.expert_cross_node_bytes, mine.expert_dispatch_bytes,
                   mine.expert_combine_bytes,  mine.expert_grad_bytes};
  double maxima[] = {mine.expert_load_max_over_mean, mine.peak_rss_mib, mine.device_peak_mib,
                     mine.expert_ep_rank_load_max_over_mean};
  parallel::Work w = world.all_reduce(std::span<double>(sums));
  world.all_reduce(std::span<double>(maxima), {parallel::ReduceOp::kMax}).wait();
  w.wait();
  StepMetricTotals all;
  all.exposed_comm_s = sums[0];
  all.comm_s = sums[1];
  all.expert_exposed_comm_s = sums[2];
  all.expert_comm_s = sums[3];
  all.expert_cross_node_bytes = sums[4];
  all.expert_dispatch_bytes = sums[5];
  all.expert_combine_bytes = sums[6];
  all.expert_grad_bytes = sums[7];
  all.expert_load_max_over_mean = maxima[0];
  all.peak_rss_mib = maxima[1];
  all.device_peak_mib = maxima[2];
  all.expert_ep_rank_load_max_over_mean = maxima[3];
  return all;
}

}  // namespace tessera::trainer
