#include "parallel/mpi_comm.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "parallel/blocking_watch.h"
#include "parallel/env_number.h"
#include "parallel/host_reduce.h"
#include "parallel/liveness.h"
#include "parallel/mpi_env.h"
#include "parallel/mpi_group_split.h"

namespace tessera::parallel {

namespace mpi_detail {

// Runs on the progress thread when a request completes; returns the operation's error, if any.
using OnDone = std::function<std::exception_ptr(const MPI_Status&)>;

// One thread per process that drives every outstanding request of every MpiComm.
class ProgressEngine {
 public:
  ProgressEngine(int poll_interval_us, std::shared_ptr<ActivityBoard> board)
      : poll_interval_(poll_interval_us),
        board_(std::move(board)),
        shared_(std::make_shared<Shared>()),
        thread_([this] { loop(); }) {}

  ~ProgressEngine() {
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->stop = true;
    }
    shared_->cv.notify_all();
    thread_.join();
    // Whatever is left belongs to broken communicators; it is abandoned, not freed.
  }

  // in_rounds: the operation advances in rounds inside MPI's progress calls (Open MPI's
  // non-blocking all-reduce, all-gather, broadcast, barrier), so it needs polls at the interval
  // until it completes; a point-to-point operation or an all-to-all moves once its peers post.
  void add(MPI_Request request, std::shared_ptr<WorkState> work, OnDone on_done,
           std::shared_ptr<std::atomic<int>> in_flight, bool in_rounds) {
    const ActivityBoard::Id board_id = board_->begin(work->description());
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->inbox.push_back({request, Pending{std::move(work), std::move(on_done),
                                                 std::move(in_flight), board_id, in_rounds}});
    }
    shared_->cv.notify_one();
  }

  std::shared_ptr<WaiterSignal> waiter_signal() const { return shared_; }

 private:
  struct Pending {
    std::shared_ptr<WorkState> work;
    OnDone on_done;
    std::shared_ptr<std::atomic<int>> in_flight;
    ActivityBoard::Id board_id;
    bool in_rounds;  // advances a round per progress call: keep polling at the interval
  };

