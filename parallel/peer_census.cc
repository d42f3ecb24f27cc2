#include "parallel/peer_census.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "parallel/mpi_env.h"

namespace tessera::parallel {

namespace {

constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
constexpr int kHostChars = 64;
// An answer: the query's id, then the summary text (not NUL-terminated; the count says).
constexpr size_t kAnswerBytes = sizeof(uint64_t) + PeerCensus::kAnswerChars;

struct PackedId {
  char host[kHostChars];
  int32_t pid;
};

}  // namespace

PeerCensus::PeerCensus(std::shared_ptr<const ActivityBoard> board) : board_(std::move(board)) {
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "peer census: MPI_Comm_dup(MPI_COMM_WORLD)");
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "peer census: set_errhandler");
  int size = 1;
  MPI_Comm_rank(comm_, &world_rank_);
  MPI_Comm_size(comm_, &size);
  PackedId mine{};
  gethostname(mine.host, kHostChars - 1);
  mine.host[kHostChars - 1] = '\0';
  mine.pid = static_cast<int32_t>(getpid());
  std::vector<PackedId> all(static_cast<size_t>(size));
  check_mpi(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_),
            "peer census: MPI_Allgather of host names and pids");
  for (const PackedId& p : all) {
    peers_.push_back({std::string(p.host, strnlen(p.host, kHostChars)), p.pid});
  }
  responder_ = std::thread([this] { respond_loop(); });
}

PeerCensus::~PeerCensus() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  responder_.join();
  if (!mpi_usable()) return;
  // Queries to silent peers may never be delivered: let MPI finish them on its own, and keep
  // their buffers (a few bytes each) for the process's life.
  for (UnfinishedSend& s : unfinished_sends_) {
    MPI_Request_free(&s.request);
    s.query.release();
  }
  MPI_Comm_free(&comm_);
}

std::string PeerCensus::name_rank(int world_rank) const {
  std::string s = "world rank " + std::to_string(world_rank);
  if (world_rank >= 0 && world_rank < world_size()) {
    const PeerId& p = peers_[static_cast<size_t>(world_rank)];
    s += " (host " + p.host + ", pid " + std::to_string(p.pid) + ")";
  }
  return s;
}

void PeerCensus::respond_loop() {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_, &flag, &status) == MPI_SUCCESS && flag) {
      answer(status.MPI_SOURCE);
      continue;  // more may be queued
    }
    std::unique_lock<std::mutex> lock(stop_mu_);
    if (stop_cv_.wait_for(lock, kProbeInterval, [this] { return stop_; })) return;
  }
}

void PeerCensus::answer(int source) {
  uint64_t query = 0;
  if (MPI_Recv(&query, 1, MPI_UINT64_T, source, kQueryTag, comm_, MPI_STATUS_IGNORE) !=
      MPI_SUCCESS) {
    return;
  }
  const std::string state = board_->summary(kAnswerChars);
  std::vector<char> reply(sizeof query + state.size());
  std::memcpy(reply.data(), &query, sizeof query);
  std::memcpy(reply.data() + sizeof query, state.data(), state.size());
  // Small enough for MPI's eager protocol: returns at once even if the asker has gone.
  MPI_Send(reply.data(), static_cast<int>(reply.size()), MPI_CHAR, source, kAnswerTag, comm_);
}

void PeerCensus::reap_sends() {
  std::erase_if(unfinished_sends_, [](UnfinishedSend& s) {
    int done = 0;
    MPI_Test(&s.request, &done, MPI_STATUS_IGNORE);
    return done != 0;
  });
}

