#include "parallel/schedule_generators.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <stdexcept>
#include <utility>

namespace tessera::parallel {
namespace {

// Appends compute instructions together with the communication they need, so generators state
// only the order of compute.
class Builder {
 public:
  Builder(std::string name, int micro_batches, Placement placement) {
    s_.name = std::move(name);
    s_.micro_batches = micro_batches;
    s_.placement = std::move(placement);
    s_.per_stage.resize(s_.pp());
  }

  // RA (input from another stage), F, SA (output to another stage).
  void forward(int stage, int mb, int chunk) {
    recv_activation(stage, mb, chunk);
    emit(stage, Instruction::forward(mb, chunk));
    send_activation(stage, mb, chunk);
  }

  // RG (output gradient from another stage), BW or B, SG (input gradient to another stage).
  void backward(int stage, int mb, int chunk, Op op) {
    recv_grad(stage, mb, chunk);
    emit(stage, Instruction{op, mb, chunk});
    send_grad(stage, mb, chunk);
  }

  // F of (mb_f, chunk_f) overlapped with the full backward of (mb_b, chunk_b): both inputs are
  // received before, both outputs sent after.
  void forward_backward(int stage, int mb_f, int chunk_f, int mb_b, int chunk_b) {
    recv_activation(stage, mb_f, chunk_f);
    recv_grad(stage, mb_b, chunk_b);
    emit(stage, Instruction::forward_backward(mb_f, chunk_f, mb_b, chunk_b));
    send_activation(stage, mb_f, chunk_f);
    send_grad(stage, mb_b, chunk_b);
  }

  void weight(int stage, int mb, int chunk) {
    emit(stage, Instruction::backward_weight(mb, chunk));
  }

  Schedule take() { return std::move(s_); }

 private:
  // The stage holding the neighbour of (stage, chunk)'s virtual stage, or -1 when there is none
  // or it is this stage (the data stays local: no instruction).
  int remote(int stage, int chunk, bool next) const {
    const Placement& p = s_.placement;
    const int vs = p.virtual_stage(stage, chunk);
    const int other = next ? p.next(vs) : p.prev(vs);
    if (other < 0 || p.stage_of(other) == stage) return -1;
    return p.stage_of(other);
  }
  void recv_activation(int stage, int mb, int chunk) {
    if (const int from = remote(stage, chunk, false); from >= 0) {
      emit(stage, Instruction::recv_activation(mb, chunk, from));
    }
  }
  void send_activation(int stage, int mb, int chunk) {
    if (const int to = remote(stage, chunk, true); to >= 0) {
      emit(stage, Instruction::send_activation(mb, chunk, to));
    }
  }
  void recv_grad(int stage, int mb, int chunk) {
    if (const int from = remote(stage, chunk, true); from >= 0) {
      emit(stage, Instruction::recv_grad(mb, chunk, from));
    }
  }
  void send_grad(int stage, int mb, int chunk) {
    if (const int to = remote(stage, chunk, false); to >= 0) {
      emit(stage, Instruction::send_grad(mb, chunk, to));
    }
  }
  void emit(int stage, const Instruction& inst) { s_.per_stage[stage].push_back(inst); }

  Schedule s_;
};

// One rank's list in DualPipe's eight phases (deepseek-ai/DualPipe; V3-FACTS.md), written for
// DualPipeV's terms: `ranks` ranks, this one `rank`, `n` micro-batches per chunk, phase 0 the
// chunk whose data flows towards the tip rank (ranks - 1) and phase 1 the chunk flowing back. Each call names a
// phase; `to_unit(phase, k)` turns the k-th micro-batch of a phase into (micro-batch, chunk).
// Backwards are full (BW) except the zero-bubble ones (B, their W queued first-in first-out and
// run by the W steps).
class DualPhases {
 public:
  using ToUnit = std::function<std::pair<int, int>(int phase, int k)>;
  DualPhases(Builder& b, int stage, int ranks, int rank, int n, ToUnit to_unit)
      : b_(b), stage_(stage), ranks_(ranks), rank_(rank), n_(n), to_unit_(std::move(to_unit)) {}