  // State shared with the Works (as their WaiterSignal), which may outlive the engine.
  struct Shared : WaiterSignal {
    void waiter_blocked() override {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++waiters;
      }
      cv.notify_one();  // cut a poll-interval sleep short
    }
    void waiter_unblocked() override {
      std::lock_guard<std::mutex> lock(mu);
      --waiters;
    }
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    int waiters = 0;  // threads blocked in Work::wait()
    std::vector<std::pair<MPI_Request, Pending>> inbox;
  };

  void finish(Pending& p, std::exception_ptr error, const MPI_Status* status) {
    // A Work already failed by the watchdog may have had its buffers released: leave them.
    if (!error && p.on_done && status && !p.work->done()) error = p.on_done(*status);
    p.work->complete(std::move(error));
    board_->end(p.board_id);
    p.in_flight->fetch_sub(1);
  }

  void loop() {
    using Clock = std::chrono::steady_clock;
    std::vector<MPI_Request> requests;  // owned by this thread
    std::vector<Pending> pending;
    std::vector<int> indices;
    std::vector<MPI_Status> statuses;
    bool progressed = true;
    bool spinning = false;
    Clock::time_point idle_since = Clock::now();  // the last progress while somebody waits
    std::chrono::microseconds backoff{0};
    // The sleep between polls while the caller computes: the poll interval after a post or a
    // completion, doubling up to kMaxPollSleep while polls find nothing to complete, unless an
    // operation that advances in rounds is pending (`in_rounds` of them).
    std::chrono::microseconds poll_sleep = poll_interval_;
    int in_rounds = 0;
    Shared& sh = *shared_;
    for (;;) {
      bool spin = false;
      {
        std::unique_lock<std::mutex> lock(sh.mu);
        if (requests.empty()) {
          // Idle: no CPU at all until something is posted.
          sh.cv.wait(lock, [&] { return sh.stop || !sh.inbox.empty(); });
        } else if (!progressed && sh.waiters == 0 && poll_interval_.count() > 0) {
          // Requests pending while the caller computes: poll, sleeping longer after each poll
          // that completed nothing (a receive posted long before its sender sends costs ~1k
          // wake-ups a second, not 20k: each one takes the core from compute), but wake at
          // once for a new request or a caller starting to wait.
          sh.cv.wait_for(lock, in_rounds > 0 ? poll_interval_ : poll_sleep,
                         [&] { return sh.stop || !sh.inbox.empty() || sh.waiters > 0; });
          if (in_rounds == 0) {
            poll_sleep = std::min(std::max(kMaxPollSleep, poll_interval_), 2 * poll_sleep);
          }
        } else if (backoff.count() > 0) {
          // Somebody has waited long: poll less often (a stalled peer costs no core), but wake
          // at once for a new request.
          sh.cv.wait_for(lock, backoff, [&] { return sh.stop || !sh.inbox.empty(); });
        }
        if (sh.stop) return;
        if (!sh.inbox.empty()) {
          idle_since = Clock::now();
          poll_sleep = poll_interval_;
        }
        for (auto& [request, p] : sh.inbox) {
          in_rounds += p.in_rounds ? 1 : 0;
          requests.push_back(request);
          pending.push_back(std::move(p));
        }
        sh.inbox.clear();
        spin = sh.waiters > 0 || poll_interval_.count() == 0;
      }
      if (spin && !spinning) idle_since = Clock::now();
      spinning = spin;
      const int n = static_cast<int>(requests.size());
      indices.resize(n);
      statuses.resize(n);
      int outcount = 0;
      const int rc = MPI_Testsome(n, requests.data(), &outcount, indices.data(), statuses.data());
      if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
        // The requests' state is unknown: fail them all (their communicators are unusable).
        const std::string msg = "MPI_Testsome: " + mpi_error_string(rc);
        for (auto& p : pending) {
          finish(p, std::make_exception_ptr(std::runtime_error(p.work->description() + ": " + msg)),
                 nullptr);
        }
        requests.clear();
        pending.clear();
        in_rounds = 0;
        continue;
      }
      if (outcount == MPI_UNDEFINED) outcount = 0;
      for (int k = 0; k < outcount; ++k) {
        Pending& p = pending[indices[k]];
        const int err = rc == MPI_ERR_IN_STATUS ? statuses[k].MPI_ERROR : MPI_SUCCESS;
        std::exception_ptr error;
        if (err != MPI_SUCCESS) {
          error = std::make_exception_ptr(
              std::runtime_error(p.work->description() + ": " + mpi_error_string(err)));
        }
        in_rounds -= p.in_rounds ? 1 : 0;
        finish(p, std::move(error), &statuses[k]);
        requests[indices[k]] = MPI_REQUEST_NULL;  // Testsome did this too; be explicit
      }
      progressed = outcount > 0;
      const std::chrono::microseconds previous_backoff = std::exchange(backoff, {});
      if (progressed) {
        idle_since = Clock::now();
        poll_sleep = poll_interval_;
        size_t kept = 0;
        for (size_t i = 0; i < requests.size(); ++i) {
          if (requests[i] == MPI_REQUEST_NULL) continue;
          requests[kept] = requests[i];
          pending[kept] = std::move(pending[i]);
          ++kept;
        }
        requests.resize(kept);
        pending.resize(kept);
      } else if (spin) {
        // Somebody waits: poll back to back (yielding the core) for kSpinWindow, so a short
        // operation completes with no added latency; after that back off, doubling the sleep
        // up to kMaxBackoff, so a rank waiting for a slow or stopped peer does not spin.
        if (Clock::now() - idle_since < kSpinWindow) {
          std::this_thread::yield();
        } else {
          backoff = std::min(kMaxBackoff, std::max(kMinBackoff, 2 * previous_backoff));
        }
      }
    }
  }

  // bench-moe, 2 ranks on 2 cores (Zen 5), median step against polls every 50 us throughout:
  // pp2 interleaved 0.218 -> 0.192 s, dualpipev 3% faster, 1f1b, dp2, dp2 ep2 unchanged. A fixed
  // 1 ms interval instead made dp2 ep2 ~4% slower: its exchanges, posted right before the
  // compute that hides them, need prompt polls (hence the reset at every post and completion).
  static constexpr std::chrono::microseconds kMaxPollSleep{1000};
  static constexpr std::chrono::microseconds kSpinWindow{2000};
  static constexpr std::chrono::microseconds kMinBackoff{20};
  static constexpr std::chrono::microseconds kMaxBackoff{1000};
  const std::chrono::microseconds poll_interval_;
  std::shared_ptr<ActivityBoard> board_;
  std::shared_ptr<Shared> shared_;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace mpi_detail

