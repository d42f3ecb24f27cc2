#include "parallel/comm.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>

namespace tessera::parallel {

namespace {

// Byte ranges [a, a + an) and [b, b + bn) share at least one byte.
bool overlaps(const void* a, size_t an, const void* b, size_t bn) {
  if (an == 0 || bn == 0) return false;
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + bn && pb < pa + an;
}

const char* byte_offset(const void* p, size_t bytes) { return static_cast<const char*>(p) + bytes; }

std::string list_string(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

}  // namespace

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kProd:
      return "prod";
    case ReduceOp::kMin:
      return "min";
    case ReduceOp::kMax:
      return "max";
  }
  return "unknown";
}

Comm::Comm(std::string name)
    : name_(std::move(name)), counters_(std::make_shared<CommCounters>()) {}

CommStats Comm::stats() const {
  CommStats s;
  s.ops_posted = counters_->posted.load();
  s.ops_completed = counters_->completed.load();
  s.blocked_waits = counters_->waits.load();
  s.wait_seconds = counters_->wait_ns.load() * 1e-9;
  s.op_seconds = counters_->op_ns.load() * 1e-9;
  return s;
}

void Comm::reset_stats() {
  counters_->posted = 0;
  counters_->completed = 0;
  counters_->waits = 0;
  counters_->wait_ns = 0;
  counters_->op_ns = 0;
}

void Comm::set_trace(std::shared_ptr<TraceRecorder> recorder) {
  trace_lane_ = recorder ? recorder->lane("comm:" + name_) : 0;
  trace_ = std::move(recorder);
}

int64_t Comm::sum(const std::vector<int64_t>& counts) {
  return std::accumulate(counts.begin(), counts.end(), int64_t{0});
}

std::string Comm::where() const {
  return "on comm '" + name_ + "' (rank " + std::to_string(rank()) + " of " +
         std::to_string(size()) + ")";
}

std::string Comm::describe(const char* op, int64_t seq, const std::string& detail) const {
  std::ostringstream s;
  s << op << " #" << seq << " [" << detail << "] " << where();
  return s.str();
}

WorkState::Options Comm::work_options(std::string description) const {
  WorkState::Options o;
  o.description = std::move(description);
  o.counters = counters_;
  return o;
}

std::string Comm::default_split_name(const std::vector<int>& ranks) const {
  std::string s = name_ + "/{";
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i == 8) {
      s += ",...";
      break;
    }
    s += (i ? "," : "") + std::to_string(ranks[i]);
  }
  return s + "}";
}

void Comm::check_split_ranks(const std::vector<int>& ranks) const {
  std::set<int> seen;
  for (int r : ranks) {
    if (r < 0 || r >= size()) {
      throw std::invalid_argument("split " + where() + ": rank " + std::to_string(r) +
                                  " is out of range [0, " + std::to_string(size()) + ")");
    }
    if (!seen.insert(r).second) {
      throw std::invalid_argument("split " + where() + ": rank " + std::to_string(r) +
                                  " appears twice in the group");
    }
  }
  if (!seen.count(rank())) {
    throw std::invalid_argument("split " + where() + ": the group " + default_split_name(ranks) +
                                " does not contain this rank");
  }
}

void Comm::check_all_reduce(const void* in, size_t in_n, const void* out, size_t out_n,
                            size_t esize) const {
  if (in_n != out_n) {
    throw std::invalid_argument("all_reduce " + where() + ": input has " + std::to_string(in_n) +
                                " elements but output has " + std::to_string(out_n));
  }
  if (in != out && overlaps(in, in_n * esize, out, out_n * esize)) {
    throw std::invalid_argument("all_reduce " + where() +
                                ": input and output overlap without being identical");
  }
}

void Comm::check_reduce_scatter(const void* in, size_t in_n, const void* out, size_t out_n,
                                size_t esize) const {
  if (in_n != out_n * static_cast<size_t>(size())) {
    throw std::invalid_argument("reduce_scatter " + where() + ": input has " +
                                std::to_string(in_n) + " elements, expected size() * output = " +
                                std::to_string(size()) + " * " + std::to_string(out_n));
  }
  const bool in_place = out == byte_offset(in, rank() * out_n * esize);
  if (!in_place && overlaps(in, in_n * esize, out, out_n * esize)) {
    throw std::invalid_argument("reduce_scatter " + where() +
                                ": output overlaps input but is not its slice rank()");
  }
}

