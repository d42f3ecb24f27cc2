#include "trainer/step_report.h"

#include <cstdio>

namespace tessera::trainer {

namespace {

std::string format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, a);
  return buf;
}

}  // namespace

JsonLine metrics_line(const StepReport& r) {
  JsonLine line;
  line.add("step", r.step)
      .add("loss", r.loss)
      .add("ce_loss", r.ce_loss)
      .add("aux_loss", r.aux_loss)
      .add("lr", r.lr)
      .add("grad_norm", r.grad_norm)
      .add("tokens_per_s", r.tokens_per_s)
      .add("step_s", r.step_s)
      .add("input_wait_s", r.input_wait_s)
      .add("exposed_comm_s", r.exposed_comm_s)
      .add("comm_s", r.comm_s)
      .add("expert_exposed_comm_s", r.expert_exposed_comm_s)
      .add("expert_comm_s", r.expert_comm_s)
      .add("bubble_fraction", r.bubble_fraction)
      .add("bubble_predicted", r.bubble_predicted)
      .add("peak_rss_mib", r.peak_rss_mib)
      .add("device_peak_mib", r.device_peak_mib)
      .add("expert_load_max_over_mean", r.expert_load_max_over_mean)
      .add("expert_ep_rank_load_max_over_mean", r.expert_ep_rank_load_max_over_mean)
      .add("tokens_seen", r.tokens_seen);
  if (!r.mtp_loss.empty()) line.add("mtp_loss", r.mtp_loss).add("mtp_weight", r.mtp_weight);
  if (r.mfu) line.add("mfu", *r.mfu);
  line.add("expert_cross_node_bytes", r.expert_cross_node_bytes)
      .add("expert_dispatch_bytes", r.expert_dispatch_bytes)
      .add("expert_combine_bytes", r.expert_combine_bytes)
      .add("expert_grad_bytes", r.expert_grad_bytes);
  if (r.val_loss) line.add("val_loss", *r.val_loss).add("val_tokens", r.val_tokens);
  if (r.checkpoint_stall_s) line.add("checkpoint_stall_s", *r.checkpoint_stall_s);
  return line;
}

std::string progress_line(const StepReport& r, int64_t total_steps, int world_size) {
  std::string s = "step " + std::to_string(r.step) + "/" + std::to_string(total_steps) +
                  "  loss " + format("%.4f", r.loss) + "  lr " + format("%.3e", r.lr) +
                  "  grad_norm " + format("%.3f", r.grad_norm) + "  " +
                  format("%.0f", r.tokens_per_s) + " tok/s  load max/mean " +
                  format("%.2f", r.expert_load_max_over_mean);
  if (!r.mtp_loss.empty()) {
    s += "  ce " + format("%.4f", r.ce_loss) + "  mtp";
    for (double l : r.mtp_loss) s += " " + format("%.4f", l);
  }
  if (r.mfu) s += "  mfu " + format("%.1f", 100 * *r.mfu) + "%";
  if (world_size > 1) {
    s += "  bubble " + format("%.3f", r.bubble_fraction) + "  exposed comm " +
         format("%.4f", r.exposed_comm_s) + " s";
  }
  if (r.val_loss) s += "  val_loss " + format("%.4f", *r.val_loss);
  return s;
}

}  // namespace tessera::trainer