struct MpiComm::Request {
  std::string description;
  std::function<int(MPI_Request*)> post;
  mpi_detail::OnDone on_done;         // may be empty
  std::shared_ptr<const void> owner;  // kept alive until completion; may be null
  bool in_rounds = false;             // ProgressEngine::add's in_rounds
};

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kU16:
      return MPI_UINT16_T;
    case DType::kU32:
      return MPI_UINT32_T;
  }
  throw std::invalid_argument("MpiComm: unsupported dtype");
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kProd:
      return MPI_PROD;
    case ReduceOp::kMin:
      return MPI_MIN;
    case ReduceOp::kMax:
      return MPI_MAX;
  }
  throw std::invalid_argument("MpiComm: unsupported reduce op");
}

// MPI counts are int. REQUIRES-style check with a message naming the operation.
int to_int(int64_t n, const std::string& what) {
  if (n < 0 || n > INT_MAX) {
    throw std::invalid_argument(what + ": count or displacement " + std::to_string(n) +
                                " does not fit MPI's int (split the operation)");
  }
  return static_cast<int>(n);
}

std::string count_detail(DType dtype, int64_t count) {
  return std::string(kernels::dtype_name(dtype)) + " x " + std::to_string(count);
}

}  // namespace

double MpiCommOptions::default_timeout_s() {
  return env_number("TESSERA_COMM_TIMEOUT_S", kDefaultTimeoutS);
}

double MpiCommOptions::default_stall_s() {
  return env_number("TESSERA_COMM_STALL_S", kDefaultStallS);
}

int MpiCommOptions::default_poll_interval_us() {
  const double us = env_number("TESSERA_COMM_POLL_US", kDefaultPollIntervalUs);
  if (us < 0 || us > 1e6) {
    throw std::invalid_argument("TESSERA_COMM_POLL_US=" + std::to_string(us) +
                                " is outside [0, 1000000]");
  }
  return static_cast<int>(us);
}

std::unique_ptr<MpiComm> MpiComm::world(const MpiCommOptions& options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    throw std::logic_error("MpiComm::world: MPI is not initialized (create an MpiEnv first)");
  }
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    throw std::runtime_error(
        "MpiComm::world: MPI was initialized without MPI_THREAD_MULTIPLE, which the progress "
        "thread needs (use MpiEnv)");
  }
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup(MPI_COMM_WORLD)");
  check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  auto liveness = std::make_shared<Liveness>(options.stall_s, options.liveness_window_s);
  auto watch = std::make_shared<BlockingWatch>(liveness);
  auto engine = std::make_shared<mpi_detail::ProgressEngine>(options.poll_interval_us,
                                                             liveness->shared_board());
  return std::unique_ptr<MpiComm>(new MpiComm(comm, std::move(engine), "world", options.timeout_s,
                                              std::move(liveness), std::move(watch)));
}

