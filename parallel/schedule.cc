#include "parallel/schedule.h"

#include <algorithm>

namespace tessera::parallel {

bool is_compute(Op op) {
  return op == Op::kForward || op == Op::kBackward || op == Op::kBackwardInput ||
         op == Op::kBackwardWeight || op == Op::kForwardBackward;
}
bool is_send(Op op) { return op == Op::kSendActivation || op == Op::kSendGrad; }
bool is_recv(Op op) { return op == Op::kRecvActivation || op == Op::kRecvGrad; }

std::string to_string(const Instruction& inst, bool show_chunk) {
  auto at = [show_chunk](int mb, int chunk) {
    std::string s = std::to_string(mb);
    if (show_chunk) s += "c" + std::to_string(chunk);
    return s;
  };
  const std::string mc = at(inst.micro_batch, inst.chunk);
  const std::string peer = std::to_string(inst.peer);
  switch (inst.op) {
    case Op::kForward: return "F" + mc;
    case Op::kBackward: return "BW" + mc;
    case Op::kBackwardInput: return "B" + mc;
    case Op::kBackwardWeight: return "W" + mc;
    case Op::kForwardBackward: return "FB" + mc + "/" + at(inst.micro_batch_b, inst.chunk_b);
    case Op::kSendActivation: return "SA" + mc + ">" + peer;
    case Op::kRecvActivation: return "RA" + mc + "<" + peer;
    case Op::kSendGrad: return "SG" + mc + ">" + peer;
    case Op::kRecvGrad: return "RG" + mc + "<" + peer;
  }
  return "?";
}

size_t Schedule::size() const {
  size_t n = 0;
  for (const auto& list : per_stage) n += list.size();
  return n;
}

std::string to_string(const Schedule& schedule) {
  std::string out;
  for (size_t s = 0; s < schedule.per_stage.size(); ++s) {
    out += "stage " + std::to_string(s) + ":";
    for (const Instruction& inst : schedule.per_stage[s]) {
      out += " " + to_string(inst, schedule.chunks() > 1);
    }
    out += "\n";
  }
  return out;
}

std::optional<MessageKey> message_key(const Schedule& schedule, int stage, const Instruction& inst) {
  const Placement& p = schedule.placement;
  const int vs = p.virtual_stage(stage, inst.chunk);
  switch (inst.op) {
    case Op::kSendActivation:  // produced here, consumed at next(vs)
      if (p.last(vs)) return std::nullopt;
      return MessageKey{false, inst.micro_batch, vs};
    case Op::kRecvActivation:  // produced at prev(vs)
      if (p.first(vs)) return std::nullopt;
      return MessageKey{false, inst.micro_batch, p.prev(vs)};
    case Op::kSendGrad:  // produced here, consumed at prev(vs)
      if (p.first(vs)) return std::nullopt;
      return MessageKey{true, inst.micro_batch, vs};
    case Op::kRecvGrad:  // produced at next(vs)
      if (p.last(vs)) return std::nullopt;
      return MessageKey{true, inst.micro_batch, p.next(vs)};
    default:
      return std::nullopt;
  }
}

int expected_peer(const Schedule& schedule, int stage, const Instruction& inst) {
  const Placement& p = schedule.placement;
  const int vs = p.virtual_stage(stage, inst.chunk);
  int other = -1;
  switch (inst.op) {
    case Op::kSendActivation:
    case Op::kRecvGrad:
      other = p.next(vs);
      break;
    case Op::kRecvActivation:
    case Op::kSendGrad:
      other = p.prev(vs);
      break;
    default:
      return -1;
  }
  return other < 0 ? -1 : p.stage_of(other);
}

std::vector<int> peak_in_flight(const Schedule& schedule, int stage) {
  std::vector<int> live(static_cast<size_t>(schedule.chunks()), 0), peak = live;
  auto start = [&](int chunk) {
    int& n = live.at(static_cast<size_t>(chunk));
    peak[static_cast<size_t>(chunk)] = std::max(peak[static_cast<size_t>(chunk)], ++n);
  };
  auto end = [&](int chunk) { --live.at(static_cast<size_t>(chunk)); };
  for (const Instruction& inst : schedule.per_stage.at(static_cast<size_t>(stage))) {
    switch (inst.op) {
      case Op::kForward: start(inst.chunk); break;
      case Op::kBackward:
      case Op::kBackwardWeight: end(inst.chunk); break;
      case Op::kForwardBackward:
        start(inst.chunk);
        end(inst.chunk_b);
        break;
      default: break;
    }
  }
  return peak;
}

}  // namespace tessera::parallel
