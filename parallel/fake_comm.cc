#include "parallel/fake_comm.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "parallel/host_reduce.h"

namespace tessera::parallel {

namespace fake_detail {

// The error of operations failed because another rank failed first (run_fake_ranks reports the
// original failure instead).
class WorldAborted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Kind {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kAllToAllV,
  kBroadcast,
  kBarrier,
  kSplit
};

// One rank's part of a collective.
struct Post {
  Kind kind = Kind::kBarrier;
  int64_t seq = 0;
  const void* in = nullptr;
  void* out = nullptr;
  int64_t count = 0;  // all_reduce, broadcast: elements; reduce_scatter, all_gather: per rank
  DType dtype = DType::kF32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  AllToAllVOptions a2a;
  std::vector<int> split_ranks;
  std::shared_ptr<std::shared_ptr<Group>> split_out;
  std::string signature;  // must be identical on every rank
  std::shared_ptr<WorkState> work;
};

struct Slot {
  std::vector<std::optional<Post>> posts;  // indexed by rank
  int arrived = 0;
  std::string error;
};

struct P2P {
  const void* send = nullptr;
  void* recv = nullptr;
  int64_t count = 0;
  DType dtype = DType::kF32;
  std::shared_ptr<WorkState> work;
};

struct Group {
  Group(std::shared_ptr<World> w, std::vector<int> members)
      : world(std::move(w)),
        size(static_cast<int>(members.size())),
        world_ranks(std::move(members)) {}
  std::shared_ptr<World> world;
  const int size;
  const std::vector<int> world_ranks;  // group rank -> world rank
  std::mutex mu;
  std::map<int64_t, Slot> slots;                                      // pending collectives by seq
  std::map<std::tuple<int, int, int>, std::deque<P2P>> sends, recvs;  // by (src, dst, tag)
};

struct World {
  World(FakeCommOptions o, int n) : options(o), finished(n) {}

  std::shared_ptr<Group> new_group(const std::shared_ptr<World>& self,
                                   std::vector<int> world_ranks) {
    auto g = std::make_shared<Group>(self, std::move(world_ranks));
    std::lock_guard<std::mutex> lock(mu);
    groups.push_back(g);
    return g;
  }

  // Called with the work's group lock held. Returns false (and fails the work) once aborted.
  bool register_work(const std::shared_ptr<WorkState>& work) {
    std::string why;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!aborted) {
        if (pending.size() > 256) {
          std::erase_if(pending, [](const std::weak_ptr<WorkState>& w) {
            auto s = w.lock();
            return !s || s->done();
          });
        }
        pending.push_back(work);
        return true;
      }
      why = reason;
    }
    work->complete(std::make_exception_ptr(
        WorldAborted("fake comm world aborted (" + why + "); cannot post " + work->description())));
    return false;
  }

  void abort(const std::string& why) {
    std::vector<std::weak_ptr<WorkState>> works;
    std::vector<std::weak_ptr<Group>> gs;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (aborted) return;
      aborted = true;
      reason = why;
      works.swap(pending);
      gs = groups;
    }
    // Taking each group lock once waits out a rank that is moving data into buffers whose
    // owners are about to be released; later posts see `aborted` and move nothing.
    for (auto& weak : gs) {
      if (auto g = weak.lock()) std::lock_guard<std::mutex> lock(g->mu);
    }
    for (auto& weak : works) {
      if (auto w = weak.lock()) {
        w->complete(std::make_exception_ptr(WorldAborted(
            "fake comm world aborted (" + why + ") while " + w->description() + " was pending")));
      }
    }
  }

  // Fails what waits on a rank that will post nothing more (its function returned).
  void finish(int world_rank);

  const FakeCommOptions options;
  std::vector<std::atomic<bool>> finished;  // by world rank
  std::mutex mu;
  bool aborted = false;
  std::string reason;
  std::vector<std::weak_ptr<WorkState>> pending;
  std::vector<std::weak_ptr<Group>> groups;
};

}  // namespace fake_detail

namespace {

using fake_detail::Group;
using fake_detail::Kind;
using fake_detail::Post;
using fake_detail::Slot;
using fake_detail::World;

void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}

