#include "parallel/node_dispatch.h"

#include <algorithm>
#include <bit>
#include <numeric>
#include <stdexcept>
#include <string>

namespace tessera::parallel {
namespace {

std::string where(const Comm& c) {
  return "on comm '" + c.name() + "' (rank " + std::to_string(c.rank()) + " of " +
         std::to_string(c.size()) + ")";
}

int64_t sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

std::vector<int64_t> times(const std::vector<int64_t>& rows, int64_t width) {
  std::vector<int64_t> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = rows[i] * width;
  return out;
}

// Throws unless `plan` was made on this group and both buffers hold rows x width elements.
void check(const char* op, const Comm& ep, const NodePlan& plan, size_t a_n, int64_t a_rows,
           size_t b_n, int64_t b_rows, int64_t width) {
  const std::string at = std::string(op) + " " + where(ep) + ": ";
  if (plan.geometry.ep_size != ep.size() || plan.geometry.ep_rank != ep.rank()) {
    throw std::invalid_argument(at + "the plan was made on rank " +
                                std::to_string(plan.geometry.ep_rank) + " of " +
                                std::to_string(plan.geometry.ep_size));
  }
  if (width < 1) throw std::invalid_argument(at + "width " + std::to_string(width) + " < 1");
  auto fits = [&](const char* name, size_t n, int64_t rows) {
    if (static_cast<int64_t>(n) != rows * width) {
      throw std::invalid_argument(at + name + " has " + std::to_string(n) + " elements, expected " +
                                  std::to_string(rows) + " rows x " + std::to_string(width));
    }
  };
  fits("the input", a_n, a_rows);
  fits("the output", b_n, b_rows);
}

template <typename T>
Work exchange(Comm& c, std::span<const T> in, std::span<T> out, const std::vector<int64_t>& send,
              const std::vector<int64_t>& recv, int64_t width) {
  AllToAllVOptions o;
  o.send_counts = times(send, width);
  o.recv_counts = times(recv, width);
  return c.all_to_all_v<T>(in, out, o);
}

}  // namespace

void check_node_geometry(const NodeGeometry& g, const char* at) {
  const std::string w = std::string(at) + ": node geometry: ";
  if (g.ep_size < 1 || g.ranks_per_node < 1 || g.ep_size % g.ranks_per_node != 0) {
    throw std::invalid_argument(w + "ranks_per_node " + std::to_string(g.ranks_per_node) +
                                " does not divide the EP size " + std::to_string(g.ep_size));
  }
  if (g.ep_rank < 0 || g.ep_rank >= g.ep_size) {
    throw std::invalid_argument(w + "ep_rank " + std::to_string(g.ep_rank) + " outside 0.." +
                                std::to_string(g.ep_size - 1));
  }
  if (g.n_experts < 1 || g.n_experts % g.ep_size != 0) {
    throw std::invalid_argument(w + "n_experts " + std::to_string(g.n_experts) +
                                " is not a positive multiple of the EP size " +
                                std::to_string(g.ep_size));
  }
  if (g.top_k < 1) throw std::invalid_argument(w + "top_k " + std::to_string(g.top_k) + " < 1");
}

EpNodeSpan ep_node_span(const RankGrid& grid, const std::vector<int>& ep_group) {
  // Runs of consecutive members on one node, in EP order.
  std::vector<int> run_node, run_len;
  for (int r : ep_group) {
    const int node = grid.node_of(r);
    if (run_node.empty() || run_node.back() != node) {
      run_node.push_back(node);
      run_len.push_back(0);
    }
    ++run_len.back();
  }
  std::vector<int> distinct = run_node;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EpNodeSpan span;
  span.nodes = static_cast<int>(distinct.size());
  span.ranks_per_node = run_len.empty() ? 0 : run_len.front();
  span.regular = distinct.size() == run_node.size();  // no node holds two runs
  for (int n : run_len) span.regular = span.regular && n == span.ranks_per_node;
  return span;
}

NodeSendPlan plan_node_send(const NodeGeometry& g, std::span<const int32_t> expert_idx,
                            std::span<const float> gates, int64_t tokens) {
  check_node_geometry(g, "plan_node_send");
  const int64_t K = g.top_k, E = g.n_experts;
  const int M = g.nodes();
  if (tokens < 0 || static_cast<int64_t>(expert_idx.size()) != tokens * K ||
      static_cast<int64_t>(gates.size()) != tokens * K) {
    throw std::invalid_argument("plan_node_send: expert_idx has " +
                                std::to_string(expert_idx.size()) + " and gates " +
                                std::to_string(gates.size()) + " entries, expected " +
                                std::to_string(tokens) + " tokens x top_k " + std::to_string(K));
  }
  NodeSendPlan p;
  p.expert_counts.assign(E, 0);
  p.rows_to_node.assign(M, 0);
  std::vector<uint8_t> needs(static_cast<size_t>(tokens * M), 0);  // (token, node)
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = expert_idx[t * K + j];
      if (e < 0 || e >= E) {
        throw std::invalid_argument("plan_node_send: token " + std::to_string(t) + " slot " +
                                    std::to_string(j) + " names expert " + std::to_string(e) +
                                    " outside 0.." + std::to_string(E - 1));
      }
      ++p.expert_counts[e];
      needs[t * M + g.node_of_expert(e)] = 1;
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    for (int n = 0; n < M; ++n) p.rows_to_node[n] += needs[t * M + n];
  }
  const int64_t S = sum(p.rows_to_node);
  p.token_of_row.reserve(S);
  p.row_of_token_node.assign(static_cast<size_t>(tokens * M), static_cast<int32_t>(S));
  p.entries.reserve(static_cast<size_t>(S * 2 * K));
  for (int n = 0; n < M; ++n) {
    for (int64_t t = 0; t < tokens; ++t) {
      if (!needs[t * M + n]) continue;
      p.row_of_token_node[t * M + n] = static_cast<int32_t>(p.token_of_row.size());
      p.token_of_row.push_back(static_cast<int32_t>(t));
      for (int64_t j = 0; j < K; ++j) {
        const int32_t e = expert_idx[t * K + j];
        p.entries.push_back(g.node_of_expert(e) == n ? e : -1);
      }
      for (int64_t j = 0; j < K; ++j) {
        const bool here = g.node_of_expert(expert_idx[t * K + j]) == n;
        p.entries.push_back(std::bit_cast<int32_t>(here ? gates[t * K + j] : 0.0f));
      }
    }
  }
  return p;
}

