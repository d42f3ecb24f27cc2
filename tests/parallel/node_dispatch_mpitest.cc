// Node-aware expert dispatch/combine under mpirun (parallel/node_dispatch.h), the EP group = the
// world, nodes forced by the geometry (np=4: 2 nodes x 2, 1 x 4, 4 x 1; np=2: 2 x 1, 1 x 2).
// Routing is the real V3 router on random logits with node-limited groups (n_group = nodes).
// Experts are scalings y = a_e x, so every result has a closed form each rank computes alone:
//   placement   every owner's segment holds exactly its rail's tokens for that expert, in order;
//   identity    a_e = 1: dispatch then gated combine gives x back (gates sum to 1);
//   adjoint     <dispatch x, u> = <x, dispatch^T u> over all ranks (dispatch^T = the backward's
//               unweighted combine), and likewise for the gated combine and its backward;
//   gate grads  the returned <dy, expert output> per slot;
//   flat        equals the flat all_to_all_v path (expert_dispatch.h) up to summation order;
//   node bound  no token reaches more than topk_group nodes, and some token reaches that many;
//   bytes       rows sent off-node (forward + backward) <= the flat path's, and strictly fewer
//               (also counting the route entries, gate grads and counts) when tokens pick
//               several experts on one node.
// Usage: mpirun -np K node_dispatch_mpitest. Every rank runs every check; rank 0 prints totals.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/router.h"
#include "parallel/expert_dispatch.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "parallel/node_dispatch.h"
#include "tests/parallel/mpi_test_harness.h"

namespace tessera::parallel {
namespace {

struct Case {
  int ranks_per_node;  // L
  int64_t n_experts, top_k, topk_group, tokens, width;
  uint64_t seed;
  std::string name(int p) const {
    return "P=" + std::to_string(p) + " (" + std::to_string(p / ranks_per_node) + " nodes x " +
           std::to_string(ranks_per_node) + ") E=" + std::to_string(n_experts) +
           " k=" + std::to_string(top_k) + " topk_group=" + std::to_string(topk_group) +
           " N=" + std::to_string(tokens) + " D=" + std::to_string(width);
  }
};

struct Routing {
  std::vector<int32_t> idx;  // (N, K)
  std::vector<float> gates;  // (N, K)
};

// Origin `rank`'s routing: the router on seeded logits, groups = nodes.
Routing route(const Case& c, int nodes, int rank) {
  std::mt19937_64 rng(c.seed * 1000003 + rank);
  std::normal_distribution<float> normal;
  const int64_t N = c.tokens, E = c.n_experts, K = c.top_k;
  std::vector<float> logits(N * E), bias(E, 0.0f), scores(N * E);
  for (float& v : logits) v = normal(rng);
  kernels::RouterShape shape{E, K, nodes, c.topk_group, 1.0};
  Routing r;
  r.idx.resize(N * K);
  r.gates.resize(N * K);
  kernels::router_forward<float>(scores.data(), r.idx.data(), r.gates.data(), logits.data(),
                                 bias.data(), N, shape);
  return r;
}

// Row values: column 0 names (origin, token) exactly; the rest are pseudo-random.
float x_value(int origin, int64_t t, int64_t col, int64_t N) {
  if (col == 0) return static_cast<float>(origin * N + t);
  return static_cast<float>(std::sin(0.37 * (origin * N + t) + 1.3 * col));
}
float scale_of(int64_t expert) { return 1.0f + 0.125f * static_cast<float>(expert); }

double rel(double a, double b) { return std::abs(a - b) / std::max(1e-30, std::abs(b)); }

struct Checker {
  std::string failure;
  int count = 0;
  void fail(const std::string& what) {
    if (count++ < 6) failure += (failure.empty() ? "" : "; ") + what;
  }
};

double world_sum(Comm& c, double v) {
  c.all_reduce(std::span<double>(&v, 1)).wait();
  return v;
}

// One node-aware forward (gated, experts y = a_e x, or identity) and backward, every check.
std::string check_case(Comm& ep, const Case& c) {
  const int P = ep.size(), me = ep.rank();
  const NodeGeometry g{P, me, c.ranks_per_node, c.n_experts, c.top_k};
  const int M = g.nodes();
  const int64_t N = c.tokens, K = c.top_k, D = c.width, epr = g.experts_per_rank();
  Checker m;
  std::vector<Routing> all;
  for (int o = 0; o < P; ++o) all.push_back(route(c, M, o));
  const Routing& mine = all[me];
  std::vector<float> x(N * D);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t col = 0; col < D; ++col) x[t * D + col] = x_value(me, t, col, N);
  }

