// Comm: the one communicator interface (DESIGN.md "Communicators"), like c10d's ProcessGroup.
//
// CONTRACT: all ranks of a communicator call the same collectives (all_reduce, reduce_scatter,
// all_gather, all_to_all_v, broadcast, barrier, split) in the same order, with matching element
// types and counts. Point-to-point send/recv are matched by (source, destination, tag) and, for
// equal keys, in posting order. If several threads post on one Comm, the order in which they post
// must be the same on every rank; the simplest rule is one posting thread per Comm.
//
// Every operation is non-blocking: it posts and returns a Work. Buffers are typed spans that
// carry element counts. REQUIRES: a buffer stays valid, and an input buffer unmodified, until
// its Work completed (wait() returned or test() returned true); attach owners with
// Work::keep_alive when the caller might drop them earlier.
//
// In-place forms (the NCCL conventions):
//   all_reduce(data)                    in == out.
//   reduce_scatter(in, out)             out may be exactly in's slice rank(): in[rank*n,
//   (rank+1)*n).
//                                       The other slices of `in` are unspecified afterwards.
//   all_gather(in, out)                 in may be exactly out's slice rank().
//   all_to_all_v(in, out)               in and out may be the same buffer.
//   broadcast(data)                     always in place.
// Any other overlap of input and output is an error.
//
// Argument errors (sizes, ranks, overlaps) throw std::invalid_argument on the calling rank
// before anything is posted. Communication errors surface from Work::wait().
//
// Thread-safety: posting is thread-safe (see the ordering rule above); Works may be waited on
// any thread.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/trace_recorder.h"
#include "parallel/work.h"

namespace tessera::parallel {

using kernels::DType;

enum class ReduceOp : uint8_t { kSum, kProd, kMin, kMax };
const char* reduce_op_name(ReduceOp op);

struct AllReduceOptions {
  ReduceOp op = ReduceOp::kSum;  // Default: sum.
};

struct ReduceScatterOptions {
  ReduceOp op = ReduceOp::kSum;  // Default: sum.
};

// Counts and displacements are in ELEMENTS, one entry per rank of the communicator.
// send_counts[j] elements starting at in[send_displs[j]] go to rank j; recv_counts[j]
// elements from rank j land at out[recv_displs[j]]. REQUIRES: recv_counts[j] on this rank
// equals send_counts[rank()] on rank j (the fake comm checks this, MPI reports truncation).
struct AllToAllVOptions {
  std::vector<int64_t> send_counts;
  std::vector<int64_t> recv_counts;
  // Default (empty): packed, i.e. the exclusive prefix sums of the counts.
  std::vector<int64_t> send_displs;
  std::vector<int64_t> recv_displs;
};

// The element types every backend supports.
template <typename T>
concept CommElement =
    std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int32_t> ||
    std::same_as<T, int64_t> || std::same_as<T, uint16_t> || std::same_as<T, uint32_t>;

// Deduces T from the output span only, so a std::span<T> or a std::vector<T> passes as input.
template <typename T>
using InSpan = std::span<const std::type_identity_t<T>>;

class Comm {
 public:
  virtual ~Comm() = default;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Human-readable name used in error messages ("world", "dp", ...).
  const std::string& name() const { return name_; }

  // Element-wise reduction over all ranks; every rank receives the result.
  template <CommElement T>
  Work all_reduce(std::span<T> data, const AllReduceOptions& options = {}) {
    return all_reduce(InSpan<T>(data), data, options);
  }
  template <CommElement T>
  Work all_reduce(InSpan<T> in, std::span<T> out, const AllReduceOptions& options = {}) {
    check_all_reduce(in.data(), in.size(), out.data(), out.size(), sizeof(T));
    return traced(post_all_reduce(in.data(), out.data(), static_cast<int64_t>(out.size()),
                                  kernels::dtype_of<T>(), options.op),
                  {{"bytes", bytes<T>(out.size())}});
  }