std::string list_string(const std::vector<int>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

// "" unless a member that has not posted this collective yet has finished (will never post).
std::string missing_finished_rank(const Group& g, const Slot& slot) {
  const Post* posted = nullptr;
  for (const auto& p : slot.posts) {
    if (p) posted = &*p;
  }
  for (int r = 0; r < g.size; ++r) {
    if (!slot.posts[r] && g.world->finished[g.world_ranks[r]].load()) {
      return posted->work->description() + ": rank " + std::to_string(r) +
             " of the group returned without posting it";
    }
  }
  return "";
}

// Fails a queued send/recv whose peer has finished. Returns true if it did.
bool fail_if_peer_finished(const Group& g, fake_detail::P2P& op, int peer, const char* what) {
  if (!g.world->finished[g.world_ranks[peer]].load()) return false;
  op.work->complete(std::make_exception_ptr(
      std::runtime_error(op.work->description() + ": rank " + std::to_string(peer) +
                         " returned without " + what + " it")));
  return true;
}

// Moves the data of a collective every rank has posted. Throws on cross-rank inconsistencies.
void execute(std::vector<std::optional<Post>>& posts, Group& group) {
  const int p = static_cast<int>(posts.size());
  const Post& first = *posts[0];
  const size_t esize = kernels::dtype_size(first.dtype);
  switch (first.kind) {
    case Kind::kAllReduce: {
      const int64_t n = first.count;
      std::vector<char> acc(n * esize);
      copy_bytes(acc.data(), posts[0]->in, acc.size());
      for (int r = 1; r < p; ++r) reduce_into(acc.data(), posts[r]->in, n, first.dtype, first.op);
      for (int r = 0; r < p; ++r) copy_bytes(posts[r]->out, acc.data(), acc.size());
      return;
    }
    case Kind::kReduceScatter: {
      const int64_t n = first.count;
      const size_t slice = n * esize;
      std::vector<std::vector<char>> result(p, std::vector<char>(slice));
      for (int r = 0; r < p; ++r) {
        copy_bytes(result[r].data(), static_cast<const char*>(posts[0]->in) + r * slice, slice);
        for (int q = 1; q < p; ++q) {
          reduce_into(result[r].data(), static_cast<const char*>(posts[q]->in) + r * slice, n,
                      first.dtype, first.op);
        }
      }
      for (int r = 0; r < p; ++r) copy_bytes(posts[r]->out, result[r].data(), slice);
      return;
    }
    case Kind::kAllGather: {
      const size_t slice = first.count * esize;
      std::vector<char> gathered(slice * p);
      for (int r = 0; r < p; ++r) copy_bytes(gathered.data() + r * slice, posts[r]->in, slice);
      for (int r = 0; r < p; ++r) copy_bytes(posts[r]->out, gathered.data(), gathered.size());
      return;
    }
    case Kind::kAllToAllV: {
      for (int i = 0; i < p; ++i) {
        for (int j = 0; j < p; ++j) {
          const int64_t sent = posts[i]->a2a.send_counts[j];
          const int64_t expected = posts[j]->a2a.recv_counts[i];
          if (sent != expected) {
            throw std::runtime_error("rank " + std::to_string(i) + " sends " +
                                     std::to_string(sent) + " elements to rank " +
                                     std::to_string(j) + ", which expects " +
                                     std::to_string(expected));
          }
        }
      }
      // Stage every block first: in and out may be the same buffer.
      std::vector<std::vector<std::vector<char>>> blocks(p, std::vector<std::vector<char>>(p));
      for (int i = 0; i < p; ++i) {
        const char* in = static_cast<const char*>(posts[i]->in);
        for (int j = 0; j < p; ++j) {
          const size_t bytes = posts[i]->a2a.send_counts[j] * esize;
          const char* src = in + posts[i]->a2a.send_displs[j] * esize;
          blocks[i][j].assign(src, src + bytes);
        }
      }
      for (int j = 0; j < p; ++j) {
        char* out = static_cast<char*>(posts[j]->out);
        for (int i = 0; i < p; ++i) {
          copy_bytes(out + posts[j]->a2a.recv_displs[i] * esize, blocks[i][j].data(),
                     blocks[i][j].size());
        }
      }
      return;
    }
    case Kind::kBroadcast: {
      const char* src = static_cast<const char*>(posts[first.root]->out);
      std::vector<char> data(src, src + first.count * esize);
      for (int r = 0; r < p; ++r) {
        if (r != first.root) copy_bytes(posts[r]->out, data.data(), data.size());
      }
      return;
    }
    case Kind::kBarrier:
      return;
    case Kind::kSplit: {
      for (int r = 0; r < p; ++r) {
        for (int m : posts[r]->split_ranks) {
          if (posts[m]->split_ranks != posts[r]->split_ranks) {
            throw std::runtime_error("rank " + std::to_string(r) + "'s group " +
                                     list_string(posts[r]->split_ranks) + " includes rank " +
                                     std::to_string(m) + ", whose group is " +
                                     list_string(posts[m]->split_ranks));
          }
        }
      }
      std::map<std::vector<int>, std::shared_ptr<Group>> groups;
      for (int r = 0; r < p; ++r) {
        const std::vector<int>& members = posts[r]->split_ranks;
        auto& g = groups[members];
        if (!g) {
          std::vector<int> world_ranks;
          for (int m : members) world_ranks.push_back(group.world_ranks[m]);
          g = group.world->new_group(group.world, std::move(world_ranks));
        }
        *posts[r]->split_out = g;
      }
      return;
    }
  }
}

}  // namespace