MpiComm::MpiComm(MPI_Comm comm, std::shared_ptr<mpi_detail::ProgressEngine> engine,
                 std::string name, double timeout_s, std::shared_ptr<Liveness> liveness,
                 std::shared_ptr<BlockingWatch> blocking_watch)
    : Comm(std::move(name)),
      comm_(comm),
      engine_(std::move(engine)),
      liveness_(std::move(liveness)),
      blocking_watch_(std::move(blocking_watch)),
      timeout_s_(timeout_s),
      broken_(std::make_shared<std::atomic<bool>>(false)),
      in_flight_(std::make_shared<std::atomic<int>>(0)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // Member -> world rank, for messages and liveness checks.
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> members(static_cast<size_t>(size_));
  for (int i = 0; i < size_; ++i) members[static_cast<size_t>(i)] = i;
  world_ranks_.resize(members.size());
  MPI_Group_translate_ranks(group, size_, members.data(), world_group, world_ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
}

std::string MpiComm::where() const {
  std::string s = "on comm '" + name() + "' (rank " + std::to_string(rank_) + " of " +
                  std::to_string(size_);
  if (name() != "world") {
    std::vector<int> sorted = world_ranks_;
    std::sort(sorted.begin(), sorted.end());
    s += std::string(size_ == 1 ? ", world rank " : ", world ranks ") + format_rank_list(sorted);
  }
  return s + ")";
}

std::vector<int> MpiComm::other_members() const {
  std::vector<int> peers;
  for (int i = 0; i < size_; ++i) {
    if (i != rank_) peers.push_back(world_ranks_[static_cast<size_t>(i)]);
  }
  return peers;
}

std::string MpiComm::peer_detail(int rank) const {
  if (rank < 0 || rank >= size_) return "";
  return " (world rank " + std::to_string(world_ranks_[static_cast<size_t>(rank)]) + ")";
}

MpiComm::~MpiComm() {
  using Clock = std::chrono::steady_clock;
  // Outstanding requests still use the communicator. Wait for them as long as the watchdog
  // would (forever without one); a broken communicator's may never finish: give them a moment.
  const double limit = broken() ? 1.0 : timeout_s();
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(std::max(limit, 0.0)));
  while (in_flight_->load() > 0 && (limit <= 0 || Clock::now() < deadline)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (in_flight_->load() == 0) {
    MPI_Comm_free(&comm_);
  } else {
    std::fprintf(stderr,
                 "tessera: communicator '%s' destroyed with %d MPI operation(s) outstanding "
                 "(after a timeout?); leaking it\n",
                 name().c_str(), in_flight_->load());
  }
}

Work MpiComm::submit(Request request, std::vector<int> peers) {
  if (broken()) {
    throw std::runtime_error("cannot post " + request.description +
                             ": the communicator is broken " +
                             "after a communication timeout (call abort_all)");
  }
  WorkState::Options o = work_options(std::move(request.description));
  o.timeout_s = timeout_s();
  o.on_timeout = [broken = broken_] { broken->store(true); };
  o.waiter_signal = engine_->waiter_signal();
  if (!peers.empty()) {
    // Weak: a Work may outlive its communicators (and the census's MPI communicator).
    std::weak_ptr<Liveness> weak = liveness_;
    o.stall_s = liveness_->stall_s();
    o.on_stall = [weak, peers, what = o.description](double waited,
                                                      const std::function<bool()>& done)
        -> std::optional<std::string> {
      const std::shared_ptr<Liveness> live = weak.lock();
      if (!live) return std::nullopt;
      try {
        return live->check_stalled(what, peers, waited, done);
      } catch (const std::exception& e) {  // the census's own MPI calls failed: so does the wait
        return what + ": the liveness check failed: " + e.what();
      }
    };
    o.diagnose = [weak, peers]() -> std::string {
      const std::shared_ptr<Liveness> live = weak.lock();
      try {
        return live ? live->diagnose(peers) : std::string();
      } catch (const std::exception& e) {
        return std::string("\n  (the liveness check failed: ") + e.what() + ")";
      }
    };
  }
  auto work = std::make_shared<WorkState>(std::move(o));
  if (request.owner) work->keep_alive(std::move(request.owner));
  MPI_Request mpi_request = MPI_REQUEST_NULL;
  const int rc = request.post(&mpi_request);
  if (rc != MPI_SUCCESS) {
    const std::string msg = work->description() + ": " + mpi_error_string(rc);
    work->complete(std::make_exception_ptr(std::runtime_error(msg)));
    throw std::runtime_error(msg);
  }
  in_flight_->fetch_add(1);
  engine_->add(mpi_request, work, std::move(request.on_done), in_flight_, request.in_rounds);
  return Work(work);
}

Work MpiComm::post_all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("all_reduce", next_collective_seq(),
                           count_detail(dtype, count) + ", " + reduce_op_name(op));
  r.in_rounds = true;
  const int n = to_int(count, r.description);
  r.post = [=, this](MPI_Request* req) {
    return MPI_Iallreduce(in == out ? MPI_IN_PLACE : in, out, n, mpi_type(dtype), mpi_op(op), comm_,
                          req);
  };
  return submit(std::move(r), other_members());
}

