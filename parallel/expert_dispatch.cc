#include "parallel/expert_dispatch.h"

#include <numeric>
#include <stdexcept>
#include <string>

namespace tessera::parallel {
namespace {

std::string where(const Comm& ep) {
  return "on comm '" + ep.name() + "' (rank " + std::to_string(ep.rank()) + " of " +
         std::to_string(ep.size()) + ")";
}

int64_t sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

// Throws unless `plan` was made on this group and both buffers hold rows x width floats.
void check_buffers(const char* op, const Comm& ep, const DispatchPlan& plan, size_t send_n,
                   size_t recv_n, int64_t width) {
  const std::string at = std::string(op) + " " + where(ep) + ": ";
  if (plan.ep_size != ep.size() || plan.ep_rank != ep.rank()) {
    throw std::invalid_argument(at + "the plan was made on rank " + std::to_string(plan.ep_rank) +
                                " of " + std::to_string(plan.ep_size));
  }
  if (width < 1) throw std::invalid_argument(at + "width " + std::to_string(width) + " < 1");
  auto check = [&](const char* name, size_t n, int64_t rows) {
    if (static_cast<int64_t>(n) != rows * width) {
      throw std::invalid_argument(at + name + " has " + std::to_string(n) + " floats, expected " +
                                  std::to_string(rows) + " rows x " + std::to_string(width) +
                                  " = " + std::to_string(rows * width));
    }
  };
  check("the send-layout buffer", send_n, plan.total_send_rows());
  check("the receive-layout buffer", recv_n, plan.total_recv_rows());
}

std::vector<int64_t> times(const std::vector<int64_t>& rows, int64_t width) {
  std::vector<int64_t> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = rows[i] * width;
  return out;
}

}  // namespace

int64_t DispatchPlan::total_send_rows() const { return sum(send_rows); }
int64_t DispatchPlan::total_recv_rows() const { return sum(recv_rows); }

PendingDispatchPlan post_dispatch_plan(Comm& ep, std::span<const int64_t> counts,
                                       int64_t n_experts) {
  const int p = ep.size();
  const std::string at = "plan_dispatch " + where(ep) + ": ";
  if (n_experts < 1 || n_experts % p != 0) {
    throw std::invalid_argument(at + "n_experts " + std::to_string(n_experts) +
                                " is not a positive multiple of the EP size " + std::to_string(p));
  }
  if (static_cast<int64_t>(counts.size()) != n_experts) {
    throw std::invalid_argument(at + "counts has " + std::to_string(counts.size()) +
                                " entries, expected n_experts = " + std::to_string(n_experts));
  }
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] < 0) {
      throw std::invalid_argument(at + "counts[" + std::to_string(e) +
                                  "] = " + std::to_string(counts[e]) + " is negative");
    }
  }
  PendingDispatchPlan pending;
  pending.ep_size_ = p;
  pending.ep_rank_ = ep.rank();
  pending.n_experts_ = n_experts;
  pending.counts_.assign(counts.begin(), counts.end());
  pending.from_.assign(static_cast<size_t>(n_experts), 0);
  // Rank j receives counts[j*epr, (j+1)*epr); I receive every source's counts for my experts.
  const int64_t epr = n_experts / p;
  AllToAllVOptions o;
  o.send_counts.assign(p, epr);
  o.recv_counts.assign(p, epr);
  pending.work_ = ep.all_to_all_v<int64_t>(pending.counts_, std::span<int64_t>(pending.from_), o);
  pending.posted_ = true;
  return pending;
}

DispatchPlan PendingDispatchPlan::finish() {
  if (!posted_) throw std::logic_error("PendingDispatchPlan::finish: nothing was posted");
  posted_ = false;
  work_.wait();
  const int p = ep_size_;
  const int64_t epr = n_experts_ / p;
  DispatchPlan plan;
  plan.ep_size = p;
  plan.ep_rank = ep_rank_;
  plan.n_experts = n_experts_;
  plan.experts_per_rank = epr;
  plan.send_rows.assign(p, 0);
  plan.recv_rows.assign(p, 0);
  plan.local_expert_rows.assign(epr, 0);
  plan.segments.reserve(static_cast<size_t>(n_experts_));
  int64_t offset = 0;
  for (int s = 0; s < p; ++s) {
    for (int64_t l = 0; l < epr; ++l) {
      plan.send_rows[s] += counts_[s * epr + l];
      const int64_t rows = from_[s * epr + l];
      plan.recv_rows[s] += rows;
      plan.local_expert_rows[l] += rows;
      plan.segments.push_back({l, s, offset, rows});
      offset += rows;
    }
  }
  return plan;
}

DispatchPlan plan_dispatch(Comm& ep, std::span<const int64_t> counts, int64_t n_experts) {
  return post_dispatch_plan(ep, counts, n_experts).finish();
}

Work dispatch(Comm& ep, const DispatchPlan& plan, std::span<const float> send,
              std::span<float> recv, int64_t width) {
  check_buffers("dispatch", ep, plan, send.size(), recv.size(), width);
  AllToAllVOptions o;
  o.send_counts = times(plan.send_rows, width);
  o.recv_counts = times(plan.recv_rows, width);
  return ep.all_to_all_v<float>(send, recv, o);
}

Work combine(Comm& ep, const DispatchPlan& plan, std::span<const float> recv_layout,
             std::span<float> send_layout, int64_t width) {
  check_buffers("combine", ep, plan, send_layout.size(), recv_layout.size(), width);
  // The same blocks travel back: what I received from s returns to s, what I sent to j returns.
  AllToAllVOptions o;
  o.send_counts = times(plan.recv_rows, width);
  o.recv_counts = times(plan.send_rows, width);
  return ep.all_to_all_v<float>(recv_layout, send_layout, o);
}

Work dispatch_packed(Comm& ep, const DispatchPlan& plan, std::span<const uint32_t> send,
                     std::span<uint32_t> recv, int64_t words) {
  check_buffers("dispatch_packed", ep, plan, send.size(), recv.size(), words);
  AllToAllVOptions o;
  o.send_counts = times(plan.send_rows, words);
  o.recv_counts = times(plan.recv_rows, words);
  return ep.all_to_all_v<uint32_t>(send, recv, o);
}

Work combine_packed(Comm& ep, const DispatchPlan& plan, std::span<const uint32_t> recv_layout,
                    std::span<uint32_t> send_layout, int64_t words) {
  check_buffers("combine_packed", ep, plan, send_layout.size(), recv_layout.size(), words);
  AllToAllVOptions o;
  o.send_counts = times(plan.recv_rows, words);
  o.recv_counts = times(plan.send_rows, words);
  return ep.all_to_all_v<uint32_t>(recv_layout, send_layout, o);
}

}  // namespace tessera::parallel
