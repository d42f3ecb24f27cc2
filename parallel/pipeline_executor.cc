#include "parallel/pipeline_executor.h"

#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "parallel/schedule_checker.h"

namespace tessera::parallel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string schedule_label(const Schedule& s) {
  return "parallel.schedule=" + s.name + " (parallel.pp=" + std::to_string(s.pp()) +
         ", parallel.micro_batches=" + std::to_string(s.micro_batches) + ", " +
         std::to_string(s.chunks()) + " chunk(s) per stage)";
}

}  // namespace

double PipelineStepStats::bubble_fraction() const {
  return total_s > 0 ? 1.0 - compute_s / total_s : 0.0;
}

PipelineExecutor::PipelineExecutor(Comm& pp, Schedule schedule, int64_t boundary_elements,
                                   kernels::Backend& backend)
    : comm_(pp),
      backend_(backend),
      schedule_(std::move(schedule)),
      elements_(boundary_elements),
      stage_(pp.rank()) {
  if (elements_ < 1) {
    throw std::invalid_argument("PipelineExecutor: boundary_elements=" +
                                std::to_string(elements_) + " must be >= 1");
  }
  if (comm_.size() != schedule_.pp()) {
    throw ScheduleError(schedule_label(schedule_) + ": parallel.pp=" +
                        std::to_string(schedule_.pp()) + " but the pipeline communicator '" +
                        comm_.name() + "' has " + std::to_string(comm_.size()) + " ranks");
  }
  const CheckResult check = check_schedule(schedule_);
  if (!check.ok) {
    throw ScheduleError(schedule_label(schedule_) + " is not a valid schedule:\n" +
                        check.summary());
  }
  const int64_t messages = 2 * static_cast<int64_t>(schedule_.micro_batches) *
                           static_cast<int64_t>(schedule_.virtual_stages());
  // With pp = 1 nothing is sent, so no tag is needed.
  if (schedule_.pp() > 1 && messages - 1 > Comm::kMaxTag) {
    throw ScheduleError(schedule_label(schedule_) + ": 2 x parallel.micro_batches=" +
                        std::to_string(schedule_.micro_batches) + " x " +
                        std::to_string(schedule_.virtual_stages()) +
                        " virtual stages = " +
                        std::to_string(messages) + " message tags exceed Comm::kMaxTag + 1 = " +
                        std::to_string(Comm::kMaxTag + 1) +
                        "; use fewer micro-batches or virtual stages");
  }
  slot_of_message_.assign(static_cast<size_t>(messages), -1);
  recv_of_message_.resize(static_cast<size_t>(messages));
}

PipelineExecutor::~PipelineExecutor() = default;

int PipelineExecutor::message_index(bool grad, int micro_batch, int from_vs) const {
  return ((grad ? 1 : 0) * schedule_.micro_batches + micro_batch) * schedule_.virtual_stages() +
         from_vs;
}

void PipelineExecutor::reclaim_sends(bool wait, PipelineStepStats& stats) {
  size_t kept = 0;
  for (size_t i = 0; i < sends_.size(); ++i) {
    PendingSend& s = sends_[i];
    if (!wait && !s.work.test()) {
      if (kept != i) sends_[kept] = std::move(s);
      ++kept;
      continue;
    }
    const auto t0 = Clock::now();
    s.work.wait();  // rethrows a failed send
    stats.wait_s += seconds_since(t0);
    free_.push_back(s.slot);
  }
  sends_.resize(kept);
}

int PipelineExecutor::acquire() {
  if (free_.empty() && !sends_.empty()) {
    PipelineStepStats unused;
    reclaim_sends(/*wait=*/false, unused);
  }
  if (free_.empty()) {
    pool_.push_back(
        std::make_shared<kernels::Tensor>(backend_.alloc({elements_}, kernels::DType::kF32)));
    return static_cast<int>(pool_.size()) - 1;
  }
  const int slot = free_.back();
  free_.pop_back();
  return slot;
}

float* PipelineExecutor::produce(int message) {
  if (slot_of_message_[message] >= 0) {
    throw std::logic_error("PipelineExecutor: message " + std::to_string(message) +
                           " produced twice on stage " + std::to_string(stage_));
  }
  const int slot = acquire();
  slot_of_message_[message] = slot;
  return pool_[slot]->data<float>();
}