Work MpiComm::post_reduce_scatter(const void* in, void* out, int64_t count_per_rank, DType dtype,
                                  ReduceOp op) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description =
      describe("reduce_scatter", next_collective_seq(),
               count_detail(dtype, count_per_rank) + " per rank, " + reduce_op_name(op));
  const int n = to_int(count_per_rank, r.description);
  to_int(count_per_rank * size_, r.description);
  // Not MPI_Ireduce_scatter_block: Open MPI's non-blocking one (libnbc) reduces the whole
  // buffer on rank 0 and scatters it back, so rank 0 sums p slices and moves twice the data,
  // inside a progress call that takes the core from its compute. Here every rank sends slice q
  // to rank q (one all-to-all: (p - 1) / p of the buffer, as a ring) and, once they have
  // arrived, combines its own slice with the others' in a fixed order (its own first, then
  // the others by rank), so a layout gives the same bits on every run. (Two ranks: the same
  // bits as any order, the ops being commutative.)
  const size_t bytes = count_per_rank * kernels::dtype_size(dtype);
  struct Args {
    std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
    std::unique_ptr<char[]> received;  // the others' slices of ours, by rank, self skipped
  };
  auto args = std::make_shared<Args>();
  for (int q = 0; q < size_; ++q) {
    const int count = q == rank_ ? 0 : n;
    args->send_counts.push_back(count);
    args->send_displs.push_back(q * n);
    args->recv_counts.push_back(count);
    args->recv_displs.push_back((q == rank_ ? 0 : q < rank_ ? q : q - 1) * n);  // self skipped
  }
  // Not zeroed: MPI writes every byte read.
  args->received.reset(new char[std::max<size_t>(1, bytes * (size_ - 1))]);
  const Args* a = args.get();
  r.post = [=, this](MPI_Request* req) {
    const MPI_Datatype t = mpi_type(dtype);
    return MPI_Ialltoallv(in, a->send_counts.data(), a->send_displs.data(), t,
                          a->received.get(), a->recv_counts.data(), a->recv_displs.data(), t,
                          comm_, req);
  };
  const char* mine = static_cast<const char*>(in) + rank_ * bytes;
  r.on_done = [args, mine, out, bytes, count_per_rank, dtype, op,
               others = size_ - 1](const MPI_Status&) -> std::exception_ptr {
    if (mine != out && bytes > 0) std::memmove(out, mine, bytes);
    for (int i = 0; i < others; ++i) {
      reduce_into(out, args->received.get() + i * bytes, count_per_rank, dtype, op);
    }
    return nullptr;
  };
  r.owner = std::move(args);
  return submit(std::move(r), other_members());
}

Work MpiComm::post_all_gather(const void* in, void* out, int64_t count_per_rank, DType dtype) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("all_gather", next_collective_seq(),
                           count_detail(dtype, count_per_rank) + " per rank");
  r.in_rounds = true;
  const int n = to_int(count_per_rank, r.description);
  to_int(count_per_rank * size_, r.description);
  const bool in_place =
      in == static_cast<const char*>(out) + rank_ * count_per_rank * kernels::dtype_size(dtype);
  r.post = [=, this](MPI_Request* req) {
    if (in_place) {
      return MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, n, mpi_type(dtype), comm_,
                            req);
    }
    return MPI_Iallgather(in, n, mpi_type(dtype), out, n, mpi_type(dtype), comm_, req);
  };
  return submit(std::move(r), other_members());
}

Work MpiComm::post_all_to_all_v(const void* in, int64_t in_count, void* out, DType dtype,
                                const AllToAllVOptions& options) {
  std::lock_guard<std::mutex> lock(post_mu_);
  // The int arrays MPI reads until completion, and for the in-place form a copy of the input.
  struct Args {
    std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
    std::vector<char> input_copy;
  };
  auto args = std::make_shared<Args>();
  int64_t sent = 0, received = 0;
  for (int64_t c : options.send_counts) sent += c;
  for (int64_t c : options.recv_counts) received += c;
  Request r;
  r.description = describe("all_to_all_v", next_collective_seq(),
                           std::string(kernels::dtype_name(dtype)) + ", send " +
                               std::to_string(sent) + ", recv " + std::to_string(received));
  auto convert = [&](const std::vector<int64_t>& v, std::vector<int>& to) {
    to.reserve(v.size());
    for (int64_t x : v) to.push_back(to_int(x, r.description));
  };
  convert(options.send_counts, args->send_counts);
  convert(options.send_displs, args->send_displs);
  convert(options.recv_counts, args->recv_counts);
  convert(options.recv_displs, args->recv_displs);
  const void* send = in;
  if (in == out) {
    // MPI's in-place all-to-all-v needs symmetric counts; a copy of the input serves any.
    const char* src = static_cast<const char*>(in);
    args->input_copy.assign(src, src + in_count * kernels::dtype_size(dtype));
    send = args->input_copy.data();
  }
  const Args* a = args.get();
  r.post = [=, this](MPI_Request* req) {
    const MPI_Datatype t = mpi_type(dtype);
    return MPI_Ialltoallv(send, a->send_counts.data(), a->send_displs.data(), t, out,
                          a->recv_counts.data(), a->recv_displs.data(), t, comm_, req);
  };
  r.owner = std::move(args);
  return submit(std::move(r), other_members());
}

