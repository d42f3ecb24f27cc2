// Comm::set_trace on the fake communicator: every operation's Work becomes one event on the
// lane "comm:<name>", named after the operation, spanning post -> completion, with its bytes;
// nothing is recorded while the recorder is disabled or after detaching.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "parallel/fake_comm.h"
#include "parallel/trace_recorder.h"
#include "parallel/work.h"

namespace tessera::parallel {
namespace {

int64_t arg(const TraceEvent& e, const std::string& key) {
  for (const auto& [k, v] : e.args) {
    if (k == key) return v;
  }
  ADD_FAILURE() << "event " << e.name << " has no arg " << key;
  return -1;
}

std::vector<TraceEvent> named(const std::vector<TraceEvent>& events, const std::string& name) {
  std::vector<TraceEvent> out;
  for (const TraceEvent& e : events) {
    if (e.name == name) out.push_back(e);
  }
  return out;
}

// The communicators' events (a wait that happened to block adds one on the compute lane).
std::vector<TraceEvent> comm_events(const TraceRecorder& rec) {
  std::vector<TraceEvent> out;
  for (const TraceEvent& e : rec.events()) {
    if (e.lane != TraceRecorder::kComputeLane) out.push_back(e);
  }
  return out;
}

// Completes the Work from another thread once a waiter has blocked on it (no timing involved).
class CompleteWhenBlocked : public WaiterSignal {
 public:
  void waiter_blocked() override {
    worker = std::thread([this] { state->complete(); });  // runs once wait() releases its lock
  }
  void waiter_unblocked() override {}
  WorkState* state = nullptr;
  std::thread worker;
};

TEST(CommTraceTest, ABlockingWaitIsRecordedOnTheComputeLane) {
  auto rec = std::make_shared<TraceRecorder>();
  rec->set_enabled(true);
  const int lane = rec->lane("comm:ep");
  auto signal = std::make_shared<CompleteWhenBlocked>();
  WorkState::Options o;
  o.description = "all_to_all_v #1 on comm 'ep'";
  o.waiter_signal = signal;
  WorkState blocked(o);
  signal->state = &blocked;
  blocked.trace_to(rec, lane, {});
  blocked.wait();
  signal->worker.join();
  // Already complete when waited for: no wait event.
  WorkState::Options r;
  r.description = "send #2 on comm 'ep'";
  WorkState ready(r);
  ready.trace_to(rec, lane, {});
  ready.complete();
  ready.wait();
  const std::vector<TraceEvent> events = rec->events();
  ASSERT_EQ(named(events, "wait all_to_all_v").size(), 1u);
  EXPECT_EQ(named(events, "wait all_to_all_v")[0].lane, TraceRecorder::kComputeLane);
  EXPECT_EQ(named(events, "wait send").size(), 0u);
  EXPECT_EQ(named(events, "all_to_all_v").size(), 1u);
  EXPECT_EQ(named(events, "send").size(), 1u);
}

TEST(CommTraceTest, ABlockingWaitIsCountedWithinItsOperationsTime) {
  auto counters = std::make_shared<CommCounters>();
  auto signal = std::make_shared<CompleteWhenBlocked>();
  WorkState::Options o;
  o.description = "all_reduce #1 on comm 'dp'";
  o.waiter_signal = signal;
  o.counters = counters;
  WorkState blocked(o);
  signal->state = &blocked;
  blocked.wait();
  signal->worker.join();
  WorkState::Options r;
  r.description = "barrier #2 on comm 'dp'";
  r.counters = counters;
  WorkState ready(r);
  ready.complete();
  ready.wait();  // already complete: not a blocked wait
  EXPECT_EQ(counters->posted.load(), 2);
  EXPECT_EQ(counters->completed.load(), 2);
  EXPECT_EQ(counters->waits.load(), 1);
  EXPECT_LE(counters->wait_ns.load(), counters->op_ns.load());
}

TEST(CommTraceTest, EveryOperationIsOneEventOnItsCommunicatorsLane) {
  auto comms = FakeComm::create_world(2);
  std::vector<std::shared_ptr<TraceRecorder>> recs;
  for (auto& c : comms) {
    recs.push_back(std::make_shared<TraceRecorder>());
    recs.back()->set_enabled(true);
    c->set_trace(recs.back());
  }
  // Posting never blocks on the fake comm, so one thread drives both ranks.
  std::vector<float> sum0(256, 1.0f), sum1(256, 2.0f);
  Work ar0 = comms[0]->all_reduce(std::span<float>(sum0));
  // Rank 0's all_reduce is still pending here: its event comes at completion, not at post.
  EXPECT_EQ(recs[0]->event_count(), 0u);
  Work ar1 = comms[1]->all_reduce(std::span<float>(sum1));
  ar0.wait();
  ar1.wait();

  // all_to_all_v: rank r sends r + 1 ints to each rank.
  std::vector<std::vector<int32_t>> in(2), out(2);
  std::vector<Work> a2a;
  for (int r = 0; r < 2; ++r) {
    AllToAllVOptions o;
    o.send_counts = {r + 1, r + 1};
    o.recv_counts = {1, 2};
    in[r].assign(2 * (r + 1), r);
    out[r].assign(3, -1);
    a2a.push_back(comms[r]->all_to_all_v<int32_t>(in[r], out[r], o));
  }
  wait_all(a2a);

  std::vector<double> msg(10, 3.0), got(10, 0.0);
  Work s = comms[0]->send<double>(msg, 1, 5);
  Work rv = comms[1]->recv<double>(got, 0, 5);
  s.wait();
  rv.wait();
  Work b0 = comms[0]->barrier(), b1 = comms[1]->barrier();
  b0.wait();
  b1.wait();

  for (int r = 0; r < 2; ++r) {
    const std::vector<std::string> lanes = recs[r]->lanes();
    ASSERT_EQ(lanes.size(), 2u);
    EXPECT_EQ(lanes[1], "comm:world");
    const std::vector<TraceEvent> events = comm_events(*recs[r]);
    for (const TraceEvent& e : events) {
      EXPECT_EQ(e.lane, 1) << e.name;
      EXPECT_GE(e.duration_us, 0.0);
    }
    const auto ar = named(events, "all_reduce");
    ASSERT_EQ(ar.size(), 1u) << "rank " << r;
    EXPECT_EQ(arg(ar[0], "bytes"), 256 * 4);
    const auto a2 = named(events, "all_to_all_v");
    ASSERT_EQ(a2.size(), 1u);
    EXPECT_EQ(arg(a2[0], "bytes"), 2 * (r + 1) * 4);
    EXPECT_EQ(arg(a2[0], "recv_bytes"), 3 * 4);
    EXPECT_EQ(named(events, "barrier").size(), 1u);
    EXPECT_EQ(events.size(), 4u) << "rank " << r;  // + send on rank 0, recv on rank 1
  }
  const auto sends = named(recs[0]->events(), "send");
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(arg(sends[0], "bytes"), 80);
  EXPECT_EQ(arg(sends[0], "peer"), 1);
  EXPECT_EQ(arg(sends[0], "tag"), 5);
  const auto recvs = named(recs[1]->events(), "recv");
  ASSERT_EQ(recvs.size(), 1u);
  EXPECT_EQ(arg(recvs[0], "peer"), 0);

}

TEST(CommTraceTest, NothingIsRecordedWhileDisabledOrAfterDetaching) {
  run_fake_ranks(2, [](Comm& comm) {
    auto rec = std::make_shared<TraceRecorder>();
    comm.set_trace(rec);  // attached, but not enabled
    std::vector<float> v(8, 1.0f);
    comm.all_reduce(std::span<float>(v)).wait();
    EXPECT_EQ(rec->event_count(), 0u);

    rec->set_enabled(true);
    comm.all_reduce(std::span<float>(v)).wait();
    EXPECT_EQ(comm_events(*rec).size(), 1u);

    comm.set_trace(nullptr);
    comm.all_reduce(std::span<float>(v)).wait();
    comm.barrier().wait();
    EXPECT_EQ(comm_events(*rec).size(), 1u);
  });
}

// Communicators made by split() record only when given a recorder themselves, on their own lane.
TEST(CommTraceTest, SplitCommunicatorsHaveTheirOwnLane) {
  run_fake_ranks(2, [](Comm& world) {
    auto rec = std::make_shared<TraceRecorder>();
    rec->set_enabled(true);
    std::unique_ptr<Comm> ep = world.split({0, 1}, "ep");
    ep->set_trace(rec);
    world.set_trace(rec);
    std::vector<int64_t> v(4, world.rank());
    ep->all_reduce(std::span<int64_t>(v)).wait();
    world.broadcast(std::span<int64_t>(v), 0).wait();
    const std::vector<TraceEvent> events = comm_events(*rec);
    ASSERT_EQ(events.size(), 2u);
    const std::vector<std::string> lanes = rec->lanes();
    EXPECT_EQ(lanes[events[0].lane], "comm:ep");
    EXPECT_EQ(events[0].name, "all_reduce");
    EXPECT_EQ(lanes[events[1].lane], "comm:world");
    EXPECT_EQ(events[1].name, "broadcast");
    EXPECT_EQ(arg(events[1], "root"), 0);
  });
}

}  // namespace
}  // namespace tessera::parallel