const float* PipelineExecutor::consume(int message, PipelineStepStats& stats) {
  const int slot = slot_of_message_[message];
  if (slot < 0) {
    throw std::logic_error("PipelineExecutor: stage " + std::to_string(stage_) +
                           " consumes message " + std::to_string(message) +
                           " that was neither received nor produced locally");
  }
  Work& recv = recv_of_message_[message];
  if (recv.defined()) {
    const auto t0 = Clock::now();
    recv.wait();
    stats.wait_s += seconds_since(t0);
    recv = Work();
  }
  return pool_[slot]->data<float>();
}

void PipelineExecutor::release(int message) {
  free_.push_back(slot_of_message_[message]);
  slot_of_message_[message] = -1;
}

void PipelineExecutor::post_send(const Instruction& inst) {
  const auto key = message_key(schedule_, stage_, inst);
  const int message = message_index(key->grad, key->micro_batch, key->from_vs);
  const int slot = slot_of_message_[message];
  if (slot < 0) {
    throw std::logic_error("PipelineExecutor: stage " + std::to_string(stage_) + " runs " +
                           to_string(inst) + " before the instruction that produces it");
  }
  const Buffer& buffer = pool_[slot];
  Work w = comm_.send<float>(
      std::span<const float>(buffer->data<float>(), static_cast<size_t>(elements_)), inst.peer,
      message);
  w.keep_alive(buffer);
  slot_of_message_[message] = -1;  // the buffer belongs to the send until it completes
  sends_.push_back({std::move(w), slot});
}

void PipelineExecutor::post_recv(const Instruction& inst) {
  const auto key = message_key(schedule_, stage_, inst);
  const int message = message_index(key->grad, key->micro_batch, key->from_vs);
  float* data = produce(message);
  const Buffer& buffer = pool_[slot_of_message_[message]];
  Work w = comm_.recv(std::span<float>(data, static_cast<size_t>(elements_)), inst.peer, message);
  w.keep_alive(buffer);
  recv_of_message_[message] = std::move(w);
}

PipelineExecutor::Boundary PipelineExecutor::forward_boundary(int mb, int chunk,
                                                              PipelineStepStats& stats) {
  const Placement& p = schedule_.placement;
  const int vs = p.virtual_stage(stage_, chunk);
  Boundary b;
  if (const int prev = p.prev(vs); prev >= 0) {
    b.consumed = message_index(false, mb, prev);
    b.in = consume(b.consumed, stats);
  }
  if (!p.last(vs)) b.out = produce(message_index(false, mb, vs));
  return b;
}

PipelineExecutor::Boundary PipelineExecutor::backward_boundary(int mb, int chunk,
                                                               PipelineStepStats& stats) {
  const Placement& p = schedule_.placement;
  const int vs = p.virtual_stage(stage_, chunk);
  Boundary b;
  if (const int next = p.next(vs); next >= 0) {
    b.consumed = message_index(true, mb, next);
    b.in = consume(b.consumed, stats);
  }
  if (!p.first(vs)) b.out = produce(message_index(true, mb, vs));
  return b;
}

void PipelineExecutor::forward(StageCompute& compute, int mb, int chunk,
                               PipelineStepStats& stats) {
  const Boundary b = forward_boundary(mb, chunk, stats);
  const auto t0 = Clock::now();
  compute.Forward(mb, chunk, b.in, b.out);
  stats.compute_s += seconds_since(t0);
  if (b.consumed >= 0) release(b.consumed);
}

void PipelineExecutor::backward_input(StageCompute& compute, int mb, int chunk,
                                      PipelineStepStats& stats) {
  const Boundary b = backward_boundary(mb, chunk, stats);
  const auto t0 = Clock::now();
  compute.BackwardInput(mb, chunk, b.in, b.out);
  stats.compute_s += seconds_since(t0);
  if (b.consumed >= 0) release(b.consumed);
}

void PipelineExecutor::forward_backward(StageCompute& compute, const Instruction& inst,
                                        PipelineStepStats& stats) {
  const Boundary f = forward_boundary(inst.micro_batch, inst.chunk, stats);
  const Boundary b = backward_boundary(inst.micro_batch_b, inst.chunk_b, stats);
  const auto t0 = Clock::now();
  compute.ForwardBackward(inst.micro_batch, inst.chunk, f.in, f.out, inst.micro_batch_b,
                          inst.chunk_b, b.in, b.out);
  stats.compute_s += seconds_since(t0);
  if (f.consumed >= 0) release(f.consumed);
  if (b.consumed >= 0) release(b.consumed);
}

