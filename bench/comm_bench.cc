// comm_bench: MpiComm bandwidth (nccl-tests style, results checked) and how much communication
// the progress thread hides behind compute.
//
// Usage: mpirun -np 2 comm_bench [--max-mb 64] [--iters 20] [--overlap-mb 16]
//                                [--poll-us 0,10,50,200]
//
// 1. all_reduce (f32 sum, out of place) and all_to_all (all_to_all_v with equal blocks) over
//    message sizes: time per operation (max over ranks), algbw = bytes / time, and
//    busbw = algbw * 2(n-1)/n (all-reduce) or algbw * (n-1)/n (all-to-all), as nccl-tests
//    reports them. Inputs are small integers, so every element of the result is checked exactly;
//    `wrong` counts bad elements over all ranks.
// 2. Overlap, for each progress-thread poll interval: an all_reduce / all_to_all of
//    --overlap-mb alone (comm), single-thread GEMMs sized to take about as long (compute), then
//    both: post, compute, wait. exposed = time blocked in wait() / comm time, i.e. the
//    fraction of communication NOT hidden; slowdown = compute time while overlapped / alone
//    (what the progress thread and the transfer cost the compute thread). Baseline: plain
//    MPI_Iallreduce + compute + MPI_Wait with no progress thread.
// 3. Small-message latency (8-byte all_reduce) for each poll interval.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"

namespace {

using tessera::parallel::AllToAllVOptions;
using tessera::parallel::Comm;
using tessera::parallel::MpiComm;
using tessera::parallel::MpiCommOptions;
using tessera::parallel::Work;
using Clock = std::chrono::steady_clock;

double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

double max_over_ranks(double x) {
  double y = 0;
  MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return y;
}

int64_t sum_over_ranks(int64_t x) {
  int64_t y = 0;
  MPI_Allreduce(&x, &y, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return y;
}

struct Args {
  double max_mb = 64;
  int iters = 20;
  double overlap_mb = 16;
  std::vector<int> poll_us = {0, 10, 50, 200};
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + k);
    const std::string v = argv[++i];
    if (k == "--max-mb") {
      a.max_mb = std::stod(v);
    } else if (k == "--iters") {
      a.iters = std::stoi(v);
    } else if (k == "--overlap-mb") {
      a.overlap_mb = std::stod(v);
    } else if (k == "--poll-us") {
      a.poll_us.clear();
      std::stringstream s(v);
      for (std::string x; std::getline(s, x, ',');) a.poll_us.push_back(std::stoi(x));
    } else {
      throw std::invalid_argument("unknown option " + k);
    }
  }
  return a;
}

// One all-reduce benchmark: out-of-place so that the inputs stay put and the result is exact.
struct AllReduceCase {
  explicit AllReduceCase(Comm& c, int64_t n) : comm(c), in(n), out(n) {
    for (int64_t i = 0; i < n; ++i) in[i] = static_cast<float>((c.rank() + 1) * (1 + i % 7));
  }
  Work post() { return comm.all_reduce<float>(in, std::span<float>(out)); }
  int64_t wrong() const {
    const int p = comm.size();
    int64_t bad = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      bad += out[i] != static_cast<float>((1 + i % 7) * p * (p + 1) / 2);
    }
    return bad;
  }
  double bus_factor() const { return 2.0 * (comm.size() - 1) / comm.size(); }
  Comm& comm;
  std::vector<float> in, out;
};

// Equal blocks to every rank; element k of the block from rank i to rank j is i*64 + j*8 + k%8.
struct AllToAllCase {
  AllToAllCase(Comm& c, int64_t n) : comm(c) {
    const int p = c.size();
    block = std::max<int64_t>(n / p, 1);
    in.resize(block * p);
    out.resize(block * p);
    for (int j = 0; j < p; ++j) {
      for (int64_t k = 0; k < block; ++k) in[j * block + k] = c.rank() * 64 + j * 8 + k % 8;
      o.send_counts.push_back(block);
      o.recv_counts.push_back(block);
    }
  }
  Work post() { return comm.all_to_all_v<float>(in, std::span<float>(out), o); }
  int64_t wrong() const {
    int64_t bad = 0;
    for (int i = 0; i < comm.size(); ++i) {
      for (int64_t k = 0; k < block; ++k) {
        bad += out[i * block + k] != static_cast<float>(i * 64 + comm.rank() * 8 + k % 8);
      }
    }
    return bad;
  }
  double bus_factor() const { return static_cast<double>(comm.size() - 1) / comm.size(); }
  Comm& comm;
  int64_t block = 0;
  std::vector<float> in, out;
  AllToAllVOptions o;
};