  // in holds size() slices of out.size() elements; rank r receives the reduction of slice r.
  template <CommElement T>
  Work reduce_scatter(InSpan<T> in, std::span<T> out, const ReduceScatterOptions& options = {}) {
    check_reduce_scatter(in.data(), in.size(), out.data(), out.size(), sizeof(T));
    return traced(post_reduce_scatter(in.data(), out.data(), static_cast<int64_t>(out.size()),
                                      kernels::dtype_of<T>(), options.op),
                  {{"bytes", bytes<T>(in.size())}});
  }

  // out holds size() slices of in.size() elements; slice r is rank r's input.
  template <CommElement T>
  Work all_gather(InSpan<T> in, std::span<T> out) {
    check_all_gather(in.data(), in.size(), out.data(), out.size(), sizeof(T));
    return traced(post_all_gather(in.data(), out.data(), static_cast<int64_t>(in.size()),
                                  kernels::dtype_of<T>()),
                  {{"bytes", bytes<T>(out.size())}});
  }

  template <CommElement T>
  Work all_to_all_v(InSpan<T> in, std::span<T> out, const AllToAllVOptions& options) {
    AllToAllVOptions packed =
        check_all_to_all_v(in.data(), in.size(), out.data(), out.size(), sizeof(T), options);
    Work work = post_all_to_all_v(in.data(), static_cast<int64_t>(in.size()), out.data(),
                                  kernels::dtype_of<T>(), packed);
    if (!tracing()) return work;  // skips the sums below
    return traced(std::move(work), {{"bytes", bytes<T>(sum(packed.send_counts))},
                                    {"recv_bytes", bytes<T>(sum(packed.recv_counts))}});
  }

  // Point-to-point. REQUIRES: 0 <= tag <= kMaxTag; the matching recv has the same count.
  static constexpr int kMaxTag = 32767;  // the least MPI_TAG_UB the MPI standard guarantees
  template <CommElement T>
  Work send(InSpan<T> data, int dst, int tag = 0) {
    check_peer("send", dst, tag);
    return traced(post_send(data.data(), static_cast<int64_t>(data.size()),
                            kernels::dtype_of<T>(), dst, tag),
                  {{"bytes", bytes<T>(data.size())}, {"peer", dst}, {"tag", tag}});
  }
  template <CommElement T>
  Work recv(std::span<T> data, int src, int tag = 0) {
    check_peer("recv", src, tag);
    return traced(post_recv(data.data(), static_cast<int64_t>(data.size()),
                            kernels::dtype_of<T>(), src, tag),
                  {{"bytes", bytes<T>(data.size())}, {"peer", src}, {"tag", tag}});
  }

  // Root's data is copied into every rank's `data` (same count on every rank).
  template <CommElement T>
  Work broadcast(std::span<T> data, int root) {
    check_peer("broadcast", root, 0);
    return traced(post_broadcast(data.data(), static_cast<int64_t>(data.size()),
                                 kernels::dtype_of<T>(), root),
                  {{"bytes", bytes<T>(data.size())}, {"root", root}});
  }

  Work barrier() { return traced(post_barrier(), {}); }

  // Sub-communicator factory. Every rank of this communicator calls split (a collective),
  // each passing the group it belongs to, as ranks of THIS communicator; the groups must
  // partition the communicator. The new rank of ranks[i] is i. Blocks until the group exists.
  // Throws std::invalid_argument (on the calling rank) if `ranks` lacks rank(), repeats a rank
  // or names one out of range, and std::runtime_error (on every rank) if the members' lists
  // disagree. `name` labels the group in error messages (default: "<parent>/{0,2,4}").
  virtual std::unique_ptr<Comm> split(const std::vector<int>& ranks, std::string name = {}) = 0;

  CommStats stats() const;
  void reset_stats();