void fake_detail::World::finish(int world_rank) {
  finished[world_rank].store(true);
  std::vector<std::weak_ptr<Group>> gs;
  {
    std::lock_guard<std::mutex> lock(mu);
    gs = groups;
  }
  for (auto& weak : gs) {
    auto g = weak.lock();
    if (!g) continue;
    std::lock_guard<std::mutex> lock(g->mu);
    for (auto& [seq, slot] : g->slots) {
      if (!slot.error.empty()) continue;
      slot.error = missing_finished_rank(*g, slot);
      if (slot.error.empty()) continue;
      for (auto& p : slot.posts) {
        if (p) p->work->complete(std::make_exception_ptr(std::runtime_error(slot.error)));
      }
    }
    // Failed operations stay queued: they are still unmatched (run_fake_ranks reports them).
    for (auto& [key, queue] : g->recvs) {
      for (auto& op : queue) fail_if_peer_finished(*g, op, std::get<0>(key), "sending");
    }
    for (auto& [key, queue] : g->sends) {
      for (auto& op : queue) fail_if_peer_finished(*g, op, std::get<1>(key), "receiving");
    }
  }
}

void FakeComm::mark_finished() { group_->world->finish(group_->world_ranks[rank_]); }

std::vector<std::unique_ptr<FakeComm>> FakeComm::create_world(int n,
                                                              const FakeCommOptions& options) {
  if (n < 1) throw std::invalid_argument("FakeComm::create_world: n = " + std::to_string(n));
  auto world = std::make_shared<World>(options, n);
  std::vector<int> all(n);
  std::iota(all.begin(), all.end(), 0);
  auto group = world->new_group(world, all);
  std::vector<std::unique_ptr<FakeComm>> comms;
  for (int r = 0; r < n; ++r) comms.emplace_back(new FakeComm(group, r, "world"));
  return comms;
}

FakeComm::FakeComm(std::shared_ptr<Group> group, int rank, std::string name)
    : Comm(std::move(name)), group_(std::move(group)), rank_(rank) {}

FakeComm::~FakeComm() = default;

int FakeComm::size() const { return group_->size; }

void FakeComm::abort_world(const std::string& reason) { group_->world->abort(reason); }

std::vector<std::string> FakeComm::unmatched_operations() const {
  std::vector<std::weak_ptr<Group>> groups;
  {
    std::lock_guard<std::mutex> lock(group_->world->mu);
    groups = group_->world->groups;
  }
  std::vector<std::string> out;
  for (auto& weak : groups) {
    auto g = weak.lock();
    if (!g) continue;
    std::lock_guard<std::mutex> lock(g->mu);
    for (auto& [seq, slot] : g->slots) {
      for (auto& post : slot.posts) {
        if (post) out.push_back(post->work->description());
      }
    }
    for (auto* queues : {&g->sends, &g->recvs}) {
      for (auto& [key, queue] : *queues) {
        for (auto& op : queue) out.push_back(op.work->description());
      }
    }
  }
  return out;
}

std::shared_ptr<WorkState> FakeComm::new_work(std::string description) {
  WorkState::Options o = work_options(std::move(description));
  o.timeout_s = group_->world->options.timeout_s;
  std::weak_ptr<World> weak_world = group_->world;
  const std::string what = o.description;
  o.on_timeout = [weak_world, what] {
    if (auto w = weak_world.lock()) w->abort("timeout of " + what);
  };
  return std::make_shared<WorkState>(std::move(o));
}