  void run() {
    const int P = ranks_, r = rank_;
    const bool tip = r == P - 1;  // the rank where phase 0 turns into phase 1
    for (int i = 0; i < 2 * (P - r - 1); ++i) forward(0);           // 1: F0
    for (int i = 0; i < r + 1; ++i) {                                // 2: F0 F1
      forward(0);
      forward(1);
    }
    for (int i = 0; i < P - r - 1; ++i) {                            // 3: B1(zb) W F1
      backward(1, /*zero_bubble=*/true);
      weight();
      forward(1);
    }
    for (int i = 0; i < n_ - 2 * P + r + 1; ++i) {                   // 4: FB(0,1) FB(1,0)
      if (i == 0 && tip) {  // the reference leaves this first pair unpaired
        forward(0);
        backward(1, false);
      } else {
        forward_backward(0, 1);
      }
      forward_backward(1, 0);
    }
    for (int i = 0; i < P - r - 1; ++i) {                            // 5: B1 FB(1,0)
      backward(1, false);
      forward_backward(1, 0);
    }
    bool zb = false;                                                 // 6: B1 B0, then zb
    for (int i = 0; i < r + 1; ++i) {
      if (i == (r + 1) / 2 && r % 2 == 1) zb = true;
      backward(1, zb);
      if (i == (r + 1) / 2 && r % 2 == 0) zb = true;
      backward(0, zb);
    }
    for (int i = 0; i < P - r - 1; ++i) {                            // 7: W B0(zb)
      weight();
      backward(0, true);
    }
    for (int i = 0; i < r + 1; ++i) weight();                        // 8: W
    if (!deferred_.empty() || next_f_[0] != n_ || next_f_[1] != n_ || next_b_[0] != n_ ||
        next_b_[1] != n_) {
      throw std::logic_error("DualPhases: rank " + std::to_string(r) + " of " +
                             std::to_string(P) + " did not run every micro-batch once");
    }
  }

 private:
  void forward(int phase) {
    const auto [mb, chunk] = to_unit_(phase, next_f_[phase]++);
    b_.forward(stage_, mb, chunk);
  }
  void backward(int phase, bool zero_bubble) {
    const auto [mb, chunk] = to_unit_(phase, next_b_[phase]++);
    b_.backward(stage_, mb, chunk, zero_bubble ? Op::kBackwardInput : Op::kBackward);
    if (zero_bubble) deferred_.push_back({mb, chunk});
  }
  void weight() {
    if (deferred_.empty()) {
      throw std::logic_error("DualPhases: W with no deferred weight gradient");
    }
    b_.weight(stage_, deferred_.front().first, deferred_.front().second);
    deferred_.pop_front();
  }
  void forward_backward(int phase_f, int phase_b) {
    const auto [mb_f, chunk_f] = to_unit_(phase_f, next_f_[phase_f]++);
    const auto [mb_b, chunk_b] = to_unit_(phase_b, next_b_[phase_b]++);
    b_.forward_backward(stage_, mb_f, chunk_f, mb_b, chunk_b);
  }

