// MpiComm under mpirun: every collective with exactly predictable values (the checks of
// comm_test_checks.h, shared with the fake-comm unit tests), sub-communicators, point-to-point
// order, error propagation, the watchdog, and progress of non-blocking operations while the
// calling thread computes without calling MPI.
//
// Usage: mpirun -np K comm_mpitest [--quick]
// Every rank runs every check; a check fails if it fails on any rank (each failing rank prints
// why). Rank 0 prints "N passed, M failed"; the exit status is non-zero on any failure.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "tests/parallel/comm_test_checks.h"
#include "tests/parallel/mpi_test_harness.h"

namespace tessera::parallel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}


template <typename T>
std::string collectives_of_type(Comm& c, bool quick) {
  std::string f;
  std::vector<int64_t> sizes = {0, 1, 37};
  if (!quick) sizes.push_back(65536 + 3);  // large enough for MPI's segmented algorithms
  for (bool in_place : {false, true}) {
    for (int64_t n : sizes) {
      f += testing::check_all_reduce<T>(c, in_place, ReduceOp::kSum, n);
      f += testing::check_reduce_scatter<T>(c, in_place, n);
      f += testing::check_all_gather<T>(c, in_place, n);
    }
    for (ReduceOp op : {ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax}) {
      f += testing::check_all_reduce<T>(c, in_place, op, 37);
      f += testing::check_reduce_scatter<T>(c, in_place, 37, op);
    }
    for (bool strided : {false, true}) f += testing::check_all_to_all_v<T>(c, in_place, strided);
  }
  for (int root = 0; root < c.size(); ++root) f += testing::check_broadcast<T>(c, root, 19);
  f += testing::check_send_recv_ring<T>(c, quick ? 5 : 40000);
  return f;
}

// Posts an all-reduce, then computes without calling MPI and watches Work::test() (which does
// not call MPI either): only the progress thread can complete it.
std::string progress_while_computing(Comm& c) {
  const int64_t n = 1 << 20;  // 4 MiB: several rounds of the all-reduce algorithm
  std::vector<float> x(n, 1.0f);
  Work w = c.all_reduce(std::span<float>(x));
  const auto t0 = Clock::now();
  volatile double sink = 0;
  bool done = false;
  while (!done && seconds_since(t0) < 10.0) {
    double acc = 0;
    for (int i = 1; i < 200000; ++i) acc += std::sqrt(static_cast<double>(i));
    sink = sink + acc;
    done = w.test();
  }
  const double seconds = seconds_since(t0);
  w.wait();
  testing::Mismatches m(testing::label(c, "progress while computing"));
  if (!done) m.fail("Work::test() still false after 10 s of compute: no asynchronous progress");
  for (int64_t i = 0; i < n; i += 4099) m.expect("x", i, x[i], static_cast<float>(c.size()));
  if (c.rank() == 0) std::printf("     (completed during compute after %.3f s)\n", seconds);
  return m.result();
}

std::string many_outstanding(Comm& c) {
  testing::Mismatches m(testing::label(c, "64 outstanding all_reduces"));
  std::vector<std::vector<int64_t>> bufs(64);
  std::vector<Work> works;
  for (int k = 0; k < 64; ++k) {
    bufs[k].assign(3 + k, k + c.rank());
    works.push_back(c.all_reduce(std::span<int64_t>(bufs[k])));
  }
  wait_all(works);
  const int64_t p = c.size();
  for (int k = 0; k < 64; ++k) {
    m.expect("buf", k, bufs[k][0], k * p + p * (p - 1) / 2);
  }
  return m.result();
}