  // ---- forward: dispatch across, route entries, forward within the node.
  const NodeSendPlan send = plan_node_send(g, mine.idx, mine.gates, N);
  const NodePlan plan = post_node_plan(ep, g, send).finish();
  const int64_t S = plan.total_across_send(), R = plan.total_across_recv();
  std::vector<float> xs1(S * D), xr1(R * D);
  for (int64_t r = 0; r < S; ++r) {
    std::copy_n(&x[send.token_of_row[r] * D], D, &xs1[r * D]);
  }
  std::vector<int32_t> entries(R * 2 * K);
  Work rows = dispatch_across(ep, plan, xs1, xr1, D);
  Work routes = dispatch_route_entries(ep, plan, send.entries, entries);
  rows.wait();
  routes.wait();
  // Node bound: count at the forwarders which (origin, token) arrived where.
  std::vector<double> nodes_of_token(static_cast<size_t>(P * N), 0.0);
  for (int64_t r = 0; r < R; ++r) nodes_of_token[static_cast<int64_t>(xr1[r * D])] += 1;
  ep.all_reduce(std::span<double>(nodes_of_token)).wait();
  const double most = *std::max_element(nodes_of_token.begin(), nodes_of_token.end());
  const double least = *std::min_element(nodes_of_token.begin(), nodes_of_token.end());
  if (most > static_cast<double>(c.topk_group)) {
    m.fail("a token reached " + std::to_string(most) + " nodes > topk_group");
  }
  if (most != static_cast<double>(std::min<int64_t>(c.topk_group, K))) {
    m.fail("no token reached min(topk_group, k) nodes (most " + std::to_string(most) + ")");
  }
  if (least < 1) m.fail("a token reached no node");

  const NodeForwardPlan fwd = plan_node_forward(plan, entries);
  const int64_t T = fwd.total_send_rows(), X = plan.total_within_recv();
  std::vector<float> xs2(T * D), xe(X * D);
  for (int64_t p = 0; p < T; ++p) std::copy_n(&xr1[fwd.row_of_pos[p] * D], D, &xs2[p * D]);
  dispatch_within(ep, plan, fwd, xs2, xe, D).wait();

  // Placement: segment (forwarder s, local expert l) = its rail's (origin, token) pairs routed to
  // my expert l, origins ascending, tokens ascending.
  for (const ExpertSegment& seg : plan.segments) {
    const int64_t e = me * epr + seg.local_expert;
    std::vector<float> want;
    for (int o = 0; o < P; ++o) {
      if (g.local_of(o) != g.local_of(seg.source) || g.node_of(seg.source) != g.node_of(me)) {
        continue;
      }
      for (int64_t t = 0; t < N; ++t) {
        for (int64_t j = 0; j < K; ++j) {
          if (all[o].idx[t * K + j] == e) want.push_back(static_cast<float>(o * N + t));
        }
      }
    }
    if (static_cast<int64_t>(want.size()) != seg.rows) {
      m.fail("segment (source " + std::to_string(seg.source) + ", expert " + std::to_string(e) +
             ") has " + std::to_string(seg.rows) + " rows, expected " +
             std::to_string(want.size()));
      continue;
    }
    for (int64_t i = 0; i < seg.rows; ++i) {
      const int64_t row = seg.offset + i;
      const int o = static_cast<int>(want[i]) / static_cast<int>(N);
      const int64_t t = static_cast<int64_t>(want[i]) % N;
      for (int64_t col = 0; col < D; ++col) {
        if (xe[row * D + col] != x_value(o, t, col, N)) {
          m.fail("expert " + std::to_string(e) + " row " + std::to_string(row) + " col " +
                 std::to_string(col) + " is " + std::to_string(xe[row * D + col]));
          break;
        }
      }
    }
  }

