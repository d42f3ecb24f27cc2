// NcclComm under mpirun, one GPU per rank: every collective on device buffers with exactly
// predictable values (the inputs and expectations of tests/parallel/comm_test_checks.h),
// point-to-point in posting order, split, device-side ordering with stream_wait, the u16
// rejection, statistics, and the watchdog (an unmatched recv times out, names the operation, its
// sequence number and the peer's world rank, and the communicator is aborted).
//
// Usage: mpirun -np K nccl_comm_mpitest
// Without a CUDA device on any rank, every rank prints a SKIP line and exits with 77 (ctest's
// SKIP_RETURN_CODE); likewise when a node has more ranks than devices (NCCL needs a device per
// rank). Otherwise rank 0 prints "N passed, M failed"; the exit status is non-zero on a failure.
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"
#include "parallel/mpi_env.h"
#include "parallel/nccl/nccl_comm.h"
#include "tests/parallel/comm_test_checks.h"
#include "tests/parallel/mpi_test_harness.h"

namespace tessera::parallel {
namespace {

using Clock = std::chrono::steady_clock;
using kernels::cuda::DeviceBuffer;
using testing::label;
using testing::Mismatches;
using testing::reduce_expected;
using testing::reduce_input;

constexpr int kSkip = 77;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <typename T>
std::span<T> span_of(DeviceBuffer<T>& b) {
  return std::span<T>(b.data(), static_cast<size_t>(b.size()));
}
template <typename T>
std::span<const T> cspan_of(const DeviceBuffer<T>& b) {
  return std::span<const T>(b.data(), static_cast<size_t>(b.size()));
}

template <typename T>
std::string check_all_reduce(Comm& c, bool in_place, ReduceOp op, int64_t n) {
  Mismatches m(label(c, std::string("device all_reduce ") + reduce_op_name(op) +
                            (in_place ? " in-place" : " out-of-place") + " n=" + std::to_string(n)));
  std::vector<T> in(n);
  for (int64_t i = 0; i < n; ++i) in[i] = reduce_input<T>(op, c.rank(), i);
  DeviceBuffer<T> din(in), dout(std::vector<T>(n, T(0)));
  if (in_place) {
    c.all_reduce(span_of(din), {op}).wait();
  } else {
    c.all_reduce<T>(cspan_of(din), span_of(dout), {op}).wait();
  }
  const std::vector<T> result = (in_place ? din : dout).to_host();
  for (int64_t i = 0; i < n; ++i) m.expect("out", i, result[i], reduce_expected<T>(op, c.size(), i));
  if (!in_place) {
    const std::vector<T> after = din.to_host();
    for (int64_t i = 0; i < n; ++i) m.expect("in (must be unchanged)", i, after[i], in[i]);
  }
  return m.result();
}

template <typename T>
std::string check_reduce_scatter(Comm& c, bool in_place, int64_t n) {
  Mismatches m(label(c, std::string("device reduce_scatter") +
                            (in_place ? " in-place" : " out-of-place") + " n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  std::vector<T> in(p * n);
  for (int64_t k = 0; k < p * n; ++k) in[k] = reduce_input<T>(ReduceOp::kSum, me, k);
  DeviceBuffer<T> din(in), dout(std::vector<T>(n, T(0)));
  std::vector<T> result;
  if (in_place) {
    c.reduce_scatter<T>(cspan_of(din), span_of(din).subspan(me * n, n)).wait();
    const std::vector<T> all = din.to_host();
    result.assign(all.begin() + me * n, all.begin() + (me + 1) * n);
  } else {
    c.reduce_scatter<T>(cspan_of(din), span_of(dout)).wait();
    result = dout.to_host();
  }
  for (int64_t i = 0; i < n; ++i) {
    m.expect("out", i, result[i], reduce_expected<T>(ReduceOp::kSum, p, me * n + i));
  }
  return m.result();
}

template <typename T>
std::string check_all_gather(Comm& c, bool in_place, int64_t n) {
  Mismatches m(label(c, std::string("device all_gather") +
                            (in_place ? " in-place" : " out-of-place") + " n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  auto value = [](int r, int64_t i) { return static_cast<T>(r * 16 + i % 16); };
  std::vector<T> out(p * n, T(200)), mine(n);
  for (int64_t i = 0; i < n; ++i) mine[i] = value(me, i);
  if (in_place) std::copy(mine.begin(), mine.end(), out.begin() + me * n);
  DeviceBuffer<T> dout(out), din(mine);
  if (in_place) {
    std::span<T> slice = span_of(dout).subspan(me * n, n);
    c.all_gather<T>(slice, span_of(dout)).wait();
  } else {
    c.all_gather<T>(cspan_of(din), span_of(dout)).wait();
  }
  const std::vector<T> got = dout.to_host();
  for (int q = 0; q < p; ++q) {
    for (int64_t i = 0; i < n; ++i) m.expect("out", q * n + i, got[q * n + i], value(q, i));
  }
  return m.result();
}

// As testing::check_all_to_all_v: rank i sends (i + 2j + 1) % 3 elements to rank j (zeros
// included); with explicit_displs, blocks in reverse rank order with a one-element gap each.
template <typename T>
std::string check_all_to_all_v(Comm& c, bool in_place, bool explicit_displs) {
  Mismatches m(label(c, std::string("device all_to_all_v") +
                            (in_place ? " in-place" : " out-of-place") +
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
  // Displacements as the options will carry them (explicit, or packed prefix sums).
  auto layout = [&](const std::vector<int64_t>& counts, std::vector<int64_t>& displs,
                    std::vector<int64_t>& at_of) {
    int64_t at = 0;
    at_of.assign(p, 0);
    if (!explicit_displs) {
      for (int j = 0; j < p; ++j) {
        at_of[j] = at;
        at += counts[j];
      }
      return at;
    }
    displs.assign(p, 0);
    for (int j = p - 1; j >= 0; --j) {
      at += 1;  // gap
      displs[j] = at;
      at_of[j] = at;
      at += counts[j];
    }
    return at;
  };
  std::vector<int64_t> send_at, recv_at;
  const int64_t in_n = layout(o.send_counts, o.send_displs, send_at);
  const int64_t out_n = layout(o.recv_counts, o.recv_displs, recv_at);
  std::vector<T> in(std::max(in_n, in_place ? out_n : int64_t{0}), kSentinel);
  for (int j = 0; j < p; ++j) {
    for (int64_t k = 0; k < count(me, j); ++k) in[send_at[j] + k] = value(me, j, k);
  }
  DeviceBuffer<T> din(in), dout(std::vector<T>(out_n, kSentinel));
  std::vector<T> out;
  if (in_place) {
    c.all_to_all_v<T>(cspan_of(din), span_of(din), o).wait();
    const std::vector<T> all = din.to_host();
    out.assign(all.begin(), all.begin() + out_n);
  } else {
    c.all_to_all_v<T>(cspan_of(din), span_of(dout), o).wait();
    out = dout.to_host();
  }
  std::vector<bool> covered(out_n, false);
  for (int i = 0; i < p; ++i) {
    for (int64_t k = 0; k < count(i, me); ++k) {
      m.expect("out", recv_at[i] + k, out[recv_at[i] + k], value(i, me, k));
      covered[recv_at[i] + k] = true;
    }
  }
  if (!in_place) {
    for (int64_t x = 0; x < out_n; ++x) {
      if (!covered[x]) m.expect("out gap", x, out[x], kSentinel);
    }
  }
  return m.result();
}

template <typename T>
std::string check_broadcast(Comm& c, int root, int64_t n) {
  Mismatches m(label(c, "device broadcast root " + std::to_string(root) + " n=" + std::to_string(n)));
  auto value = [&](int64_t i) { return static_cast<T>(root * 10 + i % 10 + 1); };
  std::vector<T> data(n, T(0));
  if (c.rank() == root) {
    for (int64_t i = 0; i < n; ++i) data[i] = value(i);
  }
  DeviceBuffer<T> d(data);
  c.broadcast(span_of(d), root).wait();
  const std::vector<T> got = d.to_host();
  for (int64_t i = 0; i < n; ++i) m.expect("data", i, got[i], value(i));
  return m.result();
}

// Each rank receives from the previous rank, then sends to the next (a self-send on one rank):
// posted recv-first on every rank, which only works because the pending group is enqueued as one.
template <typename T>
std::string check_send_recv_ring(Comm& c, int64_t n) {
  Mismatches m(label(c, "device send/recv ring n=" + std::to_string(n)));
  const int p = c.size(), me = c.rank();
  const int next = (me + 1) % p, prev = (me + p - 1) % p;
  std::vector<T> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(me * 100 + i % 50);
  DeviceBuffer<T> dout(out), din(std::vector<T>(n, T(0)));
  Work r = c.recv(span_of(din), prev, 3);
  Work s = c.send<T>(cspan_of(dout), next, 3);
  s.wait();
  r.wait();
  const std::vector<T> got = din.to_host();
  for (int64_t i = 0; i < n; ++i) m.expect("in", i, got[i], static_cast<T>(prev * 100 + i % 50));
  return m.result();
}

// NCCL matches a pair's messages in posting order (tags are ignored): rank 0 sends three
// messages with different tags to rank 1, which receives them in the same order.
std::string check_p2p_posting_order(Comm& c) {
  Mismatches m(label(c, "device p2p posting order"));
  if (c.size() < 2 || c.rank() > 1) return "";
  std::vector<DeviceBuffer<int32_t>> bufs;
  for (int k = 0; k < 3; ++k) bufs.emplace_back(std::vector<int32_t>{k + 1, k + 1});
  std::vector<Work> works;
  for (int k = 0; k < 3; ++k) {
    works.push_back(c.rank() == 0 ? c.send<int32_t>(cspan_of(bufs[k]), 1, 5 + k)
                                  : c.recv(span_of(bufs[k]), 0, 5 + k));
  }
  wait_all(works);
  if (c.rank() == 1) {
    for (int k = 0; k < 3; ++k) m.expect("message", k, bufs[k].to_host()[0], k + 1);
  }
  return m.result();
}

// flush() enqueues the pending group, after which Work::test() alone sees completion.
std::string check_flush_then_test(NcclComm& c) {
  Mismatches m(label(c, "flush then test"));
  const int p = c.size(), me = c.rank();
  DeviceBuffer<float> out(std::vector<float>(4, static_cast<float>(me))), in(4);
  Work r = c.recv(span_of(in), (me + p - 1) % p, 0);
  Work s = c.send<float>(cspan_of(out), (me + 1) % p, 0);
  c.flush();
  const auto t0 = Clock::now();
  while (!(r.test() && s.test()) && seconds_since(t0) < 20) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (!r.test() || !s.test()) m.fail("test() still false 20 s after flush()");
  r.wait();
  s.wait();
  m.expect("in", 0, in.to_host()[0], static_cast<float>((me + p - 1) % p));
  return m.result();
}

// An all-reduce consumed on a separate non-blocking stream through stream_wait, without a host
// wait: the copy on that stream must see the reduced values.
std::string check_stream_wait(NcclComm& c) {
  Mismatches m(label(c, "stream_wait"));
  const int64_t n = 1 << 20;
  DeviceBuffer<float> x(std::vector<float>(n, 1.0f));
  cudaStream_t consumer = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking));
  std::vector<float> host(n, 0.0f);
  Work w = c.all_reduce(span_of(x));
  c.stream_wait(w, consumer);
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(host.data(), x.data(), x.bytes(), cudaMemcpyDeviceToHost,
                                     consumer));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(consumer));
  TESSERA_CUDA_CHECK(cudaStreamDestroy(consumer));
  w.wait();
  for (int64_t i = 0; i < n; i += 4099) m.expect("x", i, host[i], static_cast<float>(c.size()));
  return m.result();
}

// An input written on a non-blocking compute stream right before the post: the communicator
// must order its operation after that write (the event recorded at post time).
std::string check_compute_stream_order(NcclComm& c) {
  Mismatches m(label(c, "compute stream order"));
  const int64_t n = 1 << 20;
  cudaStream_t compute = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  const cudaStream_t previous = c.compute_stream();
  c.set_compute_stream(compute);
  DeviceBuffer<int32_t> x(n);
  std::vector<int32_t> ones(n, 1);
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(x.data(), ones.data(), x.bytes(), cudaMemcpyHostToDevice,
                                     compute));
  Work w = c.all_reduce(span_of(x));
  c.set_compute_stream(previous);
  w.wait();
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(compute));
  TESSERA_CUDA_CHECK(cudaStreamDestroy(compute));
  const std::vector<int32_t> got = x.to_host();
  for (int64_t i = 0; i < n; i += 4099) m.expect("x", i, got[i], c.size());
  return m.result();
}

template <typename T>
std::string collectives_of_type(Comm& c) {
  std::string f;
  for (bool in_place : {false, true}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{65536 + 3}}) {
      f += check_all_reduce<T>(c, in_place, ReduceOp::kSum, n);
      f += check_reduce_scatter<T>(c, in_place, n);
      f += check_all_gather<T>(c, in_place, n);
    }
    for (ReduceOp op : {ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax}) {
      f += check_all_reduce<T>(c, in_place, op, 37);
    }
    for (bool strided : {false, true}) f += check_all_to_all_v<T>(c, in_place, strided);
  }
  for (int root = 0; root < c.size(); ++root) f += check_broadcast<T>(c, root, 19);
  f += check_send_recv_ring<T>(c, 40000);
  return f;
}

