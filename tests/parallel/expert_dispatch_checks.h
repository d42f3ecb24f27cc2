// Backend-independent checks of expert dispatch/combine, shared by the fake-comm unit tests
// (expert_dispatch_test.cc) and the MPI test run under mpirun (expert_dispatch_mpitest.cc).
//
// Every rank of an EP group calls the same check; it returns "" if this rank saw exactly the
// expected values, else a description of the first mismatches. Counts are a deterministic
// function of (seed, source rank, expert), so each rank can recompute what every peer sent.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "parallel/expert_dispatch.h"
#include "parallel/rank_grid.h"
#include "tests/parallel/comm_test_checks.h"

namespace tessera::parallel::testing {

// Which rows the ranks route.
enum class RoutePattern {
  kMixed,       // pseudo-random 0..kMaxRows-1, plus: global expert 0 receives nothing, and
                // (P > 1) rank 0 sends nothing to rank P-1
  kSilentRank,  // as kMixed, but rank P-1 sends nothing at all
  kEmpty,       // nobody sends anything
};

inline const char* route_pattern_name(RoutePattern p) {
  switch (p) {
    case RoutePattern::kMixed:
      return "mixed";
    case RoutePattern::kSilentRank:
      return "silent rank";
    case RoutePattern::kEmpty:
      return "empty";
  }
  return "?";
}

// Row values pack (source, expert, row, column) into 24 bits, exact in a float.
inline constexpr int kMaxSources = 16, kMaxExperts = 64, kMaxRows = 64, kMaxWidth = 256;

inline float row_value(int source, int64_t expert, int64_t row, int64_t col) {
  return static_cast<float>(
      (((static_cast<int64_t>(source) * kMaxExperts + expert) * kMaxRows + row) * kMaxWidth) + col);
}

// Rows that EP rank `source` routes to global expert e.
inline int64_t route_count(RoutePattern pattern, uint64_t seed, int source, int64_t e, int p,
                           int64_t n_experts) {
  if (pattern == RoutePattern::kEmpty) return 0;
  const int64_t owner = e / (n_experts / p);
  if (e == 0) return 0;
  if (p > 1 && source == 0 && owner == p - 1) return 0;
  if (pattern == RoutePattern::kSilentRank && p > 1 && source == p - 1) return 0;
  uint64_t h = seed * 0x9E3779B97F4A7C15ull +
               static_cast<uint64_t>(source) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(e) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 29;
  return static_cast<int64_t>(h % 7 == 0 ? 0 : h % kMaxRows);  // some zeros besides the forced
}

inline std::vector<int64_t> route_counts(RoutePattern pattern, uint64_t seed, int source, int p,
                                         int64_t n_experts) {
  std::vector<int64_t> counts(static_cast<size_t>(n_experts));
  for (int64_t e = 0; e < n_experts; ++e) {
    counts[e] = route_count(pattern, seed, source, e, p, n_experts);
  }
  return counts;
}

// The expert-major send buffer of `source`.
inline std::vector<float> routed_rows(const std::vector<int64_t>& counts, int source,
                                      int64_t width) {
  std::vector<float> rows;
  for (int64_t e = 0; e < static_cast<int64_t>(counts.size()); ++e) {
    for (int64_t r = 0; r < counts[e]; ++r) {
      for (int64_t c = 0; c < width; ++c) rows.push_back(row_value(source, e, r, c));
    }
  }
  return rows;
}

// The EP group of world's rank in a layout world = dp, pp = 1 (RankGrid's expert groups).
inline std::unique_ptr<Comm> split_ep(Comm& world, int ep) {
  RankGrid grid(LayoutSpec{.world = world.size(), .pp = 1, .dp = world.size(), .ep = ep});
  return world.split(grid.ep_group(world.rank()), "ep");
}

inline std::string dispatch_label(const Comm& ep, const char* what, RoutePattern pattern,
                                  int64_t n_experts, int64_t width) {
  return label(ep, std::string(what) + " (" + route_pattern_name(pattern) + ", E=" +
                       std::to_string(n_experts) + ", width=" + std::to_string(width) + ")");
}

// The plan against counts recomputed here; after dispatch every row is where its segment says,
// from that source, for that local expert, in the source's order; combine brings every row back.
inline std::string check_dispatch_placement(Comm& ep, int64_t n_experts, int64_t width,
                                            RoutePattern pattern, uint64_t seed) {
  const int p = ep.size(), me = ep.rank();
  Mismatches m(dispatch_label(ep, "dispatch placement", pattern, n_experts, width));
  if (p > kMaxSources || n_experts > kMaxExperts || width > kMaxWidth) {
    m.fail("test sizes exceed the row-value encoding");
    return m.result();
  }
  const std::vector<int64_t> counts = route_counts(pattern, seed, me, p, n_experts);
  const std::vector<float> send = routed_rows(counts, me, width);
  const DispatchPlan plan = plan_dispatch(ep, counts, n_experts);
  const int64_t epr = n_experts / p;

  // The plan.
  if (plan.ep_size != p || plan.ep_rank != me || plan.n_experts != n_experts ||
      plan.experts_per_rank != epr) {
    m.fail("plan header (" + std::to_string(plan.ep_size) + ", " + std::to_string(plan.ep_rank) +
           ", " + std::to_string(plan.n_experts) + ", " + std::to_string(plan.experts_per_rank) +
           ")");
  }
  if (static_cast<int>(plan.send_rows.size()) != p ||
      static_cast<int>(plan.recv_rows.size()) != p ||
      static_cast<int64_t>(plan.segments.size()) != p * epr ||
      static_cast<int64_t>(plan.local_expert_rows.size()) != epr) {
    m.fail("plan vector sizes");
    return m.result();
  }
  std::vector<int64_t> local_rows(epr, 0);
  int64_t offset = 0;
  for (int s = 0; s < p; ++s) {
    const std::vector<int64_t> theirs = route_counts(pattern, seed, s, p, n_experts);
    int64_t to_s = 0, from_s = 0;
    for (int64_t l = 0; l < epr; ++l) {
      to_s += counts[s * epr + l];
      const int64_t rows = theirs[me * epr + l];
      from_s += rows;
      local_rows[l] += rows;
      const ExpertSegment want{l, s, offset, rows};
      const ExpertSegment& got = plan.segments[s * epr + l];
      if (!(got == want)) {
        m.fail("segment " + std::to_string(s * epr + l) + " = {" +
               std::to_string(got.local_expert) + ", " + std::to_string(got.source) + ", " +
               std::to_string(got.offset) + ", " + std::to_string(got.rows) + "}, expected {" +
               std::to_string(l) + ", " + std::to_string(s) + ", " + std::to_string(offset) + ", " +
               std::to_string(rows) + "}");
      }
      offset += rows;
    }
    m.expect("send_rows", s, plan.send_rows[s], to_s);
    m.expect("recv_rows", s, plan.recv_rows[s], from_s);
  }
  for (int64_t l = 0; l < epr; ++l)
    m.expect("local_expert_rows", l, plan.local_expert_rows[l], local_rows[l]);
  m.expect("total_recv_rows", 0, plan.total_recv_rows(), offset);
  m.expect("total_send_rows", 0, plan.total_send_rows(), static_cast<int64_t>(send.size()) / width);
  if (!m.result().empty()) return m.result();

  // The rows, after dispatch.
  std::vector<float> recv(static_cast<size_t>(plan.total_recv_rows() * width), -1.0f);
  dispatch(ep, plan, send, std::span<float>(recv), width).wait();
  for (const ExpertSegment& seg : plan.segments) {
    const int64_t expert = me * epr + seg.local_expert;
    for (int64_t r = 0; r < seg.rows; ++r) {
      for (int64_t c = 0; c < width; ++c) {
        const int64_t i = (seg.offset + r) * width + c;
        m.expect("recv", i, recv[i], row_value(seg.source, expert, r, c));
      }
    }
  }

  // Back home.
  std::vector<float> back(send.size(), -1.0f);
  combine(ep, plan, recv, std::span<float>(back), width).wait();
  for (size_t i = 0; i < send.size(); ++i)
    m.expect("combined", static_cast<int64_t>(i), back[i], send[i]);
  return m.result();
}

// The adjoint test: with dispatch as the linear map M, <M x, y> == <x, M^T y> summed over the
// group, where M^T is combine. Values are multiples of 1/512 in [-1, 1], so both sides are exact
// in double whatever the summation order and must agree bitwise.
inline std::string check_dispatch_adjoint(Comm& ep, int64_t n_experts, int64_t width,
                                          RoutePattern pattern, uint64_t seed) {
  const int p = ep.size(), me = ep.rank();
  Mismatches m(dispatch_label(ep, "dispatch adjoint", pattern, n_experts, width));
  const std::vector<int64_t> counts = route_counts(pattern, seed, me, p, n_experts);
  const DispatchPlan plan = plan_dispatch(ep, counts, n_experts);
  std::mt19937_64 gen(seed * 1000003 + static_cast<uint64_t>(me));
  std::uniform_int_distribution<int> dist(-512, 512);
  auto random_rows = [&](int64_t rows) {
    std::vector<float> v(static_cast<size_t>(rows * width));
    for (float& f : v) f = static_cast<float>(dist(gen)) / 512.0f;
    return v;
  };
  const std::vector<float> x = random_rows(plan.total_send_rows());
  const std::vector<float> y = random_rows(plan.total_recv_rows());
  std::vector<float> mx(y.size()), mty(x.size());
  Work w1 = dispatch(ep, plan, x, std::span<float>(mx), width);
  Work w2 = combine(ep, plan, y, std::span<float>(mty), width);  // both in flight at once
  w1.wait();
  w2.wait();
  std::vector<double> dots(2, 0.0);
  for (size_t i = 0; i < y.size(); ++i) dots[0] += static_cast<double>(mx[i]) * y[i];
  for (size_t i = 0; i < x.size(); ++i) dots[1] += static_cast<double>(x[i]) * mty[i];
  ep.all_reduce(std::span<double>(dots)).wait();
  if (dots[0] != dots[1]) {
    m.fail("<M x, y> = " + std::to_string(dots[0]) +
           " but <x, M^T y> = " + std::to_string(dots[1]));
  }
  if (plan.total_send_rows() > 0 && dots[0] == 0.0 && pattern != RoutePattern::kEmpty) {
    // Not an error by itself, but random inputs make an exact zero a sign that nothing moved.
    m.fail("<M x, y> is exactly 0 with rows routed");
  }
  return m.result();
}

// Every check for one EP group.
inline std::string check_dispatch_all(Comm& ep, uint64_t seed) {
  std::string f;
  for (RoutePattern pattern :
       {RoutePattern::kMixed, RoutePattern::kSilentRank, RoutePattern::kEmpty}) {
    for (int64_t epr : {1, 3}) {
      for (int64_t width : {1, 5}) {
        for (const std::string& one :
             {check_dispatch_placement(ep, epr * ep.size(), width, pattern, seed),
              check_dispatch_adjoint(ep, epr * ep.size(), width, pattern, seed + 1)}) {
          if (!one.empty()) f += (f.empty() ? "" : "\n") + one;
        }
      }
    }
  }
  return f;
}

}  // namespace tessera::parallel::testing