int64_t NodePlan::total_across_send() const { return sum(across_send_rows); }
int64_t NodePlan::total_across_recv() const { return sum(across_recv_rows); }
int64_t NodePlan::total_within_recv() const { return sum(within_recv_rows); }

PendingNodePlan post_node_plan(Comm& ep_host, const NodeGeometry& g, const NodeSendPlan& send) {
  const std::string at = "post_node_plan " + where(ep_host);
  check_node_geometry(g, at.c_str());
  if (g.ep_size != ep_host.size() || g.ep_rank != ep_host.rank()) {
    throw std::invalid_argument(at + ": the geometry says rank " + std::to_string(g.ep_rank) +
                                " of " + std::to_string(g.ep_size));
  }
  if (static_cast<int64_t>(send.expert_counts.size()) != g.n_experts ||
      static_cast<int>(send.rows_to_node.size()) != g.nodes()) {
    throw std::invalid_argument(at + ": the send plan was made for another geometry");
  }
  const int P = g.ep_size;
  const int64_t epr = g.experts_per_rank(), w = epr + 1;
  PendingNodePlan pending;
  pending.g_ = g;
  pending.rows_to_node_ = send.rows_to_node;
  pending.out_.assign(static_cast<size_t>(P * w), 0);
  pending.in_.assign(static_cast<size_t>(P * w), 0);
  for (int r = 0; r < P; ++r) {
    for (int64_t l = 0; l < epr; ++l) pending.out_[r * w + l] = send.expert_counts[r * epr + l];
    // Only a rail peer forwards my rows; the others hear 0.
    pending.out_[r * w + epr] =
        g.local_of(r) == g.local_of(g.ep_rank) ? send.rows_to_node[g.node_of(r)] : 0;
  }
  AllToAllVOptions o;
  o.send_counts.assign(P, w);
  o.recv_counts.assign(P, w);
  pending.work_ = ep_host.all_to_all_v<int64_t>(pending.out_, std::span<int64_t>(pending.in_), o);
  pending.posted_ = true;
  return pending;
}