void Comm::check_all_gather(const void* in, size_t in_n, const void* out, size_t out_n,
                            size_t esize) const {
  if (out_n != in_n * static_cast<size_t>(size())) {
    throw std::invalid_argument("all_gather " + where() + ": output has " + std::to_string(out_n) +
                                " elements, expected size() * input = " + std::to_string(size()) +
                                " * " + std::to_string(in_n));
  }
  const bool in_place = in == byte_offset(out, rank() * in_n * esize);
  if (!in_place && overlaps(in, in_n * esize, out, out_n * esize)) {
    throw std::invalid_argument("all_gather " + where() +
                                ": input overlaps output but is not its slice rank()");
  }
}

AllToAllVOptions Comm::check_all_to_all_v(const void* in, size_t in_n, const void* out,
                                          size_t out_n, size_t esize,
                                          const AllToAllVOptions& options) const {
  const size_t p = static_cast<size_t>(size());
  AllToAllVOptions o = options;
  auto check_side = [&](const char* side, const std::vector<int64_t>& counts,
                        std::vector<int64_t>& displs, size_t buffer_n) {
    if (counts.size() != p) {
      throw std::invalid_argument("all_to_all_v " + where() + ": " + side + "_counts has " +
                                  std::to_string(counts.size()) + " entries, expected " +
                                  std::to_string(p));
    }
    for (int64_t c : counts) {
      if (c < 0) {
        throw std::invalid_argument("all_to_all_v " + where() + ": negative " + side + "_counts " +
                                    list_string(counts));
      }
    }
    if (displs.empty()) {
      displs.resize(p);
      std::exclusive_scan(counts.begin(), counts.end(), displs.begin(), int64_t{0});
    } else if (displs.size() != p) {
      throw std::invalid_argument("all_to_all_v " + where() + ": " + side + "_displs has " +
                                  std::to_string(displs.size()) + " entries, expected " +
                                  std::to_string(p) + " (or none for packed)");
    }
    for (size_t j = 0; j < p; ++j) {
      if (displs[j] < 0 || static_cast<size_t>(displs[j] + counts[j]) > buffer_n) {
        throw std::invalid_argument("all_to_all_v " + where() + ": " + side + " block for rank " +
                                    std::to_string(j) + " [" + std::to_string(displs[j]) + ", " +
                                    std::to_string(displs[j] + counts[j]) + ") lies outside the " +
                                    side + " buffer of " + std::to_string(buffer_n) + " elements");
      }
    }
  };
  check_side("send", o.send_counts, o.send_displs, in_n);
  check_side("recv", o.recv_counts, o.recv_displs, out_n);
  // Received blocks must not overlap one another.
  std::vector<std::pair<int64_t, int64_t>> blocks;
  for (size_t j = 0; j < p; ++j) {
    if (o.recv_counts[j] > 0)
      blocks.emplace_back(o.recv_displs[j], o.recv_displs[j] + o.recv_counts[j]);
  }
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; i < blocks.size(); ++i) {
    if (blocks[i].first < blocks[i - 1].second) {
      throw std::invalid_argument("all_to_all_v " + where() + ": recv blocks overlap (displs " +
                                  list_string(o.recv_displs) + ", counts " +
                                  list_string(o.recv_counts) + ")");
    }
  }
  if (in != out && overlaps(in, in_n * esize, out, out_n * esize)) {
    throw std::invalid_argument("all_to_all_v " + where() +
                                ": input and output overlap without being the same buffer");
  }
  return o;
}

void Comm::check_peer(const char* op, int peer, int tag) const {
  if (peer < 0 || peer >= size()) {
    throw std::invalid_argument(std::string(op) + " " + where() + ": peer/root rank " +
                                std::to_string(peer) + " is out of range [0, " +
                                std::to_string(size()) + ")");
  }
  if (tag < 0 || tag > kMaxTag) {
    throw std::invalid_argument(std::string(op) + " " + where() + ": tag " + std::to_string(tag) +
                                " is out of range [0, " + std::to_string(kMaxTag) + "]");
  }
}

}  // namespace tessera::parallel