Work FakeComm::post_collective(Post post) {
  Group& g = *group_;
  std::shared_ptr<WorkState> work = post.work;
  std::lock_guard<std::mutex> lock(g.mu);
  if (!g.world->register_work(work)) return Work(work);
  const int64_t seq = post.seq;
  Slot& slot = g.slots[seq];
  if (slot.posts.empty()) slot.posts.resize(g.size);
  if (slot.error.empty()) {
    for (int r = 0; r < g.size; ++r) {
      if (slot.posts[r] && slot.posts[r]->signature != post.signature) {
        slot.error = "collective mismatch at #" + std::to_string(seq) + " on comm '" + name() +
                     "': rank " + std::to_string(r) + " posted " + slot.posts[r]->signature +
                     ", rank " + std::to_string(rank_) + " posted " + post.signature;
        break;
      }
    }
  }
  slot.posts[rank_] = std::move(post);
  ++slot.arrived;
  if (slot.error.empty()) slot.error = missing_finished_rank(g, slot);
  if (slot.arrived == g.size && slot.error.empty()) {
    try {
      execute(slot.posts, g);
    } catch (const std::exception& e) {
      slot.error = slot.posts[0]->work->description() + ": " + e.what();
    }
  }
  if (!slot.error.empty()) {
    for (auto& p : slot.posts) {
      if (p) p->work->complete(std::make_exception_ptr(std::runtime_error(slot.error)));
    }
  } else if (slot.arrived == g.size) {
    for (auto& p : slot.posts) p->work->complete();
  }
  if (slot.arrived == g.size) g.slots.erase(seq);
  return Work(work);
}

namespace {
std::string count_detail(DType dtype, int64_t count) {
  return std::string(kernels::dtype_name(dtype)) + " x " + std::to_string(count);
}
}  // namespace

Work FakeComm::post_all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op) {
  Post p;
  p.kind = Kind::kAllReduce;
  p.seq = next_collective_seq();
  p.in = in;
  p.out = out;
  p.count = count;
  p.dtype = dtype;
  p.op = op;
  const std::string detail = count_detail(dtype, count) + ", " + reduce_op_name(op);
  p.signature = "all_reduce(" + detail + ")";
  p.work = new_work(describe("all_reduce", p.seq, detail));
  return post_collective(std::move(p));
}

Work FakeComm::post_reduce_scatter(const void* in, void* out, int64_t count_per_rank, DType dtype,
                                   ReduceOp op) {
  Post p;
  p.kind = Kind::kReduceScatter;
  p.seq = next_collective_seq();
  p.in = in;
  p.out = out;
  p.count = count_per_rank;
  p.dtype = dtype;
  p.op = op;
  const std::string detail =
      count_detail(dtype, count_per_rank) + " per rank, " + reduce_op_name(op);
  p.signature = "reduce_scatter(" + detail + ")";
  p.work = new_work(describe("reduce_scatter", p.seq, detail));
  return post_collective(std::move(p));
}

Work FakeComm::post_all_gather(const void* in, void* out, int64_t count_per_rank, DType dtype) {
  Post p;
  p.kind = Kind::kAllGather;
  p.seq = next_collective_seq();
  p.in = in;
  p.out = out;
  p.count = count_per_rank;
  p.dtype = dtype;
  const std::string detail = count_detail(dtype, count_per_rank) + " per rank";
  p.signature = "all_gather(" + detail + ")";
  p.work = new_work(describe("all_gather", p.seq, detail));
  return post_collective(std::move(p));
}

Work FakeComm::post_all_to_all_v(const void* in, int64_t /*in_count*/, void* out, DType dtype,
                                 const AllToAllVOptions& options) {
  Post p;
  p.kind = Kind::kAllToAllV;
  p.seq = next_collective_seq();
  p.in = in;
  p.out = out;
  p.dtype = dtype;
  p.a2a = options;
  int64_t sent = 0, received = 0;
  for (int64_t c : options.send_counts) sent += c;
  for (int64_t c : options.recv_counts) received += c;
  p.signature = std::string("all_to_all_v(") + kernels::dtype_name(dtype) + ")";
  p.work = new_work(describe("all_to_all_v", p.seq,
                             std::string(kernels::dtype_name(dtype)) + ", send " +
                                 std::to_string(sent) + ", recv " + std::to_string(received)));
  return post_collective(std::move(p));
}

Work FakeComm::post_broadcast(void* data, int64_t count, DType dtype, int root) {
  Post p;
  p.kind = Kind::kBroadcast;
  p.seq = next_collective_seq();
  p.in = data;
  p.out = data;
  p.count = count;
  p.dtype = dtype;
  p.root = root;
  const std::string detail = count_detail(dtype, count) + ", root " + std::to_string(root);
  p.signature = "broadcast(" + detail + ")";
  p.work = new_work(describe("broadcast", p.seq, detail));
  return post_collective(std::move(p));
}

Work FakeComm::post_barrier() {
  Post p;
  p.kind = Kind::kBarrier;
  p.seq = next_collective_seq();
  p.signature = "barrier()";
  p.work = new_work(describe("barrier", p.seq, ""));
  return post_collective(std::move(p));
}