  Builder& b_;
  int stage_, ranks_, rank_, n_;
  ToUnit to_unit_;
  int next_f_[2] = {0, 0}, next_b_[2] = {0, 0};
  std::deque<std::pair<int, int>> deferred_;
};

}  // namespace

void check_schedule_sizes(const std::string& name, int pp, int micro_batches) {
  if (pp < 1) {
    throw ScheduleError("parallel.schedule=" + name + ": parallel.pp=" + std::to_string(pp) +
                        " must be >= 1");
  }
  if (micro_batches < 1) {
    throw ScheduleError("parallel.schedule=" + name + ": parallel.micro_batches=" +
                        std::to_string(micro_batches) + " must be >= 1");
  }
}

void check_interleaved(int pp, int micro_batches, int virtual_stages) {
  check_schedule_sizes("interleaved", pp, micro_batches);
  if (virtual_stages < 2) {
    throw ScheduleError("parallel.schedule=interleaved needs parallel.virtual_stages >= 2, got " +
                        std::to_string(virtual_stages) + " (use 1f1b for one chunk per stage)");
  }
  if (micro_batches % pp != 0) {
    throw ScheduleError("parallel.schedule=interleaved needs parallel.micro_batches=" +
                        std::to_string(micro_batches) + " to be a multiple of parallel.pp=" +
                        std::to_string(pp) + " (micro-batches go through the chunks in groups of pp)");
  }
}

void check_dualpipev(int pp, int micro_batches) {
  check_schedule_sizes("dualpipev", pp, micro_batches);
  if (micro_batches < 2 * pp) {
    throw ScheduleError("parallel.schedule=dualpipev needs parallel.micro_batches >= 2 x parallel.pp = " +
                        std::to_string(2 * pp) + ", got " + std::to_string(micro_batches) +
                        " (with fewer the V cannot fill and the stages would wait on each other)");
  }
}

void check_dualpipe(int pp, int micro_batches) {
  check_schedule_sizes("dualpipe", pp, micro_batches);
  if (pp % 2 != 0) {
    throw ScheduleError("parallel.schedule=dualpipe needs an even parallel.pp (stage k mirrors " +
                        std::string("stage pp-1-k), got ") + std::to_string(pp) +
                        "; dualpipev runs on any parallel.pp");
  }
  if (micro_batches % 2 != 0 || micro_batches < 2 * pp) {
    throw ScheduleError("parallel.schedule=dualpipe needs an even parallel.micro_batches >= 2 x " +
                        std::string("parallel.pp = ") + std::to_string(2 * pp) + ", got " +
                        std::to_string(micro_batches) + " (half go each way)");
  }
}

Schedule gpipe_schedule(int pp, int micro_batches) {
  check_schedule_sizes("gpipe", pp, micro_batches);
  Builder b("gpipe", micro_batches, Placement::looped(pp, 1));
  for (int s = 0; s < pp; ++s) {
    for (int mb = 0; mb < micro_batches; ++mb) b.forward(s, mb, 0);
    for (int mb = 0; mb < micro_batches; ++mb) b.backward(s, mb, 0, Op::kBackward);
  }
  return b.take();
}

Schedule one_f_one_b_schedule(int pp, int micro_batches) {
  check_schedule_sizes("1f1b", pp, micro_batches);
  Builder b("1f1b", micro_batches, Placement::looped(pp, 1));
  for (int s = 0; s < pp; ++s) {
    const int warmup = std::min(pp - 1 - s, micro_batches);
    int next_f = 0;
    int next_b = 0;
    for (; next_f < warmup; ++next_f) b.forward(s, next_f, 0);
    for (; next_f < micro_batches; ++next_f, ++next_b) {
      b.forward(s, next_f, 0);
      b.backward(s, next_b, 0, Op::kBackward);
    }
    for (; next_b < micro_batches; ++next_b) b.backward(s, next_b, 0, Op::kBackward);
  }
  return b.take();
}

Schedule interleaved_schedule(int pp, int micro_batches, int virtual_stages) {
  check_interleaved(pp, micro_batches, virtual_stages);
  const int v = virtual_stages;
  Builder b("interleaved", micro_batches, Placement::looped(pp, v));
  const int total = micro_batches * v;  // (micro-batch, chunk) pairs per stage
  // The k-th forward (backward) of every stage works on micro-batch mb_of(k) and chunk
  // chunk_of(k, ...): groups of pp micro-batches go through chunk 0, 1, ... (backward: v-1, ...).
  const auto mb_of = [&](int k) { return k / (pp * v) * pp + k % pp; };
  const auto chunk_of = [&](int k, bool forward) {
    const int c = k % (pp * v) / pp;
    return forward ? c : v - 1 - c;
  };
  for (int s = 0; s < pp; ++s) {
    const int warmup = std::min(2 * (pp - 1 - s) + (v - 1) * pp, total);
    int next_f = 0;
    int next_b = 0;
    for (; next_f < warmup; ++next_f) b.forward(s, mb_of(next_f), chunk_of(next_f, true));
    for (; next_f < total; ++next_f, ++next_b) {
      b.forward(s, mb_of(next_f), chunk_of(next_f, true));
      b.backward(s, mb_of(next_b), chunk_of(next_b, false), Op::kBackward);
    }
    for (; next_b < total; ++next_b) {
      b.backward(s, mb_of(next_b), chunk_of(next_b, false), Op::kBackward);
    }
  }
  return b.take();
}

Schedule zb1p_schedule(int pp, int micro_batches) {
  check_schedule_sizes("zb1p", pp, micro_batches);
  Builder b("zb1p", micro_batches, Placement::looped(pp, 1));
  for (int s = 0; s < pp; ++s) {
    const int warmup = std::min(pp - 1 - s, micro_batches);
    std::deque<int> deferred;  // micro-batches whose B ran and whose W has not
    auto backward_then_weight = [&](int mb) {
      b.backward(s, mb, 0, Op::kBackwardInput);
      deferred.push_back(mb);
      // Stage s keeps s W deferred: they fill its idle time at the end.
      if (static_cast<int>(deferred.size()) > s) {
        b.weight(s, deferred.front(), 0);
        deferred.pop_front();
      }
    };
    int next_f = 0;
    int next_b = 0;
    for (; next_f < warmup; ++next_f) b.forward(s, next_f, 0);
    for (; next_f < micro_batches; ++next_f, ++next_b) {
      b.forward(s, next_f, 0);
      backward_then_weight(next_b);
    }
    for (; next_b < micro_batches; ++next_b) backward_then_weight(next_b);
    for (int mb : deferred) b.weight(s, mb, 0);
  }
  return b.take();
}

Schedule dualpipev_schedule(int pp, int micro_batches) {
  check_dualpipev(pp, micro_batches);
  Builder b("dualpipev", micro_batches, Placement::v_shape(pp));
  for (int s = 0; s < pp; ++s) {
    DualPhases(b, s, pp, s, micro_batches, [](int phase, int k) { return std::pair{k, phase}; })
        .run();
  }
  return b.take();
}

Schedule dualpipe_schedule(int pp, int micro_batches) {
  check_dualpipe(pp, micro_batches);
  const int half = micro_batches / 2;
  Builder b("dualpipe", micro_batches, Placement::bidirectional(pp, micro_batches));
  for (int s = 0; s < pp; ++s) {
    // The second half of the stages sees the two directions swapped: its phase 0 (data flowing
    // towards the middle) is direction 1, whose micro-batches are the second half.
    const int swap = s >= pp / 2 ? 1 : 0;
    DualPhases(b, s, pp / 2, std::min(s, pp - 1 - s), half, [=](int phase, int k) {
      const int chunk = phase ^ swap;
      return std::pair{k + chunk * half, chunk};
    }).run();
  }
  return b.take();
}

Schedule forward_only_schedule(const Placement& placement, int micro_batches) {
  check_schedule_sizes("forward-only", placement.pp(), micro_batches);
  Builder b("forward-only", micro_batches, placement);
  for (int mb = 0; mb < micro_batches; ++mb) {
    const int path = placement.path_of(mb);
    for (int vs = 0; vs < placement.virtual_stages(); ++vs) {
      if (placement.path_of_virtual(vs) != path) continue;
      b.forward(placement.stage_of(vs), mb, placement.chunk_of(vs));
    }
  }
  Schedule s = b.take();
  s.forward_only = true;
  return s;
}

}  // namespace tessera::parallel
