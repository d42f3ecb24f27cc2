#include "parallel/schedule_checker.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "parallel/schedule_replay.h"

namespace tessera::parallel {
namespace {

struct Location {
  int stage;
  int index;
};

// Collects errors, keeping the first max_errors and counting the rest.
class Errors {
 public:
  explicit Errors(size_t max) : max_(max) {}
  void add(std::string e) {
    if (list_.size() < max_) {
      list_.push_back(std::move(e));
    } else {
      ++dropped_;
    }
  }
  bool empty() const { return list_.empty(); }
  std::vector<std::string> take() {
    if (dropped_ > 0) list_.push_back("... and " + std::to_string(dropped_) + " more errors");
    return std::move(list_);
  }

 private:
  size_t max_;
  size_t dropped_ = 0;
  std::vector<std::string> list_;
};

class Checker {
 public:
  Checker(const Schedule& s, const CheckOptions& o) : s_(s), opt_(o), errors_(o.max_errors) {}

  CheckResult run() {
    CheckResult result;
    if (check_shape()) {
      check_messages();
      if (opt_.fifo_channels) check_fifo();
      replay(result);
    }
    result.errors = errors_.take();
    result.ok = result.errors.empty();
    return result;
  }

 private:
  std::string at(int stage, int index) const {
    return "stage " + std::to_string(stage) + " #" + std::to_string(index) + " " +
           to_string(s_.per_stage[stage][index], s_.chunks() > 1);
  }
  std::string unit(int mb, int chunk) const {
    std::string u = std::to_string(mb);
    if (s_.chunks() > 1) u += "c" + std::to_string(chunk);
    return u;
  }
  size_t slot(int mb, int chunk) const { return static_cast<size_t>(mb) * s_.chunks() + chunk; }
  // Whether micro-batch mb passes through chunk c of stage st (DualPipe: one direction each).
  bool visits(int st, int mb, int c) const {
    return s_.placement.visits(mb, s_.placement.virtual_stage(st, c));
  }

  // Fields in range; returns false when the replay cannot run safely.
  bool check_shape() {
    if (s_.micro_batches < 1) {
      errors_.add("schedule '" + s_.name + "': micro_batches=" + std::to_string(s_.micro_batches) +
                  " must be >= 1");
      return false;
    }
    if (static_cast<int>(s_.per_stage.size()) != s_.pp()) {
      errors_.add("schedule '" + s_.name + "' has " + std::to_string(s_.per_stage.size()) +
                  " stage lists but pp=" + std::to_string(s_.pp()));
      return false;
    }
    bool ok = true;
    auto in_range = [&](int stage, int index, int mb, int chunk) {
      if (mb < 0 || mb >= s_.micro_batches || chunk < 0 || chunk >= s_.chunks()) {
        errors_.add(at(stage, index) + ": micro-batch or chunk out of range (micro_batches=" +
                    std::to_string(s_.micro_batches) + ", chunks=" + std::to_string(s_.chunks()) +
                    ")");
        ok = false;
      } else if (!visits(stage, mb, chunk)) {
        errors_.add(at(stage, index) + ": micro-batch " + std::to_string(mb) +
                    " does not pass through chunk " + std::to_string(chunk) + " of stage " +
                    std::to_string(stage) + " (" + s_.placement.kind_name() + " placement)");
        ok = false;
      }
    };
    for (int st = 0; st < s_.pp(); ++st) {
      for (int i = 0; i < static_cast<int>(s_.per_stage[st].size()); ++i) {
        const Instruction& inst = s_.per_stage[st][i];
        in_range(st, i, inst.micro_batch, inst.chunk);
        if (inst.op == Op::kForwardBackward) in_range(st, i, inst.micro_batch_b, inst.chunk_b);
        if (s_.forward_only && inst.op != Op::kForward && inst.op != Op::kSendActivation &&
            inst.op != Op::kRecvActivation) {
          errors_.add(at(st, i) + ": a forward-only schedule runs no backward");
          ok = false;
        }
        if (is_compute(inst.op)) continue;
        const int want = expected_peer(s_, st, inst);
        if (inst.peer < 0 || inst.peer >= s_.pp()) {
          errors_.add(at(st, i) + ": peer stage out of range 0.." + std::to_string(s_.pp() - 1));
          ok = false;
        } else if (want < 0) {
          errors_.add(at(st, i) + (inst.op == Op::kSendActivation || inst.op == Op::kRecvGrad
                                       ? ": the last virtual stage has no next stage"
                                       : ": the first virtual stage has no previous stage"));
        } else if (want == st) {
          errors_.add(at(st, i) + ": data between chunks of one stage stays local; no message");
        } else if (inst.peer != want) {
          errors_.add(at(st, i) + ": the peer must be stage " + std::to_string(want));
        }
      }
    }
    return ok;
  }