std::unique_ptr<Comm> FakeComm::split(const std::vector<int>& ranks, std::string name) {
  check_split_ranks(ranks);
  Post p;
  p.kind = Kind::kSplit;
  p.seq = next_collective_seq();
  p.split_ranks = ranks;
  p.split_out = std::make_shared<std::shared_ptr<Group>>();
  p.signature = "split()";
  p.work = new_work(describe("split", p.seq, "group " + list_string(ranks)));
  auto out = p.split_out;
  post_collective(std::move(p)).wait();
  const int new_rank =
      static_cast<int>(std::find(ranks.begin(), ranks.end(), rank_) - ranks.begin());
  if (name.empty()) name = default_split_name(ranks);
  return std::unique_ptr<Comm>(new FakeComm(*out, new_rank, std::move(name)));
}

namespace {
// Completes a matched send/recv pair.
void match(fake_detail::P2P& send, fake_detail::P2P& recv) {
  if (send.count != recv.count || send.dtype != recv.dtype) {
    auto error = std::make_exception_ptr(
        std::runtime_error("send/recv mismatch: " + send.work->description() + " matched " +
                           recv.work->description()));
    send.work->complete(error);
    recv.work->complete(error);
    return;
  }
  copy_bytes(recv.recv, send.send, send.count * kernels::dtype_size(send.dtype));
  send.work->complete();
  recv.work->complete();
}
}  // namespace

// Queues `op` as a send (is_send) or a receive under (src, dst, tag), or matches it with the
// oldest opposite operation already waiting under that key.
Work FakeComm::post_p2p(fake_detail::P2P op, bool is_send, int peer, int tag) {
  Work work(op.work);
  Group& g = *group_;
  std::lock_guard<std::mutex> lock(g.mu);
  if (!g.world->register_work(op.work)) return work;
  const auto key = is_send ? std::make_tuple(rank_, peer, tag) : std::make_tuple(peer, rank_, tag);
  auto& mine = is_send ? g.sends : g.recvs;
  auto& theirs = is_send ? g.recvs : g.sends;
  auto& waiting = theirs[key];
  if (waiting.empty()) {
    theirs.erase(key);
    fail_if_peer_finished(g, op, peer, is_send ? "receiving" : "sending");
    mine[key].push_back(std::move(op));
  } else {
    fake_detail::P2P other = std::move(waiting.front());
    waiting.pop_front();
    if (waiting.empty()) theirs.erase(key);
    if (is_send) {
      match(op, other);
    } else {
      match(other, op);
    }
  }
  return work;
}

Work FakeComm::post_send(const void* data, int64_t count, DType dtype, int dst, int tag) {
  fake_detail::P2P op;
  op.send = data;
  op.count = count;
  op.dtype = dtype;
  op.work = new_work(describe("send", next_p2p_seq(),
                              count_detail(dtype, count) + " to rank " + std::to_string(dst) +
                                  ", tag " + std::to_string(tag)));
  return post_p2p(std::move(op), /*is_send=*/true, dst, tag);
}

Work FakeComm::post_recv(void* data, int64_t count, DType dtype, int src, int tag) {
  fake_detail::P2P op;
  op.recv = data;
  op.count = count;
  op.dtype = dtype;
  op.work = new_work(describe("recv", next_p2p_seq(),
                              count_detail(dtype, count) + " from rank " + std::to_string(src) +
                                  ", tag " + std::to_string(tag)));
  return post_p2p(std::move(op), /*is_send=*/false, src, tag);
}

void run_fake_ranks(int n, const std::function<void(Comm&)>& fn, const FakeCommOptions& options) {
  auto comms = FakeComm::create_world(n, options);
  std::mutex mu;
  std::exception_ptr first;
  bool first_is_consequence = false;  // prefer the root cause over "world aborted" errors
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*comms[r]);
        comms[r]->mark_finished();
      } catch (...) {
        std::exception_ptr e = std::current_exception();
        bool consequence = false;
        try {
          std::rethrow_exception(e);
        } catch (const fake_detail::WorldAborted&) {
          consequence = true;
        } catch (...) {
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!first || (first_is_consequence && !consequence)) {
            first = e;
            first_is_consequence = consequence;
          }
        }
        comms[r]->abort_world("rank " + std::to_string(r) + " failed: " + what_of(e));
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
  std::vector<std::string> unmatched = comms[0]->unmatched_operations();
  if (!unmatched.empty()) {
    std::string msg = "run_fake_ranks: " + std::to_string(unmatched.size()) +
                      " operation(s) posted but never matched by a peer:";
    for (const auto& u : unmatched) msg += "\n  " + u;
    throw std::runtime_error(msg);
  }
}

}  // namespace tessera::parallel