template <typename Case>
double time_op(Case& c, int iters) {
  c.post().wait();  // warm-up
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = now();
  for (int i = 0; i < iters; ++i) c.post().wait();
  return max_over_ranks((now() - t0) / iters);
}

template <typename Case>
void bandwidth_table(const char* name, Comm& comm, const Args& args) {
  if (comm.rank() == 0) {
    std::printf("\n# %s, f32, %d ranks (time = max over ranks, wrong = over all ranks)\n", name,
                comm.size());
    std::printf("# %12s %12s %12s %12s %12s %8s\n", "bytes", "elements", "time_us", "algbw_GB/s",
                "busbw_GB/s", "wrong");
  }
  for (int64_t bytes = 4096; bytes <= static_cast<int64_t>(args.max_mb * (1 << 20)); bytes *= 4) {
    Case c(comm, bytes / 4);
    const int iters = bytes >= (8 << 20) ? std::max(args.iters / 4, 3) : args.iters;
    const double t = time_op(c, iters);
    const int64_t wrong = sum_over_ranks(c.wrong());
    const double real_bytes = static_cast<double>(c.in.size()) * 4;
    const double algbw = real_bytes / t / 1e9;
    if (comm.rank() == 0) {
      std::printf("  %12.0f %12zu %12.1f %12.3f %12.3f %8lld\n", real_bytes, c.in.size(), t * 1e6,
                  algbw, algbw * c.bus_factor(), static_cast<long long>(wrong));
    }
  }
}

// Single-thread GEMMs of 256^3 (about 0.2 ms each here).
struct Compute {
  static constexpr int64_t kN = 256;
  Compute() : a(kN * kN, 0.5f), b(kN * kN, 0.25f), c(kN * kN, 0.0f) {}
  void run(int reps) {
    for (int r = 0; r < reps; ++r) {
      tessera::kernels::gemm<float>(tessera::kernels::Trans::kNo, tessera::kernels::Trans::kNo, kN,
                                    kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f, c.data(), kN);
    }
  }
  std::vector<float> a, b, c;
};

struct Overlap {
  double comm = 0, compute = 0, both = 0, waited = 0, compute_in_both = 0;
  int64_t wrong = 0;
};

// reps_for_comm: GEMM repetitions calibrated (on rank 0, broadcast) to take about `comm`.
template <typename Post, typename Wait>
Overlap measure_overlap(Compute& compute, int reps, int iters, Post post, Wait wait) {
  Overlap o;
  post();
  wait();
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now();
  for (int i = 0; i < iters; ++i) {
    post();
    wait();
  }
  o.comm = (now() - t0) / iters;
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = now();
  for (int i = 0; i < iters; ++i) compute.run(reps);
  o.compute = (now() - t0) / iters;
  for (int i = 0; i < iters; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double s = now();
    post();
    compute.run(reps);
    const double w = now();
    wait();
    const double e = now();
    o.both += (e - s) / iters;
    o.compute_in_both += (w - s) / iters;
    o.waited += (e - w) / iters;
  }
  o.comm = max_over_ranks(o.comm);
  o.compute = max_over_ranks(o.compute);
  o.both = max_over_ranks(o.both);
  o.waited = max_over_ranks(o.waited);
  o.compute_in_both = max_over_ranks(o.compute_in_both);
  return o;
}

void print_overlap(const char* label, const Overlap& o) {
  std::printf("  %-26s %9.2f %10.2f %9.2f %9.2f %8.3f %9.3f %6lld\n", label, o.comm * 1e3,
              o.compute * 1e3, o.both * 1e3, o.waited * 1e3, o.waited / o.comm,
              o.compute_in_both / o.compute, static_cast<long long>(o.wrong));
}