NodePlan PendingNodePlan::finish() {
  if (!posted_) throw std::logic_error("PendingNodePlan::finish: nothing was posted");
  posted_ = false;
  work_.wait();
  const NodeGeometry& g = g_;
  const int P = g.ep_size, me = g.ep_rank;
  const int64_t epr = g.experts_per_rank(), w = epr + 1;
  NodePlan plan;
  plan.geometry = g;
  plan.across_send_rows.assign(P, 0);
  plan.across_recv_rows.assign(P, 0);
  plan.within_recv_rows.assign(P, 0);
  plan.local_expert_rows.assign(epr, 0);
  for (int r = 0; r < P; ++r) {
    if (g.local_of(r) == g.local_of(me)) plan.across_send_rows[r] = rows_to_node_[g.node_of(r)];
    plan.across_recv_rows[r] = in_[r * w + epr];
  }
  // Forwarder s (on my node) sends me, per local expert, what every origin of its rail routed to
  // that expert.
  plan.segments.reserve(static_cast<size_t>(P * epr));
  int64_t offset = 0;
  for (int s = 0; s < P; ++s) {
    for (int64_t l = 0; l < epr; ++l) {
      int64_t rows = 0;
      if (g.node_of(s) == g.node_of(me)) {
        for (int o = 0; o < P; ++o) {
          if (g.local_of(o) == g.local_of(s)) rows += in_[o * w + l];
        }
      }
      plan.within_recv_rows[s] += rows;
      plan.local_expert_rows[l] += rows;
      plan.segments.push_back({l, s, offset, rows});
      offset += rows;
    }
  }
  return plan;
}

NodeForwardPlan plan_node_forward(const NodePlan& plan, std::span<const int32_t> entries) {
  const NodeGeometry& g = plan.geometry;
  const int64_t K = g.top_k, R = plan.total_across_recv();
  const std::string at = "plan_node_forward (EP rank " + std::to_string(g.ep_rank) + "): ";
  if (static_cast<int64_t>(entries.size()) != R * 2 * K) {
    throw std::invalid_argument(at + "the route entries have " + std::to_string(entries.size()) +
                                " values, expected " + std::to_string(R) + " rows x 2 x top_k " +
                                std::to_string(K));
  }
  const int node = g.node_of(g.ep_rank);
  const int64_t per_node = g.n_experts / g.nodes(), first = node * per_node;
  // Counting sort of the (row, slot) entries by expert, stable in the row: the owners' layout
  // (owner-major, then local expert) is expert order inside the node.
  std::vector<int64_t> start(static_cast<size_t>(per_node) + 1, 0);
  for (int64_t i = 0; i < R * K; ++i) {
    const int32_t e = entries[(i / K) * 2 * K + i % K];
    if (e < 0) continue;
    if (e < first || e >= first + per_node) {
      throw std::invalid_argument(at + "row " + std::to_string(i / K) + " names expert " +
                                  std::to_string(e) + ", not on node " + std::to_string(node));
    }
    ++start[e - first + 1];
  }
  std::partial_sum(start.begin(), start.end(), start.begin());
  const int64_t T = start.back();
  NodeForwardPlan f;
  f.send_rows.assign(g.ep_size, 0);
  f.row_of_pos.assign(static_cast<size_t>(T), 0);
  f.pos_of_entry.assign(static_cast<size_t>(R * K), static_cast<int32_t>(T));
  f.gates.assign(static_cast<size_t>(R * K), 0.0f);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = entries[r * 2 * K + j];
      if (e < 0) continue;
      const int64_t pos = next[e - first]++;
      f.row_of_pos[pos] = static_cast<int32_t>(r);
      f.pos_of_entry[r * K + j] = static_cast<int32_t>(pos);
      f.gates[r * K + j] = std::bit_cast<float>(entries[r * 2 * K + K + j]);
      ++f.send_rows[g.owner_of(e)];
    }
  }
  return f;
}