  // Every message sent exactly once and received exactly once.
  void check_messages() {
    std::map<MessageKey, std::vector<Location>> sends;
    std::map<MessageKey, std::vector<Location>> recvs;
    for (int st = 0; st < s_.pp(); ++st) {
      for (int i = 0; i < static_cast<int>(s_.per_stage[st].size()); ++i) {
        const Instruction& inst = s_.per_stage[st][i];
        if (is_compute(inst.op)) continue;
        const auto key = message_key(s_, st, inst);
        if (!key) continue;  // reported by check_shape()
        (is_send(inst.op) ? sends : recvs)[*key].push_back({st, i});
      }
    }
    for (const auto& [key, where] : sends) {
      const auto r = recvs.find(key);
      if (r == recvs.end()) {
        errors_.add(at(where[0].stage, where[0].index) + ": never received (no matching " +
                    (key.grad ? "RG" : "RA") + " on stage " +
                    std::to_string(expected_peer(s_, where[0].stage,
                                                 s_.per_stage[where[0].stage][where[0].index])) +
                    ")");
      }
      if (where.size() > 1) {
        errors_.add(at(where[1].stage, where[1].index) + ": message sent " +
                    std::to_string(where.size()) + " times");
      }
    }
    for (const auto& [key, where] : recvs) {
      if (sends.find(key) == sends.end()) {
        errors_.add(at(where[0].stage, where[0].index) + ": no matching " +
                    (key.grad ? "SG" : "SA") + " is ever sent, so it waits forever");
      }
      if (where.size() > 1) {
        errors_.add(at(where[1].stage, where[1].index) + ": message received " +
                    std::to_string(where.size()) + " times");
      }
    }
  }

  // Per (source, destination, kind) channel, receives come in the order of sends.
  void check_fifo() {
    using Channel = std::tuple<int, int, bool>;
    std::map<Channel, std::vector<std::pair<MessageKey, Location>>> sent;
    std::map<Channel, std::vector<std::pair<MessageKey, Location>>> received;
    for (int st = 0; st < s_.pp(); ++st) {
      for (int i = 0; i < static_cast<int>(s_.per_stage[st].size()); ++i) {
        const Instruction& inst = s_.per_stage[st][i];
        if (is_compute(inst.op)) continue;
        const auto key = message_key(s_, st, inst);
        if (!key) continue;
        const bool grad = key->grad;
        if (is_send(inst.op)) {
          sent[{st, inst.peer, grad}].push_back({*key, {st, i}});
        } else {
          received[{inst.peer, st, grad}].push_back({*key, {st, i}});
        }
      }
    }
    for (const auto& [channel, sends] : sent) {
      const auto& recvs = received[channel];
      for (size_t k = 0; k < std::min(sends.size(), recvs.size()); ++k) {
        if (sends[k].first != recvs[k].first) {
          errors_.add("channel stage " + std::to_string(std::get<0>(channel)) + " -> stage " +
                      std::to_string(std::get<1>(channel)) +
                      (std::get<2>(channel) ? " (gradients)" : " (activations)") +
                      " is not first-in first-out: message " + std::to_string(k) + " is sent by " +
                      at(sends[k].second.stage, sends[k].second.index) + " but received by " +
                      at(recvs[k].second.stage, recvs[k].second.index));
          break;
        }
      }
    }
  }

  void replay(CheckResult& result) {
    const size_t units = static_cast<size_t>(s_.micro_batches) * s_.chunks();
    auto table = [&] { return std::vector<std::vector<int>>(s_.pp(), std::vector<int>(units, 0)); };
    f_ = table();
    b_ = table();
    w_ = table();
    act_in_ = table();
    grad_in_ = table();
    live_.assign(s_.pp(), 0);
    result.peak_activations.assign(s_.pp(), 0);
    peak_ = &result.peak_activations;

    const ReplayResult r = replay_schedule(s_, [&](int st, int i) { visit(st, i); });
    if (!r.completed) {
      std::string msg = "deadlock:";
      std::string finished;
      for (int st = 0; st < s_.pp(); ++st) {
        const int i = r.blocked_at[st];
        if (i < 0) {
          finished += (finished.empty() ? "" : ", ") + std::to_string(st);
          continue;
        }
        msg += " " + at(st, i) + " waits for stage " +
               std::to_string(s_.per_stage[st][i].peer) + ";";
      }
      if (!finished.empty()) msg += " finished: stage " + finished;
      errors_.add(msg);
      return;
    }
    for (int st = 0; st < s_.pp(); ++st) {
      for (int mb = 0; mb < s_.micro_batches; ++mb) {
        for (int c = 0; c < s_.chunks(); ++c) {
          if (!visits(st, mb, c)) continue;
          const std::string where = "stage " + std::to_string(st) + " never runs ";
          if (f_[st][slot(mb, c)] == 0) errors_.add(where + "F" + unit(mb, c));
          if (s_.forward_only) continue;
          if (b_[st][slot(mb, c)] == 0) errors_.add(where + "the backward (BW or B) of " + unit(mb, c));
          if (w_[st][slot(mb, c)] == 0) errors_.add(where + "W" + unit(mb, c) + " (weight gradients)");
        }
      }
    }
  }