int calibrate_reps(Compute& compute, double seconds) {
  int reps = 0;
  if ([] {
        int r = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        return r;
      }() == 0) {
    compute.run(3);
    const double t0 = now();
    compute.run(20);
    const double per = (now() - t0) / 20;
    reps = std::max(1, static_cast<int>(seconds / per + 0.5));
  }
  MPI_Bcast(&reps, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return reps;
}

int run(int argc, char** argv) {
  tessera::parallel::MpiEnv env(&argc, &argv);
  const Args args = parse(argc, argv);
  tessera::kernels::set_cpu_threads(1);
  const int rank = env.world_rank();
  const char* single_copy = std::getenv("OMPI_MCA_btl_vader_single_copy_mechanism");
  if (rank == 0) {
    std::printf("# comm_bench: %d ranks, poll intervals tested:", env.world_size());
    for (int p : args.poll_us) std::printf(" %d", p);
    std::printf(" us; btl_vader_single_copy_mechanism=%s\n",
                single_copy ? single_copy : "(default)");
  }

  {
    MpiCommOptions options;
    options.poll_interval_us = MpiCommOptions::kDefaultPollIntervalUs;
    auto world = MpiComm::world(options);
    if (rank == 0) std::printf("# bandwidth tables use poll %d us\n", options.poll_interval_us);
    bandwidth_table<AllReduceCase>("all_reduce", *world, args);
    bandwidth_table<AllToAllCase>("all_to_all", *world, args);
  }

  const int64_t n = static_cast<int64_t>(args.overlap_mb * (1 << 20) / 4);
  const int iters = 10;
  Compute compute;
  // Compute sized to the plain communication time of the all-reduce (no progress thread).
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  std::vector<float> rin(n, 1.0f), rout(n);
  MPI_Request req = MPI_REQUEST_NULL;
  auto raw_post = [&] {
    MPI_Iallreduce(rin.data(), rout.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, raw, &req);
  };
  auto raw_wait = [&] { MPI_Wait(&req, MPI_STATUS_IGNORE); };
  raw_post();
  raw_wait();
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now();
  for (int i = 0; i < iters; ++i) {
    raw_post();
    raw_wait();
  }
  const double raw_comm = max_over_ranks((now() - t0) / iters);
  const int reps = calibrate_reps(compute, raw_comm);

  if (rank == 0) {
    std::printf(
        "\n# overlap: %.0f MiB per op, compute = %d x sgemm 256^3 (single thread), "
        "%d iterations\n",
        args.overlap_mb, reps, iters);
    std::printf(
        "# exposed = blocked in wait / comm alone; slowdown = compute overlapped / alone\n");
    std::printf("  %-26s %9s %10s %9s %9s %8s %9s %6s\n", "case", "comm_ms", "compute_ms",
                "both_ms", "wait_ms", "exposed", "slowdown", "wrong");
  }
  {
    Overlap o = measure_overlap(compute, reps, iters, raw_post, raw_wait);
    for (float v : rout) o.wrong += v != static_cast<float>(env.world_size());
    o.wrong = sum_over_ranks(o.wrong);
    if (rank == 0) print_overlap("all_reduce, MPI only", o);
  }
  MPI_Comm_free(&raw);

  for (int poll : args.poll_us) {
    MpiCommOptions options;
    options.poll_interval_us = poll;
    auto world = MpiComm::world(options);
    for (int kind = 0; kind < 2; ++kind) {
      Work w;
      Overlap o;
      char label[64];
      if (kind == 0) {
        AllReduceCase c(*world, n);
        o = measure_overlap(
            compute, reps, iters, [&] { w = c.post(); }, [&] { w.wait(); });
        o.wrong = sum_over_ranks(c.wrong());
        std::snprintf(label, sizeof label, "all_reduce, poll %d us", poll);
      } else {
        AllToAllCase c(*world, n);
        o = measure_overlap(
            compute, reps, iters, [&] { w = c.post(); }, [&] { w.wait(); });
        o.wrong = sum_over_ranks(c.wrong());
        std::snprintf(label, sizeof label, "all_to_all, poll %d us", poll);
      }
      if (rank == 0) print_overlap(label, o);
    }
  }

  if (rank == 0) std::printf("\n# latency: 8-byte all_reduce, 2000 iterations\n");
  for (int poll : args.poll_us) {
    MpiCommOptions options;
    options.poll_interval_us = poll;
    auto world = MpiComm::world(options);
    AllReduceCase c(*world, 2);
    const double t = time_op(c, 2000);
    const int64_t wrong = sum_over_ranks(c.wrong());
    if (rank == 0) {
      std::printf("  poll %4d us: %8.1f us per all_reduce (wrong %lld)\n", poll, t * 1e6,
                  static_cast<long long>(wrong));
    }
  }
  {
    std::vector<float> x(2, 1.0f), y(2);
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    for (int i = 0; i < 2000; ++i)
      MPI_Allreduce(x.data(), y.data(), 2, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double t = max_over_ranks((now() - t0) / 2000);
    if (rank == 0)
      std::printf("  MPI_Allreduce: %8.1f us (blocking, no progress thread)\n", t * 1e6);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tessera::parallel::run_or_abort_all([&] { return run(argc, argv); });
}