void PipelineExecutor::backward_weight(StageCompute& compute, int mb, int chunk,
                                       PipelineStepStats& stats) {
  const auto t0 = Clock::now();
  compute.BackwardWeight(mb, chunk);
  stats.compute_s += seconds_since(t0);
}

void PipelineExecutor::abandon_step() {
  // Buffers still posted are owned by their Works too; start the next step from a fresh pool.
  pool_.clear();
  free_.clear();
  sends_.clear();
  slot_of_message_.assign(slot_of_message_.size(), -1);
  for (Work& w : recv_of_message_) w = Work();
}

PipelineStepStats PipelineExecutor::run(StageCompute& compute) {
  const auto t0 = Clock::now();
  PipelineStepStats stats;
  try {
    for (const Instruction& inst : schedule_.per_stage[stage_]) {
      switch (inst.op) {
        case Op::kForward:
          forward(compute, inst.micro_batch, inst.chunk, stats);
          break;
        case Op::kBackward:
          backward_input(compute, inst.micro_batch, inst.chunk, stats);
          backward_weight(compute, inst.micro_batch, inst.chunk, stats);
          break;
        case Op::kBackwardInput:
          backward_input(compute, inst.micro_batch, inst.chunk, stats);
          break;
        case Op::kBackwardWeight:
          backward_weight(compute, inst.micro_batch, inst.chunk, stats);
          break;
        case Op::kForwardBackward:
          forward_backward(compute, inst, stats);
          break;
        case Op::kSendActivation:
        case Op::kSendGrad:
          post_send(inst);
          break;
        case Op::kRecvActivation:
        case Op::kRecvGrad:
          post_recv(inst);
          break;
      }
      ++stats.instructions;
    }
    reclaim_sends(/*wait=*/true, stats);
    if (free_.size() != pool_.size()) {
      throw std::logic_error("PipelineExecutor: stage " + std::to_string(stage_) + " ended " +
                             schedule_label(schedule_) + " with " +
                             std::to_string(pool_.size() - free_.size()) +
                             " boundary buffer(s) never consumed");
    }
  } catch (...) {
    abandon_step();
    throw;
  }
  stats.total_s = seconds_since(t0);
  return stats;
}

int PipelineExecutor::PlannedPoolBuffers(const Schedule& schedule, int stage) {
  // Messages that hold a buffer (sends keep theirs: see the header), free buffers, the pool.
  std::set<MessageKey> held;
  int free = 0, pool = 0;
  const Placement& p = schedule.placement;
  auto acquire = [&] {
    if (free == 0) {
      ++pool;
    } else {
      --free;
    }
  };
  auto hold = [&](MessageKey key) {
    acquire();
    held.insert(key);
  };
  auto release = [&](MessageKey key) {
    if (held.erase(key)) ++free;
  };
  auto forward = [&](int mb, int chunk) {
    const int vs = p.virtual_stage(stage, chunk);
    if (!p.last(vs)) hold({false, mb, vs});
    if (!p.first(vs)) release({false, mb, p.prev(vs)});
  };
  auto backward_input = [&](int mb, int chunk) {
    const int vs = p.virtual_stage(stage, chunk);
    if (!p.first(vs)) hold({true, mb, vs});
    if (!p.last(vs)) release({true, mb, p.next(vs)});
  };
  for (const Instruction& inst : schedule.per_stage.at(static_cast<size_t>(stage))) {
    switch (inst.op) {
      case Op::kForward: forward(inst.micro_batch, inst.chunk); break;
      case Op::kBackward:
      case Op::kBackwardInput: backward_input(inst.micro_batch, inst.chunk); break;
      case Op::kBackwardWeight: break;
      case Op::kForwardBackward:
        forward(inst.micro_batch, inst.chunk);
        backward_input(inst.micro_batch_b, inst.chunk_b);
        break;
      case Op::kSendActivation:
      case Op::kSendGrad:
        held.erase(*message_key(schedule, stage, inst));  // still allocated, now the send's
        break;
      case Op::kRecvActivation:
      case Op::kRecvGrad: hold(*message_key(schedule, stage, inst)); break;
    }
  }
  return pool;
}

}  // namespace tessera::parallel