  void visit(int st, int i) {
    const Instruction& inst = s_.per_stage[st][i];
    const int mb = inst.micro_batch;
    const int c = inst.chunk;
    switch (inst.op) {
      case Op::kForward:
        forward(st, i, mb, c);
        break;
      case Op::kBackward:
        backward_input(st, i, mb, c);
        backward_weight(st, i, mb, c);
        break;
      case Op::kBackwardInput:
        backward_input(st, i, mb, c);
        break;
      case Op::kBackwardWeight:
        backward_weight(st, i, mb, c);
        break;
      case Op::kForwardBackward:
        forward(st, i, mb, c);
        backward_input(st, i, inst.micro_batch_b, inst.chunk_b);
        backward_weight(st, i, inst.micro_batch_b, inst.chunk_b);
        break;
      case Op::kSendActivation:
        if (f_[st][slot(mb, c)] == 0) {
          errors_.add(at(st, i) + ": sends before F" + unit(mb, c) + " produced the activation");
        }
        break;
      case Op::kSendGrad:
        if (b_[st][slot(mb, c)] == 0) {
          errors_.add(at(st, i) + ": sends before the backward of " + unit(mb, c) +
                      " produced the gradient");
        }
        break;
      case Op::kRecvActivation:
        ++act_in_[st][slot(mb, c)];
        break;
      case Op::kRecvGrad:
        ++grad_in_[st][slot(mb, c)];
        break;
    }
  }

  void forward(int st, int i, int mb, int c) {
    const Placement& p = s_.placement;
    const int vs = p.virtual_stage(st, c);
    if (f_[st][slot(mb, c)]++ > 0) errors_.add(at(st, i) + ": F" + unit(mb, c) + " runs twice");
    if (const int prev = p.prev(vs); prev >= 0) {
      if (p.stage_of(prev) == st) {
        const int pc = p.chunk_of(prev);
        if (f_[st][slot(mb, pc)] == 0) {
          errors_.add(at(st, i) + ": runs before F" + unit(mb, pc) + ", which makes its input");
        }
      } else if (act_in_[st][slot(mb, c)] == 0) {
        errors_.add(at(st, i) + ": runs before its input activation arrived (no earlier RA" +
                    unit(mb, c) + ")");
      }
    }
    (*peak_)[st] = std::max((*peak_)[st], ++live_[st]);
  }

  void backward_input(int st, int i, int mb, int c) {
    const Placement& p = s_.placement;
    const int vs = p.virtual_stage(st, c);
    if (f_[st][slot(mb, c)] == 0) {
      errors_.add(at(st, i) + ": the backward of " + unit(mb, c) + " runs before F" + unit(mb, c));
    }
    if (b_[st][slot(mb, c)]++ > 0) {
      errors_.add(at(st, i) + ": the backward of " + unit(mb, c) + " runs twice");
    }
    if (const int next = p.next(vs); next >= 0) {
      if (p.stage_of(next) == st) {
        const int nc = p.chunk_of(next);
        if (b_[st][slot(mb, nc)] == 0) {
          errors_.add(at(st, i) + ": runs before the backward of " + unit(mb, nc) +
                      ", which makes its output gradient");
        }
      } else if (grad_in_[st][slot(mb, c)] == 0) {
        errors_.add(at(st, i) + ": runs before its output gradient arrived (no earlier RG" +
                    unit(mb, c) + ")");
      }
    }
  }

  void backward_weight(int st, int i, int mb, int c) {
    if (b_[st][slot(mb, c)] == 0) {
      errors_.add(at(st, i) + ": W" + unit(mb, c) + " runs before B" + unit(mb, c));
    }
    if (w_[st][slot(mb, c)]++ > 0) {
      errors_.add(at(st, i) + ": W" + unit(mb, c) + " (weight gradients) runs twice");
    } else {
      --live_[st];
    }
  }

  const Schedule& s_;
  const CheckOptions& opt_;
  Errors errors_;
  // [stage][mb * chunks + chunk]: times F / backward-input / W ran, activations and gradients
  // received.
  std::vector<std::vector<int>> f_, b_, w_, act_in_, grad_in_;
  std::vector<int> live_;  // activations alive per stage
  std::vector<int>* peak_ = nullptr;
};

}  // namespace

std::string CheckResult::summary() const {
  if (ok) return "ok";
  std::string s;
  for (const auto& e : errors) s += e + "\n";
  return s;
}

CheckResult check_schedule(const Schedule& schedule, const CheckOptions& options) {
  return Checker(schedule, options).run();
}

}  // namespace tessera::parallel