std::vector<PeerCensus::Answer> PeerCensus::ask(const std::vector<int>& world_ranks,
                                                double window_s,
                                                const std::function<bool()>& stop_early) {
  std::lock_guard<std::mutex> lock(ask_mu_);
  reap_sends();
  const uint64_t query = next_query_++;
  struct Slot {
    Answer answer;
    std::vector<char> buffer;
    MPI_Request recv = MPI_REQUEST_NULL;
  };
  std::vector<Slot> slots;
  for (int r : world_ranks) {
    if (r == world_rank_ || r < 0 || r >= world_size()) continue;
    const auto same = [r](const Slot& s) { return s.answer.world_rank == r; };
    if (std::any_of(slots.begin(), slots.end(), same)) continue;
    slots.push_back({Answer{r, false, {}}, std::vector<char>(kAnswerBytes), MPI_REQUEST_NULL});
  }
  auto post_recv = [&](Slot& s) {
    check_mpi(MPI_Irecv(s.buffer.data(), static_cast<int>(kAnswerBytes), MPI_CHAR,
                        s.answer.world_rank, kAnswerTag, comm_, &s.recv),
              "peer census: MPI_Irecv");
  };
  for (Slot& s : slots) {
    post_recv(s);
    UnfinishedSend send{MPI_REQUEST_NULL, std::make_unique<uint64_t>(query)};
    check_mpi(MPI_Isend(send.query.get(), 1, MPI_UINT64_T, s.answer.world_rank, kQueryTag, comm_,
                        &send.request),
              "peer census: MPI_Isend");
    unfinished_sends_.push_back(std::move(send));
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(window_s));
  size_t waiting = slots.size();
  while (waiting > 0 && std::chrono::steady_clock::now() < deadline &&
         !(stop_early && stop_early())) {
    for (Slot& s : slots) {
      if (s.answer.answered) continue;
      int done = 0;
      MPI_Status status;
      if (MPI_Test(&s.recv, &done, &status) != MPI_SUCCESS || !done) continue;
      int count = 0;
      MPI_Get_count(&status, MPI_CHAR, &count);
      uint64_t id = 0;
      if (count >= static_cast<int>(sizeof id)) std::memcpy(&id, s.buffer.data(), sizeof id);
      if (id != query) {  // a late answer to an earlier census
        post_recv(s);
        continue;
      }
      s.answer.answered = true;
      s.answer.state.assign(s.buffer.data() + sizeof id, static_cast<size_t>(count) - sizeof id);
      --waiting;
    }
    reap_sends();
    if (waiting > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<Answer> answers;
  for (Slot& s : slots) {
    if (!s.answer.answered) {
      // Cancelling a receive completes locally; if the answer slipped in meanwhile, so be it.
      MPI_Cancel(&s.recv);
      MPI_Wait(&s.recv, MPI_STATUS_IGNORE);
    }
    answers.push_back(std::move(s.answer));
  }
  return answers;
}

CensusVerdict judge_census(const PeerCensus& census, const std::vector<PeerCensus::Answer>& answers,
                           double window_s) {
  constexpr size_t kMaxLines = 8;
  CensusVerdict v;
  std::vector<std::string> lines;
  for (const PeerCensus::Answer& a : answers) {
    if (!a.answered) v.silent.push_back(a.world_rank);
  }
  char window[32];
  std::snprintf(window, sizeof window, "%g s", window_s);
  for (int r : v.silent) {
    if (lines.size() == kMaxLines) break;
    lines.push_back(census.name_rank(r) + " did not answer a liveness check within " + window +
                    ": it is stopped (SIGSTOP?), hung or dead");
  }
  if (v.silent.size() > lines.size()) {
    lines.push_back("and " + std::to_string(v.silent.size() - lines.size()) +
                    " more silent rank(s)");
  }
  size_t answered = 0, answered_shown = 0;
  for (const PeerCensus::Answer& a : answers) {
    if (!a.answered) continue;
    ++answered;
    if (lines.size() < kMaxLines) {
      lines.push_back(census.name_rank(a.world_rank) + " is " + a.state);
      ++answered_shown;
    }
  }
  if (answered > answered_shown) {
    lines.push_back("and " + std::to_string(answered - answered_shown) + " more rank(s) answered");
  }
  for (const std::string& l : lines) v.text += "\n  " + l;
  return v;
}

}  // namespace tessera::parallel