// As testing::check_split, on device buffers: even/odd groups, then pairs split into singletons.
std::string check_split(Comm& c) {
  Mismatches m(label(c, "device split"));
  const int p = c.size(), me = c.rank();
  std::vector<int> parity;
  for (int r = me % 2; r < p; r += 2) parity.push_back(r);
  auto sub = c.split(parity, me % 2 ? "odd" : "even");
  int64_t want_sum = 0;
  for (int r : parity) want_sum += r;
  m.expect("sub.size", 0, sub->size(), static_cast<int>(parity.size()));
  m.expect("sub.rank", 0, sub->rank(), me / 2);
  DeviceBuffer<int64_t> x(std::vector<int64_t>{me});
  sub->all_reduce(span_of(x)).wait();
  m.expect("sum over parity group", 0, x.to_host()[0], want_sum);

  std::vector<int> pair = {me - me % 2};
  if (pair[0] + 1 < p) pair.push_back(pair[0] + 1);
  auto pairs = c.split(pair);
  auto single = pairs->split({pairs->rank()});
  m.expect("single.size", 0, single->size(), 1);
  DeviceBuffer<int32_t> y(std::vector<int32_t>{me + 1});
  single->all_reduce(span_of(y)).wait();
  m.expect("single sum", 0, y.to_host()[0], me + 1);
  DeviceBuffer<int32_t> z(std::vector<int32_t>{me});
  pairs->all_reduce(span_of(z), {ReduceOp::kMax}).wait();
  m.expect("pair max", 0, z.to_host()[0], pair.back());
  DeviceBuffer<int32_t> w(std::vector<int32_t>{1});
  c.all_reduce(span_of(w)).wait();
  m.expect("parent sum", 0, w.to_host()[0], p);
  return m.result();
}

