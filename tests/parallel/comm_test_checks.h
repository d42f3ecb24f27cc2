// Backend-independent checks of the Comm collectives, shared by the fake-comm unit tests
// (comm_*_test.cc) and the MPI tests run under mpirun (comm_mpitest.cc).
//
// Every rank calls the same check; it returns "" if this rank saw exactly the expected values,
// else a description of the first mismatches. Inputs are small integers (in floats too), so the
// expected results are exact whatever the reduction order.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace tessera::parallel::testing {

// Collects the first few mismatches of one check.
class Mismatches {
 public:
  explicit Mismatches(std::string what) : what_(std::move(what)) {}
  template <typename T>
  void expect(const char* buffer, int64_t index, T got, T want) {
    if (got == want) return;
    if (count_++ < 4) {
      out_ << "\n  " << buffer << "[" << index << "] = " << +got << ", expected " << +want;
    }
  }
  void fail(const std::string& message) {
    ++count_;
    out_ << "\n  " << message;
  }
  std::string result() const {
    if (count_ == 0) return "";
    return what_ + ": " + std::to_string(count_) + " wrong" + out_.str();
  }

 private:
  std::string what_;
  int64_t count_ = 0;
  std::ostringstream out_;
};

inline std::string label(const Comm& c, const std::string& what) {
  return what + " on '" + c.name() + "' rank " + std::to_string(c.rank()) + "/" +
         std::to_string(c.size());
}

// Input of rank r at element i for sum/min/max: (r + 1) * (1 + i % 7).
// For prod: 2 where (i + r) is odd, else 1, so the product is a small power of two.
template <typename T>
T reduce_input(ReduceOp op, int r, int64_t i) {
  if (op == ReduceOp::kProd) return static_cast<T>((i + r) % 2 ? 2 : 1);
  return static_cast<T>((r + 1) * (1 + i % 7));
}

template <typename T>
T reduce_expected(ReduceOp op, int p, int64_t i) {
  switch (op) {
    case ReduceOp::kSum:
      return static_cast<T>((1 + i % 7) * p * (p + 1) / 2);
    case ReduceOp::kMin:
      return static_cast<T>(1 + i % 7);
    case ReduceOp::kMax:
      return static_cast<T>(p * (1 + i % 7));
    case ReduceOp::kProd: {
      int64_t v = 1;
      for (int r = 0; r < p; ++r) v *= (i + r) % 2 ? 2 : 1;
      return static_cast<T>(v);
    }
  }
  return T(0);
}

template <typename T>
std::string check_all_reduce(Comm& c, bool in_place, ReduceOp op, int64_t n) {
  Mismatches m(label(c, std::string("all_reduce ") + reduce_op_name(op) +
                            (in_place ? " in-place" : " out-of-place") +
                            " n=" + std::to_string(n)));
  std::vector<T> in(n), out(n, T(0));
  for (int64_t i = 0; i < n; ++i) in[i] = reduce_input<T>(op, c.rank(), i);
  const std::vector<T> in_before = in;
  if (in_place) {
    c.all_reduce(std::span<T>(in), {op}).wait();
  } else {
    c.all_reduce<T>(in, std::span<T>(out), {op}).wait();
  }
  const std::vector<T>& result = in_place ? in : out;
  for (int64_t i = 0; i < n; ++i)
    m.expect("out", i, result[i], reduce_expected<T>(op, c.size(), i));
  if (!in_place) {
    for (int64_t i = 0; i < n; ++i) m.expect("in (must be unchanged)", i, in[i], in_before[i]);
  }
  return m.result();
}