  // Records every operation posted from now on, from post to completion, on the lane
  // "comm:<name()>" of `recorder` while it is enabled: named after the operation ("all_reduce",
  // "all_to_all_v", "send", ...; the description's first word) with args "bytes" (this rank's
  // payload: the reduced/gathered/sent/received buffer; all_to_all_v adds "recv_bytes"), and
  // "peer" and "tag" for send/recv, "root" for broadcast. null stops recording. Communicators
  // made by split() do not inherit it. REQUIRES: no thread is posting on this Comm meanwhile.
  void set_trace(std::shared_ptr<TraceRecorder> recorder);

 protected:
  explicit Comm(std::string name);

  // Backend interface. Arguments are already validated; counts are in elements.
  // in == out means in place (all_reduce); for reduce_scatter out may equal in + rank*count,
  // for all_gather in may equal out + rank*count; all_to_all_v's in and out may be equal.
  virtual Work post_all_reduce(const void* in, void* out, int64_t count, DType dtype,
                               ReduceOp op) = 0;
  virtual Work post_reduce_scatter(const void* in, void* out, int64_t count_per_rank, DType dtype,
                                   ReduceOp op) = 0;
  virtual Work post_all_gather(const void* in, void* out, int64_t count_per_rank, DType dtype) = 0;
  // options has displacements filled in; in_count is the length of the input buffer.
  virtual Work post_all_to_all_v(const void* in, int64_t in_count, void* out, DType dtype,
                                 const AllToAllVOptions& options) = 0;
  virtual Work post_send(const void* data, int64_t count, DType dtype, int dst, int tag) = 0;
  virtual Work post_recv(void* data, int64_t count, DType dtype, int src, int tag) = 0;
  virtual Work post_broadcast(void* data, int64_t count, DType dtype, int root) = 0;
  virtual Work post_barrier() = 0;

  // Helpers for backends.
  int64_t next_collective_seq() { return collective_seq_++; }  // same on every rank
  int64_t next_p2p_seq() { return p2p_seq_++; }                // local numbering only
  // "all_reduce #3 [f32 x 1024, sum] on comm 'dp' (rank 1 of 4)"
  std::string describe(const char* op, int64_t seq, const std::string& detail) const;
  WorkState::Options work_options(std::string description) const;
  std::string default_split_name(const std::vector<int>& ranks) const;
  // Throws std::invalid_argument unless ranks is a valid group containing rank().
  void check_split_ranks(const std::vector<int>& ranks) const;
  const std::shared_ptr<CommCounters>& counters() const { return counters_; }

 private:
  void check_all_reduce(const void* in, size_t in_n, const void* out, size_t out_n,
                        size_t esize) const;
  void check_reduce_scatter(const void* in, size_t in_n, const void* out, size_t out_n,
                            size_t esize) const;
  void check_all_gather(const void* in, size_t in_n, const void* out, size_t out_n,
                        size_t esize) const;
  AllToAllVOptions check_all_to_all_v(const void* in, size_t in_n, const void* out, size_t out_n,
                                      size_t esize, const AllToAllVOptions& options) const;
  void check_peer(const char* op, int peer, int tag) const;
  virtual std::string where() const;  // "on comm 'dp' (rank 1 of 4)"

  // One relaxed atomic load when tracing is off.
  bool tracing() const { return trace_ && trace_->enabled(); }
  Work traced(Work work, std::initializer_list<TraceArg> args) {
    if (tracing() && work.state_) {
      work.state_->trace_to(trace_, trace_lane_, std::vector<TraceArg>(args));
    }
    return work;
  }
  template <typename T, typename Count>
  static int64_t bytes(Count count) {
    return static_cast<int64_t>(count) * static_cast<int64_t>(sizeof(T));
  }
  static int64_t sum(const std::vector<int64_t>& counts);

  std::string name_;
  std::shared_ptr<CommCounters> counters_;
  std::atomic<int64_t> collective_seq_{0};
  std::atomic<int64_t> p2p_seq_{0};
  std::shared_ptr<TraceRecorder> trace_;
  int trace_lane_ = 0;
};

}  // namespace tessera::parallel