  // Experts: y = a_e x (identity when `scaled` is false); expert of each owner row from segments.
  std::vector<int64_t> expert_of_row(X);
  for (const ExpertSegment& seg : plan.segments) {
    for (int64_t i = 0; i < seg.rows; ++i)
      expert_of_row[seg.offset + i] = me * epr + seg.local_expert;
  }
  // Gated combine: within, gated sum at the forwarder, across, sum over nodes at the origin.
  auto combine_gated = [&](const std::vector<float>& ye) {
    std::vector<float> ys2(T * D), yr1(R * D, 0.0f), ys1(S * D), y(N * D, 0.0f);
    combine_within(ep, plan, fwd, ye, ys2, D).wait();
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t j = 0; j < K; ++j) {
        const int32_t p = fwd.pos_of_entry[r * K + j];
        if (p == T) continue;
        for (int64_t col = 0; col < D; ++col)
          yr1[r * D + col] += fwd.gates[r * K + j] * ys2[p * D + col];
      }
    }
    combine_across(ep, plan, yr1, ys1, D).wait();
    for (int64_t t = 0; t < N; ++t) {
      for (int n = 0; n < M; ++n) {
        const int32_t r = send.row_of_token_node[t * M + n];
        if (r == S) continue;
        for (int64_t col = 0; col < D; ++col) y[t * D + col] += ys1[r * D + col];
      }
    }
    return y;
  };
  auto expert_apply = [&](const std::vector<float>& in, bool scaled) {
    std::vector<float> out(in.size());
    for (int64_t r = 0; r < X; ++r) {
      const float a = scaled ? scale_of(expert_of_row[r]) : 1.0f;
      for (int64_t col = 0; col < D; ++col) out[r * D + col] = a * in[r * D + col];
    }
    return out;
  };

  // Identity: a_e = 1, gates sum to 1.
  const std::vector<float> y_id = combine_gated(expert_apply(xe, false));
  for (int64_t i = 0; i < N * D; ++i) {
    if (std::abs(y_id[i] - x[i]) > 1e-5f * std::max(1.0f, std::abs(x[i]))) {
      m.fail("identity: y[" + std::to_string(i) + "] = " + std::to_string(y_id[i]) + " vs x " +
             std::to_string(x[i]));
      break;
    }
  }
  // Scaled experts: y[t] = sum_j g_j a_{e_j} x[t] in closed form.
  const std::vector<float> ye = expert_apply(xe, true);
  const std::vector<float> y = combine_gated(ye);
  for (int64_t t = 0; t < N; ++t) {
    double s = 0;
    for (int64_t j = 0; j < K; ++j) s += mine.gates[t * K + j] * scale_of(mine.idx[t * K + j]);
    for (int64_t col = 0; col < D; ++col) {
      if (rel(y[t * D + col], s * x[t * D + col]) > 1e-5 && std::abs(x[t * D + col]) > 1e-3) {
        m.fail("scaled experts: token " + std::to_string(t) + " col " + std::to_string(col));
        t = N;
        break;
      }
    }
  }

  // ---- backward: dy across, gate * dy and gate grads at the forwarder, within; then the input
  // gradients' unweighted combine.
  std::vector<float> dy(N * D);
  for (int64_t i = 0; i < N * D; ++i) dy[i] = static_cast<float>(std::cos(0.11 * i + me));
  std::vector<float> dys1(S * D), dyr1(R * D), dys2(T * D), dye(X * D), dg_rows(R * K, 0.0f),
      dg_back(S * K);
  for (int64_t r = 0; r < S; ++r) std::copy_n(&dy[send.token_of_row[r] * D], D, &dys1[r * D]);
  dispatch_across(ep, plan, dys1, dyr1, D).wait();
  std::vector<float> ys2(T * D);
  combine_within(ep, plan, fwd, ye, ys2, D).wait();  // the forward's outputs, as kept
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t p = fwd.pos_of_entry[r * K + j];
      if (p == T) continue;
      double dot = 0;
      for (int64_t col = 0; col < D; ++col) {
        dys2[p * D + col] = fwd.gates[r * K + j] * dyr1[r * D + col];
        dot += double{dyr1[r * D + col]} * ys2[p * D + col];
      }
      dg_rows[r * K + j] = static_cast<float>(dot);
    }
  }
  Work dg = return_gate_grads(ep, plan, dg_rows, dg_back);
  dispatch_within(ep, plan, fwd, dys2, dye, D).wait();
  dg.wait();
  // Gate grads: <dy[t], a_e x[t]>.
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = mine.idx[t * K + j];
      const int32_t r = send.row_of_token_node[t * M + g.node_of_expert(e)];
      double want = 0;
      for (int64_t col = 0; col < D; ++col)
        want += double{dy[t * D + col]} * scale_of(e) * x[t * D + col];
      if (std::abs(dg_back[r * K + j] - want) > 1e-4 * std::max(1.0, std::abs(want))) {
        m.fail("gate grad token " + std::to_string(t) + " slot " + std::to_string(j) + ": " +
               std::to_string(dg_back[r * K + j]) + " vs " + std::to_string(want));
      }
    }
  }
  // Adjoint of the gated combine: <C_g ye, dy> = <ye, C_g^T dy> = <ye, dye>.
  double lhs = 0, rhs = 0;
  for (int64_t i = 0; i < N * D; ++i) lhs += double{y[i]} * dy[i];
  for (int64_t i = 0; i < X * D; ++i) rhs += double{ye[i]} * dye[i];
  lhs = world_sum(ep, lhs), rhs = world_sum(ep, rhs);
  if (rel(lhs, rhs) > 1e-5)
    m.fail("combine adjoint " + std::to_string(lhs) + " vs " + std::to_string(rhs));

  // Adjoint of dispatch: <D x, u> = <x, D^T u>, D^T = within back, plain sum, across back, sum.
  std::vector<float> u(X * D);
  for (int64_t i = 0; i < X * D; ++i) u[i] = static_cast<float>(std::sin(0.7 * i + 3 * me));
  std::vector<float> us2(T * D), ur1(R * D, 0.0f), us1(S * D), dx(N * D, 0.0f);
  combine_within(ep, plan, fwd, u, us2, D).wait();
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t p = fwd.pos_of_entry[r * K + j];
      if (p == T) continue;
      for (int64_t col = 0; col < D; ++col) ur1[r * D + col] += us2[p * D + col];
    }
  }
  combine_across(ep, plan, ur1, us1, D).wait();
  for (int64_t t = 0; t < N; ++t) {
    for (int n = 0; n < M; ++n) {
      const int32_t r = send.row_of_token_node[t * M + n];
      if (r == S) continue;
      for (int64_t col = 0; col < D; ++col) dx[t * D + col] += us1[r * D + col];
    }
  }
  lhs = rhs = 0;
  for (int64_t i = 0; i < X * D; ++i) lhs += double{xe[i]} * u[i];
  for (int64_t i = 0; i < N * D; ++i) rhs += double{x[i]} * dx[i];
  lhs = world_sum(ep, lhs), rhs = world_sum(ep, rhs);
  if (rel(lhs, rhs) > 1e-5)
    m.fail("dispatch adjoint " + std::to_string(lhs) + " vs " + std::to_string(rhs));

  // ---- the flat path on the same routing: expert-major rows, one all_to_all_v each way.
  std::vector<int64_t> counts(c.n_experts, 0);
  for (int32_t e : mine.idx) ++counts[e];
  const DispatchPlan flat = plan_dispatch(ep, counts, c.n_experts);
  std::vector<int64_t> first(c.n_experts + 1, 0);
  for (int64_t e = 0; e < c.n_experts; ++e) first[e + 1] = first[e] + counts[e];
  std::vector<int64_t> pos_of_slot(N * K), next(first.begin(), first.end() - 1);
  std::vector<float> xp(N * K * D), xf(flat.total_recv_rows() * D);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      const int64_t p = next[mine.idx[t * K + j]]++;
      pos_of_slot[t * K + j] = p;
      std::copy_n(&x[t * D], D, &xp[p * D]);
    }
  }
  dispatch(ep, flat, xp, xf, D).wait();
  std::vector<float> yf_rows(xf.size()), yp(N * K * D), y_flat(N * D, 0.0f);
  for (const ExpertSegment& seg : flat.segments) {
    for (int64_t i = seg.offset; i < seg.offset + seg.rows; ++i) {
      for (int64_t col = 0; col < D; ++col) {
        yf_rows[i * D + col] = scale_of(me * epr + seg.local_expert) * xf[i * D + col];
      }
    }
  }
  combine(ep, flat, yf_rows, yp, D).wait();
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      for (int64_t col = 0; col < D; ++col) {
        y_flat[t * D + col] += mine.gates[t * K + j] * yp[pos_of_slot[t * K + j] * D + col];
      }
    }
  }
  for (int64_t i = 0; i < N * D; ++i) {
    if (std::abs(y[i] - y_flat[i]) > 1e-5f * std::max(1.0f, std::abs(y_flat[i]))) {
      m.fail("node-aware y[" + std::to_string(i) + "] = " + std::to_string(y[i]) + " vs flat " +
             std::to_string(y_flat[i]));
      break;
    }
  }

  // ---- bytes sent off the node, forward + backward (rows twice each way), all ranks.
  const int L = c.ranks_per_node;
  const double row_bytes = 4.0 * D;
  const double node_rows =
      2 * row_bytes *
      (off_node(plan.across_send_rows, me, L) + off_node(plan.across_recv_rows, me, L));
  const double flat_rows =
      2 * row_bytes * (off_node(flat.send_rows, me, L) + off_node(flat.recv_rows, me, L));
  const double node_meta = (8.0 * K) * off_node(plan.across_send_rows, me, L) +
                           (4.0 * K) * off_node(plan.across_recv_rows, me, L) +
                           8.0 * (epr + 1) * (P - L);
  const double flat_meta = 8.0 * epr * (P - L);
  bool several_on_one_node = false;
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      for (int64_t k = j + 1; k < K; ++k) {
        several_on_one_node = several_on_one_node || g.node_of_expert(mine.idx[t * K + j]) ==
                                                         g.node_of_expert(mine.idx[t * K + k]);
      }
    }
  }
  const double nr = world_sum(ep, node_rows), fr = world_sum(ep, flat_rows);
  const double nt = nr + world_sum(ep, node_meta), ft = fr + world_sum(ep, flat_meta);
  const bool strict = world_sum(ep, several_on_one_node ? 1.0 : 0.0) > 0 && M > 1;
  if (me == 0) {
    std::printf(
        "    off-node bytes per forward+backward: rows %.0f node-aware vs %.0f flat; "
        "with counts/routes/gate grads %.0f vs %.0f\n",
        nr, fr, nt, ft);
  }
  if (nr > fr) m.fail("node-aware rows cross more bytes than flat");
  if (strict && !(nr < fr)) m.fail("several experts on one node but no fewer row bytes");
  if (strict && D >= 64 && !(nt < ft)) m.fail("several experts on one node but no fewer bytes");
  if (M == 1 && nr != 0) m.fail("one node but bytes crossed nodes");
  return m.failure;
}

int run(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  MpiCommOptions options;
  options.timeout_s = 60;  // a hang fails the test instead of stalling ctest
  auto world = MpiComm::world(options);
  MpiTestHarness h(world->rank());
  const int P = world->size();
  std::vector<Case> cases;
  for (int L : {1, 2, 4}) {
    if (P % L != 0) continue;
    const int M = P / L;
    // k=2 inside one node (topk_group 1), k=3 over min(2, M) nodes, a wide one.
    cases.push_back({L, 8, 2, 1, 24, 16, 11});
    cases.push_back({L, 8, 3, std::min(2, M), 20, 8, 13});
    if (M > 1) cases.push_back({L, 16, 4, 2, 40, 64, 17});
  }
  for (const Case& c : cases) {
    if (c.n_experts % P != 0 || c.n_experts / (P / c.ranks_per_node) < 2) continue;
    h.run(c.name(P), [&] { return check_case(*world, c); });
  }
  const int rc = h.finish();
  world.reset();  // before MPI_Finalize
  return rc;
}

}  // namespace
}  // namespace tessera::parallel

int main(int argc, char** argv) { return tessera::parallel::run(argc, argv); }