std::string many_outstanding(Comm& c) {
  Mismatches m(label(c, "64 outstanding device all_reduces"));
  std::vector<DeviceBuffer<int64_t>> bufs;
  std::vector<Work> works;
  for (int k = 0; k < 64; ++k) bufs.emplace_back(std::vector<int64_t>(3 + k, k + c.rank()));
  for (int k = 0; k < 64; ++k) works.push_back(c.all_reduce(span_of(bufs[k])));
  wait_all(works);
  const int64_t p = c.size();
  for (int k = 0; k < 64; ++k) m.expect("buf", k, bufs[k].to_host()[0], k * p + p * (p - 1) / 2);
  return m.result();
}

std::string u16_rejected(Comm& c) {
  DeviceBuffer<uint16_t> x(4);
  try {
    c.all_reduce(span_of(x));
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    return what.find("u16") == std::string::npos ? "message lacks 'u16': " + what : "";
  }
  return "an all_reduce of u16 did not throw std::invalid_argument";
}

std::string expect_error(const Work& w, const std::string& part) {
  try {
    w.wait();
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return what.find(part) == std::string::npos ? "error '" + what + "' lacks '" + part + "'" : "";
  }
  return "wait() did not throw (expected an error containing '" + part + "')";
}

bool eventually(const std::function<bool()>& condition, double seconds) {
  const auto t0 = Clock::now();
  while (!condition()) {
    if (seconds_since(t0) > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Rank 0 waits for a message rank 1 never sends. After a warm-up exchange (so the connection
// exists and the recv is enqueued without blocking the host), its watchdog must fail the recv,
// naming it, and abort the communicator; every rank then aborts its side (NCCL may need the
// peers on a node to abort too) and destroys it without hanging.
std::string watchdog(NcclComm& world) {
  std::vector<int> all;
  for (int r = 0; r < world.size(); ++r) all.push_back(r);
  std::unique_ptr<Comm> sub = world.split(all, "watchdog");
  auto& comm = dynamic_cast<NcclComm&>(*sub);
  std::string f;
  const int p = comm.size(), me = comm.rank();
  DeviceBuffer<float> x(std::vector<float>(2, 0.0f)), y(std::vector<float>(2, 1.0f));
  // Warm-up: recv #0 and send #1 on every rank.
  Work r = comm.recv(span_of(x), (me + p - 1) % p, 0);
  Work s = comm.send<float>(cspan_of(y), (me + 1) % p, 0);
  wait_all(std::vector<Work>{r, s});
  if (me == 0) {
    comm.set_timeout_s(0.5);
    const auto t0 = Clock::now();
    const std::string peer_world = std::to_string(comm.world_rank(p > 1 ? 1 : 0));
    f += expect_error(comm.recv(span_of(x), p > 1 ? 1 : 0, 1),
                      "communication timeout: recv #2 [f32 x 2 from rank " +
                          std::to_string(p > 1 ? 1 : 0) + " (world rank " + peer_world +
                          "), tag 1] on comm 'watchdog' (rank 0 of ");
    const double seconds = seconds_since(t0);
    if (seconds < 0.45 || seconds > 10.0) f += "timeout fired after " + std::to_string(seconds) + " s";
    if (!comm.broken()) f += "communicator not marked broken after a timeout";
    try {
      comm.barrier();
      f += "posting on a broken communicator did not throw";
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("broken") == std::string::npos) f += e.what();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  comm.abort("test: rank 0's watchdog fired");  // no-op where already broken
  if (!eventually([&] { return comm.aborted(); }, 60)) {
    f += "ncclCommAbort did not return within 60 s";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return f;
}

int run(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  const int rank = env.world_rank();
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_size(node, &local_size);
  MPI_Comm_free(&node);

  const int devices = kernels::cuda::device_count();
  int most = 0, fewest = 0, crowded = 0;
  const int local_crowded = local_size > devices ? 1 : 0;
  MPI_Allreduce(&devices, &most, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&devices, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&local_crowded, &crowded, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  // Every rank prints its line before any exits (mpirun ends the job at the first non-zero exit).
  auto skip = [&](const std::string& why) {
    std::printf("[rank %d] SKIP nccl_comm_mpitest: %s\n", rank, why.c_str());
    std::fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    return kSkip;
  };
  if (most == 0) return skip("no CUDA device visible (NCCL needs a GPU)");
  if (fewest == 0) {
    std::fprintf(stderr, "[rank %d] FAIL: some ranks see CUDA devices and others none (%d here)\n",
                 rank, devices);
    return 1;
  }
  if (crowded) {
    return skip(std::to_string(local_size) + " ranks on this node but " + std::to_string(devices) +
                " CUDA device(s) (NCCL needs a device per rank)");
  }

  NcclCommOptions options;
  options.timeout_s = 60;  // a hang fails the test instead of stalling ctest
  auto world = NcclComm::create(MPI_COMM_WORLD, local_rank, "world", options);
  MpiTestHarness h(rank);
  Comm& c = *world;
  h.run("collectives f32", [&] { return collectives_of_type<float>(c); });
  h.run("collectives f64", [&] { return collectives_of_type<double>(c); });
  h.run("collectives i32", [&] { return collectives_of_type<int32_t>(c); });
  h.run("collectives i64", [&] { return collectives_of_type<int64_t>(c); });
  h.run("collectives u32", [&] { return collectives_of_type<uint32_t>(c); });
  h.run("u16 rejected", [&] { return u16_rejected(c); });
  h.run("p2p posting order", [&] { return check_p2p_posting_order(c); });
  h.run("flush then test", [&] { return check_flush_then_test(*world); });
  h.run("split", [&] { return check_split(c); });
  h.run("barrier", [&] {
    c.barrier().wait();
    return std::string();
  });
  h.run("many outstanding", [&] { return many_outstanding(c); });
  h.run("stream_wait", [&] { return check_stream_wait(*world); });
  h.run("compute stream order", [&] { return check_compute_stream_order(*world); });
  h.run("stats", [&] {
    c.reset_stats();
    DeviceBuffer<float> x(std::vector<float>(8, 1.0f));
    c.all_reduce(span_of(x)).wait();
    CommStats s = c.stats();
    return s.ops_posted == 1 && s.ops_completed == 1 ? std::string()
                                                     : std::string("stats do not count the op");
  });
  if (world->size() >= 2) h.run("watchdog", [&] { return watchdog(*world); });
  const int rc = h.finish();
  world.reset();  // before MPI_Finalize
  return rc;
}

}  // namespace
}  // namespace tessera::parallel

// An exception on any rank ends every rank (instead of leaving the others in a collective).
int main(int argc, char** argv) {
  return tessera::parallel::run_or_abort_all([&] { return tessera::parallel::run(argc, argv); });
}