Work dispatch_across(Comm& ep, const NodePlan& plan, std::span<const float> send,
                     std::span<float> recv, int64_t width) {
  check("dispatch_across", ep, plan, send.size(), plan.total_across_send(), recv.size(),
        plan.total_across_recv(), width);
  return exchange<float>(ep, send, recv, plan.across_send_rows, plan.across_recv_rows, width);
}

Work combine_across(Comm& ep, const NodePlan& plan, std::span<const float> recv_layout,
                    std::span<float> send_layout, int64_t width) {
  check("combine_across", ep, plan, recv_layout.size(), plan.total_across_recv(),
        send_layout.size(), plan.total_across_send(), width);
  return exchange<float>(ep, recv_layout, send_layout, plan.across_recv_rows,
                         plan.across_send_rows, width);
}

Work dispatch_route_entries(Comm& ep_host, const NodePlan& plan, std::span<const int32_t> send,
                            std::span<int32_t> recv) {
  const int64_t w = 2 * plan.geometry.top_k;
  check("dispatch_route_entries", ep_host, plan, send.size(), plan.total_across_send(),
        recv.size(), plan.total_across_recv(), w);
  return exchange<int32_t>(ep_host, send, recv, plan.across_send_rows, plan.across_recv_rows, w);
}

Work return_gate_grads(Comm& ep_host, const NodePlan& plan, std::span<const float> recv_layout,
                       std::span<float> send_layout) {
  const int64_t w = plan.geometry.top_k;
  check("return_gate_grads", ep_host, plan, recv_layout.size(), plan.total_across_recv(),
        send_layout.size(), plan.total_across_send(), w);
  return exchange<float>(ep_host, recv_layout, send_layout, plan.across_recv_rows,
                         plan.across_send_rows, w);
}

Work dispatch_within(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                     std::span<const float> send, std::span<float> recv, int64_t width) {
  check("dispatch_within", ep, plan, send.size(), forward.total_send_rows(), recv.size(),
        plan.total_within_recv(), width);
  return exchange<float>(ep, send, recv, forward.send_rows, plan.within_recv_rows, width);
}

Work combine_within(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                    std::span<const float> expert_layout, std::span<float> forward_layout,
                    int64_t width) {
  check("combine_within", ep, plan, expert_layout.size(), plan.total_within_recv(),
        forward_layout.size(), forward.total_send_rows(), width);
  return exchange<float>(ep, expert_layout, forward_layout, plan.within_recv_rows,
                         forward.send_rows, width);
}

Work dispatch_across_packed(Comm& ep, const NodePlan& plan, std::span<const uint32_t> send,
                            std::span<uint32_t> recv, int64_t words) {
  check("dispatch_across_packed", ep, plan, send.size(), plan.total_across_send(), recv.size(),
        plan.total_across_recv(), words);
  return exchange<uint32_t>(ep, send, recv, plan.across_send_rows, plan.across_recv_rows, words);
}

Work dispatch_within_packed(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                            std::span<const uint32_t> send, std::span<uint32_t> recv,
                            int64_t words) {
  check("dispatch_within_packed", ep, plan, send.size(), forward.total_send_rows(), recv.size(),
        plan.total_within_recv(), words);
  return exchange<uint32_t>(ep, send, recv, forward.send_rows, plan.within_recv_rows, words);
}

Work combine_within_packed(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                           std::span<const uint32_t> expert_layout,
                           std::span<uint32_t> forward_layout, int64_t words) {
  check("combine_within_packed", ep, plan, expert_layout.size(), plan.total_within_recv(),
        forward_layout.size(), forward.total_send_rows(), words);
  return exchange<uint32_t>(ep, expert_layout, forward_layout, plan.within_recv_rows,
                            forward.send_rows, words);
}

int64_t off_node(std::span<const int64_t> per_rank, int ep_rank, int ranks_per_node) {
  int64_t n = 0;
  for (size_t r = 0; r < per_rank.size(); ++r) {
    if (static_cast<int>(r) / ranks_per_node != ep_rank / ranks_per_node) n += per_rank[r];
  }
  return n;
}

}  // namespace tessera::parallel