// Rank r's input element k (of size() * n): reduce_input(op, r, k); slice q reduces to
// reduce_expected(op, p, k) with k = q*n + i (sum: (1 + k % 7) * p(p+1)/2). Out of place, the
// input stays as it was.
template <typename T>
std::string check_reduce_scatter(Comm& c, bool in_place, int64_t n,
                                 ReduceOp op = ReduceOp::kSum) {
  Mismatches m(label(c, std::string("reduce_scatter ") + reduce_op_name(op) +
                            (in_place ? " in-place" : " out-of-place") +
                            " n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  std::vector<T> in(p * n), out(n, T(0));
  for (int64_t k = 0; k < p * n; ++k) in[k] = reduce_input<T>(op, me, k);
  if (in_place) {
    std::span<T> mine = std::span<T>(in).subspan(me * n, n);
    c.reduce_scatter<T>(in, mine, {op}).wait();
    for (int64_t i = 0; i < n; ++i) {
      m.expect("in[slice rank]", i, mine[i], reduce_expected<T>(op, p, me * n + i));
    }
  } else {
    const std::vector<T> in_before = in;
    c.reduce_scatter<T>(in, std::span<T>(out), {op}).wait();
    for (int64_t i = 0; i < n; ++i) {
      m.expect("out", i, out[i], reduce_expected<T>(op, p, me * n + i));
    }
    for (int64_t k = 0; k < p * n; ++k) m.expect("in (must be unchanged)", k, in[k], in_before[k]);
  }
  return m.result();
}

// Rank r contributes r*16 + i % 16.
template <typename T>
std::string check_all_gather(Comm& c, bool in_place, int64_t n) {
  Mismatches m(label(c, std::string("all_gather") + (in_place ? " in-place" : " out-of-place") +
                            " n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  auto value = [](int r, int64_t i) { return static_cast<T>(r * 16 + i % 16); };
  std::vector<T> out(p * n, T(200));  // 200: never an expected value
  if (in_place) {
    std::span<T> mine = std::span<T>(out).subspan(me * n, n);
    for (int64_t i = 0; i < n; ++i) mine[i] = value(me, i);
    c.all_gather<T>(mine, std::span<T>(out)).wait();
  } else {
    std::vector<T> in(n);
    for (int64_t i = 0; i < n; ++i) in[i] = value(me, i);
    c.all_gather<T>(in, std::span<T>(out)).wait();
  }
  for (int q = 0; q < p; ++q) {
    for (int64_t i = 0; i < n; ++i) m.expect("out", q * n + i, out[q * n + i], value(q, i));
  }
  return m.result();
}

// Rank i sends (i + 2j + 1) % 3 elements to rank j (zeros included), element k of that block
// being i*32 + j*4 + k. With explicit_displs the blocks are laid out in reverse rank order with a
// one-element gap before each, and the gaps must stay untouched.
template <typename T>
std::string check_all_to_all_v(Comm& c, bool in_place, bool explicit_displs) {
  Mismatches m(label(c, std::string("all_to_all_v") + (in_place ? " in-place" : " out-of-place") +
                            (explicit_displs ? " strided" : " packed")));
  const int p = c.size(), me = c.rank();
  auto count = [](int i, int j) -> int64_t { return (i + 2 * j + 1) % 3; };
  auto value = [](int i, int j, int64_t k) { return static_cast<T>(i * 32 + j * 4 + k); };
  const T kSentinel = T(255);
  AllToAllVOptions o;
  for (int j = 0; j < p; ++j) {
    o.send_counts.push_back(count(me, j));
    o.recv_counts.push_back(count(j, me));
  }
  auto layout = [&](const std::vector<int64_t>& counts, std::vector<int64_t>& displs) {
    int64_t at = 0;
    if (!explicit_displs) {
      for (int j = 0; j < p; ++j) at += counts[j];
      return at;  // packed: displacements left empty
    }
    displs.assign(p, 0);
    for (int j = p - 1; j >= 0; --j) {
      at += 1;  // gap
      displs[j] = at;
      at += counts[j];
    }
    return at;
  };
  const int64_t in_n = layout(o.send_counts, o.send_displs);
  const int64_t out_n = layout(o.recv_counts, o.recv_displs);
  auto displ = [&](const std::vector<int64_t>& displs, const std::vector<int64_t>& counts, int j) {
    if (!displs.empty()) return displs[j];
    int64_t at = 0;
    for (int q = 0; q < j; ++q) at += counts[q];
    return at;
  };
  std::vector<T> in(std::max(in_n, in_place ? out_n : 0), kSentinel), out(out_n, kSentinel);
  for (int j = 0; j < p; ++j) {
    for (int64_t k = 0; k < count(me, j); ++k) {
      in[displ(o.send_displs, o.send_counts, j) + k] = value(me, j, k);
    }
  }
  if (in_place) {
    // The received blocks land in the same buffer (gaps then hold stale send data).
    c.all_to_all_v<T>(in, std::span<T>(in), o).wait();
    out.assign(in.begin(), in.begin() + out_n);
  } else {
    c.all_to_all_v<T>(in, std::span<T>(out), o).wait();
  }
  std::vector<bool> covered(out_n, false);
  for (int i = 0; i < p; ++i) {
    const int64_t d = displ(o.recv_displs, o.recv_counts, i);
    for (int64_t k = 0; k < count(i, me); ++k) {
      m.expect("out", d + k, out[d + k], value(i, me, k));
      covered[d + k] = true;
    }
  }
  if (!in_place) {
    for (int64_t x = 0; x < out_n; ++x) {
      if (!covered[x]) m.expect("out gap", x, out[x], kSentinel);
    }
  }
  return m.result();
}

// Root's buffer holds root*10 + i % 10 + 1; everybody else's starts at 0.
template <typename T>
std::string check_broadcast(Comm& c, int root, int64_t n) {
  Mismatches m(label(c, "broadcast root " + std::to_string(root) + " n=" + std::to_string(n)));
  auto value = [&](int64_t i) { return static_cast<T>(root * 10 + i % 10 + 1); };
  std::vector<T> data(n, T(0));
  if (c.rank() == root) {
    for (int64_t i = 0; i < n; ++i) data[i] = value(i);
  }
  c.broadcast(std::span<T>(data), root).wait();
  for (int64_t i = 0; i < n; ++i) m.expect("data", i, data[i], value(i));
  return m.result();
}

// Each rank sends r*100 + i to the next rank (a self-send on one rank), receives from the previous.
template <typename T>
std::string check_send_recv_ring(Comm& c, int64_t n) {
  Mismatches m(label(c, "send/recv ring n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  const int next = (me + 1) % p, prev = (me + p - 1) % p;
  std::vector<T> out(n), in(n, T(0));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(me * 100 + i % 50);
  Work r = c.recv(std::span<T>(in), prev, 3);
  Work s = c.send<T>(out, next, 3);
  s.wait();
  r.wait();
  for (int64_t i = 0; i < n; ++i) m.expect("in", i, in[i], static_cast<T>(prev * 100 + i % 50));
  return m.result();
}

// Rank 0 sends three messages with tag 5, then one with tag 6, to rank 1, which receives tag 6
// first: equal (source, tag) keeps posting order, different tags need not. Other ranks idle.
inline std::string check_p2p_order(Comm& c) {
  Mismatches m(label(c, "p2p order"));
  if (c.size() < 2) return "";
  if (c.rank() == 0) {
    std::vector<int32_t> a = {1, 1}, b = {2, 2}, d = {3, 3}, e = {4, 4};
    std::vector<Work> works = {c.send<int32_t>(a, 1, 5), c.send<int32_t>(b, 1, 5),
                               c.send<int32_t>(d, 1, 5), c.send<int32_t>(e, 1, 6)};
    wait_all(works);
  } else if (c.rank() == 1) {
    std::vector<int32_t> x(2), y(2), z(2), w(2);
    Work wt = c.recv(std::span<int32_t>(w), 0, 6);
    wt.wait();
    std::vector<Work> works = {c.recv(std::span<int32_t>(x), 0, 5),
                               c.recv(std::span<int32_t>(y), 0, 5),
                               c.recv(std::span<int32_t>(z), 0, 5)};
    wait_all(works);
    m.expect("tag6", 0, w[0], 4);
    m.expect("first", 0, x[0], 1);
    m.expect("second", 0, y[0], 2);
    m.expect("third", 0, z[0], 3);
  }
  return m.result();
}

// Even/odd split, then pairs {2k, 2k+1} split again into singletons; each level all-reduces the
// parent ranks of its members and checks rank(), size() and the sum.
inline std::string check_split(Comm& c) {
  Mismatches m(label(c, "split"));
  const int p = c.size(), me = c.rank();
  std::vector<int> parity;
  for (int r = me % 2; r < p; r += 2) parity.push_back(r);
  auto sub = c.split(parity, me % 2 ? "odd" : "even");
  int64_t want_sum = 0;
  for (int r : parity) want_sum += r;
  m.expect("sub.size", 0, sub->size(), static_cast<int>(parity.size()));
  m.expect("sub.rank", 0, sub->rank(), me / 2);
  std::vector<int64_t> x = {me};
  sub->all_reduce(std::span<int64_t>(x)).wait();
  m.expect("sum over parity group", 0, x[0], want_sum);

  std::vector<int> pair = {me - me % 2};
  if (pair[0] + 1 < p) pair.push_back(pair[0] + 1);
  auto pairs = c.split(pair);
  auto single = pairs->split({pairs->rank()});
  m.expect("single.size", 0, single->size(), 1);
  std::vector<int32_t> y = {me + 1};
  single->all_reduce(std::span<int32_t>(y)).wait();
  m.expect("single sum", 0, y[0], me + 1);
  std::vector<int32_t> z = {me};
  pairs->all_reduce(std::span<int32_t>(z), {ReduceOp::kMax}).wait();
  m.expect("pair max", 0, z[0], pair.back());
  // Collectives on the parent still line up after the children were used.
  std::vector<int32_t> w = {1};
  c.all_reduce(std::span<int32_t>(w)).wait();
  m.expect("parent sum", 0, w[0], p);
  return m.result();
}

}  // namespace tessera::parallel::testing