// Collectives posted on two sub-communicators before waiting on either.
std::string concurrent_groups(Comm& c) {
  testing::Mismatches m(testing::label(c, "concurrent groups"));
  std::vector<int> all;
  for (int r = 0; r < c.size(); ++r) all.push_back(r);
  std::vector<int> mine = {c.rank()};
  auto everyone = c.split(all, "everyone");
  auto alone = c.split(mine, "alone");
  std::vector<float> a(1000, 1.0f), b(1000, 2.0f);
  Work wa = everyone->all_reduce(std::span<float>(a));
  Work wb = alone->all_reduce(std::span<float>(b));
  wb.wait();
  wa.wait();
  m.expect("a", 0, a[999], static_cast<float>(c.size()));
  m.expect("b", 0, b[999], 2.0f);
  return m.result();
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

// A recv larger than the message (our count check) and one smaller (MPI truncation).
std::string count_errors(Comm& c) {
  if (c.size() < 2 || c.rank() > 1) return "";
  std::string f;
  if (c.rank() == 0) {
    std::vector<int32_t> four(4, 7), eight(8, 7);
    c.send<int32_t>(four, 1, 11).wait();
    c.send<int32_t>(eight, 1, 12).wait();
  } else {
    std::vector<int32_t> big(8), small(4);
    f += expect_error(c.recv(std::span<int32_t>(big), 0, 11), "received 4 elements, expected 8");
    f += expect_error(c.recv(std::span<int32_t>(small), 0, 12),
                      "[i32 x 4 from rank 0 (world rank 0), tag 12] on comm 'world' (rank 1 of ");
  }
  return f;
}

// Rank 0 waits for a message that rank 1 sends only after rank 0's watchdog fired.
std::string watchdog(MpiComm& world) {
  // MPI writes into x when the late message arrives, after the Work failed: x must outlive that.
  std::vector<float> x(2);
  std::vector<int> all;
  for (int r = 0; r < world.size(); ++r) all.push_back(r);
  std::unique_ptr<Comm> sub = world.split(all, "watchdog");
  auto& comm = dynamic_cast<MpiComm&>(*sub);
  std::string f;
  if (world.size() >= 2 && comm.rank() == 0) {
    comm.set_timeout_s(0.5);
    const auto t0 = Clock::now();
    f += expect_error(comm.recv(std::span<float>(x), 1, 1),
                      "communication timeout: recv #0 [f32 x 2 from rank 1 (world rank 1), tag 1] "
                      "on comm 'watchdog' (rank 0 of ");
    const double seconds = seconds_since(t0);
    if (seconds < 0.45 || seconds > 5.0) {
      f += "timeout fired after " + std::to_string(seconds) + " s";
    }
    if (!comm.broken()) f += "communicator not marked broken after a timeout";
    try {
      comm.barrier();
      f += "posting on a broken communicator did not throw";
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("broken") == std::string::npos) f += e.what();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world.size() >= 2 && comm.rank() == 1) {
    std::vector<float> y(2, 1.0f);
    comm.send<float>(y, 0, 1).wait();  // completes rank 0's abandoned recv, so it can be freed
  }
  const auto t0 = Clock::now();
  while (comm.in_flight() > 0 && seconds_since(t0) < 30) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (comm.in_flight() > 0) f += "the abandoned recv never completed";
  if (world.size() >= 2 && comm.rank() == 0 && x[0] != 1.0f) {
    f += "the late message did not land in the recv buffer";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return f;
}

int run(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  MpiCommOptions options;
  options.timeout_s = 60;  // a hang fails the test instead of stalling ctest
  auto world = MpiComm::world(options);
  MpiTestHarness h(world->rank());
  Comm& c = *world;
  h.run("collectives f32", [&] { return collectives_of_type<float>(c, quick); });
  h.run("collectives i64", [&] { return collectives_of_type<int64_t>(c, quick); });
  if (!quick) {
    h.run("collectives f64", [&] { return collectives_of_type<double>(c, quick); });
    h.run("collectives i32", [&] { return collectives_of_type<int32_t>(c, quick); });
    h.run("collectives u16", [&] { return collectives_of_type<uint16_t>(c, quick); });
    h.run("collectives u32", [&] { return collectives_of_type<uint32_t>(c, quick); });
  }
  h.run("p2p order", [&] { return testing::check_p2p_order(c); });
  h.run("split", [&] { return testing::check_split(c); });
  h.run("barrier", [&] {
    c.barrier().wait();
    return std::string();
  });
  h.run("many outstanding", [&] { return many_outstanding(c); });
  h.run("concurrent groups", [&] { return concurrent_groups(c); });
  h.run("count errors", [&] { return count_errors(c); });
  if (!quick) {
    h.run("progress while computing", [&] { return progress_while_computing(c); });
    h.run("watchdog", [&] { return watchdog(*world); });
  }
  h.run("stats", [&] {
    c.reset_stats();
    std::vector<float> x(8, 1);
    c.all_reduce(std::span<float>(x)).wait();
    CommStats s = c.stats();
    return s.ops_posted == 1 && s.ops_completed == 1 ? std::string()
                                                     : std::string("stats do not count the op");
  });
  const int rc = h.finish();
  world.reset();  // before MPI_Finalize
  return rc;
}

}  // namespace
}  // namespace tessera::parallel

int main(int argc, char** argv) { return tessera::parallel::run(argc, argv); }