Work MpiComm::post_send(const void* data, int64_t count, DType dtype, int dst, int tag) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("send", next_p2p_seq(),
                           count_detail(dtype, count) + " to rank " + std::to_string(dst) +
                               peer_detail(dst) + ", tag " + std::to_string(tag));
  const int n = to_int(count, r.description);
  r.post = [=, this](MPI_Request* req) {
    return MPI_Isend(data, n, mpi_type(dtype), dst, tag, comm_, req);
  };
  return submit(std::move(r), {world_rank(dst)});
}

Work MpiComm::post_recv(void* data, int64_t count, DType dtype, int src, int tag) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("recv", next_p2p_seq(),
                           count_detail(dtype, count) + " from rank " + std::to_string(src) +
                               peer_detail(src) + ", tag " + std::to_string(tag));
  const int n = to_int(count, r.description);
  r.post = [=, this](MPI_Request* req) {
    return MPI_Irecv(data, n, mpi_type(dtype), src, tag, comm_, req);
  };
  const std::string what = r.description;
  r.on_done = [=](const MPI_Status& status) -> std::exception_ptr {
    int got = 0;
    MPI_Status copy = status;
    MPI_Get_count(&copy, mpi_type(dtype), &got);
    if (got == n) return nullptr;
    return std::make_exception_ptr(
        std::runtime_error(what + ": received " + std::to_string(got) + " elements, expected " +
                           std::to_string(n) + " (the matching send has a different count)"));
  };
  return submit(std::move(r), {world_rank(src)});
}

Work MpiComm::post_broadcast(void* data, int64_t count, DType dtype, int root) {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("broadcast", next_collective_seq(),
                           count_detail(dtype, count) + ", root " + std::to_string(root));
  r.in_rounds = true;
  const int n = to_int(count, r.description);
  r.post = [=, this](MPI_Request* req) {
    return MPI_Ibcast(data, n, mpi_type(dtype), root, comm_, req);
  };
  return submit(std::move(r), other_members());
}

Work MpiComm::post_barrier() {
  std::lock_guard<std::mutex> lock(post_mu_);
  Request r;
  r.description = describe("barrier", next_collective_seq(), "");
  r.in_rounds = true;
  r.post = [this](MPI_Request* req) { return MPI_Ibarrier(comm_, req); };
  return submit(std::move(r), other_members());
}

std::unique_ptr<Comm> MpiComm::split(const std::vector<int>& ranks, std::string name) {
  check_split_ranks(ranks);
  std::lock_guard<std::mutex> lock(post_mu_);
  if (broken()) {
    throw std::runtime_error("cannot split comm '" + this->name() +
                             "': it is broken after a communication timeout");
  }
  if (name.empty()) name = default_split_name(ranks);
  const std::string what = describe("split", next_collective_seq(), "group " + name);
  const MpiGroupSplit sub = split_mpi_group(comm_, rank_, ranks, name, what);
  return std::unique_ptr<Comm>(new MpiComm(sub.comm, engine_, std::move(name), timeout_s(),
                                           liveness_, blocking_watch_));
}

MPI_Comm mpi_handle(const Comm& comm, const std::string& user) {
  const auto* mpi = dynamic_cast<const MpiComm*>(&comm);
  if (!mpi) {
    throw std::logic_error(user + " needs an MPI communicator (MPI-IO); '" + comm.name() +
                           "' is not one");
  }
  return mpi->handle();
}

}  // namespace tessera::parallel
