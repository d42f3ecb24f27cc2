#include "parallel/schedule_generators.h"

#include <algorithm>
#include <deque>

namespace tessera::parallel {
namespace {

void check_sizes(const std::string& name, int pp, int micro_batches) {
  if (pp < 1) {
    throw ScheduleError("parallel.schedule=" + name + ": parallel.pp=" + std::to_string(pp) +
                        " must be >= 1");
  }
  if (micro_batches < 1) {
    throw ScheduleError("parallel.schedule=" + name + ": parallel.micro_batches=" +
                        std::to_string(micro_batches) + " must be >= 1");
  }
}

// Appends compute instructions together with the communication they need, so generators state
// only the order of compute.
class Builder {
 public:
  Builder(std::string name, int pp, int micro_batches, int chunks) {
    s_.name = std::move(name);
    s_.pp = pp;
    s_.micro_batches = micro_batches;
    s_.chunks = chunks;
    s_.per_stage.resize(pp);
  }

  // RA (input from another stage), F, SA (output to another stage).
  void forward(int stage, int mb, int chunk) {
    const int vs = virtual_stage(s_.pp, stage, chunk);
    if (vs > 0 && s_.pp > 1) {
      emit(stage, Instruction::recv_activation(mb, chunk, stage_of_virtual(s_.pp, vs - 1)));
    }
    emit(stage, Instruction::forward(mb, chunk));
    if (vs < s_.virtual_stages() - 1 && s_.pp > 1) {
      emit(stage, Instruction::send_activation(mb, chunk, stage_of_virtual(s_.pp, vs + 1)));
    }
  }

  // RG (output gradient from another stage), BW or B, SG (input gradient to another stage).
  void backward(int stage, int mb, int chunk, Op op) {
    const int vs = virtual_stage(s_.pp, stage, chunk);
    if (vs < s_.virtual_stages() - 1 && s_.pp > 1) {
      emit(stage, Instruction::recv_grad(mb, chunk, stage_of_virtual(s_.pp, vs + 1)));
    }
    emit(stage, Instruction{op, mb, chunk});
    if (vs > 0 && s_.pp > 1) {
      emit(stage, Instruction::send_grad(mb, chunk, stage_of_virtual(s_.pp, vs - 1)));
    }
  }

  void weight(int stage, int mb, int chunk) {
    emit(stage, Instruction::backward_weight(mb, chunk));
  }

  Schedule take() { return std::move(s_); }

 private:
  void emit(int stage, const Instruction& inst) { s_.per_stage[stage].push_back(inst); }

  Schedule s_;
};

}  // namespace

Schedule gpipe_schedule(int pp, int micro_batches) {
  check_sizes("gpipe", pp, micro_batches);
  Builder b("gpipe", pp, micro_batches, 1);
  for (int s = 0; s < pp; ++s) {
    for (int mb = 0; mb < micro_batches; ++mb) b.forward(s, mb, 0);
    for (int mb = 0; mb < micro_batches; ++mb) b.backward(s, mb, 0, Op::kBackward);
  }
  return b.take();
}

Schedule one_f_one_b_schedule(int pp, int micro_batches) {
  check_sizes("1f1b", pp, micro_batches);
  Builder b("1f1b", pp, micro_batches, 1);
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
  check_sizes("interleaved", pp, micro_batches);
  const int v = virtual_stages;
  if (v < 2) {
    throw ScheduleError("parallel.schedule=interleaved needs parallel.virtual_stages >= 2, got " +
                        std::to_string(v) + " (use 1f1b for one chunk per stage)");
  }
  if (micro_batches % pp != 0) {
    throw ScheduleError("parallel.schedule=interleaved needs parallel.micro_batches=" +
                        std::to_string(micro_batches) + " to be a multiple of parallel.pp=" +
                        std::to_string(pp) + " (micro-batches go through the chunks in groups of pp)");
  }
  Builder b("interleaved", pp, micro_batches, v);
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
  check_sizes("zb1p", pp, micro_batches);
  Builder b("zb1p", pp, micro_batches, 1);
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

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"gpipe", "1f1b", "interleaved",
                                                 "zb1p",  "dualpipe", "dualpipev"};
  return names;
}

Schedule make_schedule(const std::string& name, int pp, int micro_batches, int virtual_stages) {
  if (name == "dualpipe" || name == "dualpipev") {
    throw ScheduleError("parallel.schedule=" + name + " is not implemented yet");
  }
  if (name != "interleaved" && virtual_stages != 1) {
    throw ScheduleError("parallel.schedule=" + name + " runs one chunk per stage but " +
                        "parallel.virtual_stages=" + std::to_string(virtual_stages) +
                        " (virtual stages need parallel.schedule=interleaved)");
  }
  if (name == "gpipe") return gpipe_schedule(pp, micro_batches);
  if (name == "1f1b") return one_f_one_b_schedule(pp, micro_batches);
  if (name == "interleaved") return interleaved_schedule(pp, micro_batches, virtual_stages);
  if (name == "zb1p") return zb1p_schedule(pp, micro_batches);
  std::string known;
  for (const auto& n : schedule_names()) known += (known.empty() ? "" : ", ") + n;
  throw ScheduleError("parallel.schedule='" + name + "' is unknown (known: " + known + ")");
}

}  // namespace tessera::parallel
