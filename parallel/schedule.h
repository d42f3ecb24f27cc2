// Pipeline schedules as data (DESIGN.md "Pipeline schedules as data"): one list of instructions
// per pipeline stage. Generators (schedule_generators.h) write the lists, the checker
// (schedule_checker.h) proves them sound, the cost model (schedule_cost.h) prices them, and the
// executor follows a list without ever deciding the order itself.
//
// Model chunks (virtual stages): each stage holds `chunks` model chunks; the schedule's Placement
// (placement.h) says which virtual stage each (stage, chunk) holds, which model block it computes
// and where its data comes from and goes: Megatron's looped order (vs = chunk * pp + stage), the
// V of DualPipeV, or DualPipe's two directions.
//
// Compute instructions (all on this stage's own chunk `chunk` of micro-batch `micro_batch`):
//   F   kForward         forward.
//   BW  kBackward        full backward: input gradient then weight gradients, as one step
//                        (GPipe, 1F1B, interleaved).
//   B   kBackwardInput   input gradient only: the critical path (zero-bubble schedules).
//   W   kBackwardWeight  weight gradients of a (micro-batch, chunk) whose B has run; frees its
//                        activations. Deferred W fills bubbles.
//   FB  kForwardBackward F of (micro_batch, chunk) overlapped with a full backward of
//                        (micro_batch_b, chunk_b) (DualPipe's overlapped pair).
// Activations of a (micro-batch, chunk) live from its F until its W (or BW).
//
// Communication instructions name the (micro_batch, chunk) of the compute instruction on THIS
// stage that produces (send) or consumes (receive) the data, and the peer stage:
//   SA  kSendActivation  output of F(mb, chunk) to the stage holding the next virtual stage;
//   RA  kRecvActivation  input of F(mb, chunk) from the stage holding the previous one;
//   SG  kSendGrad        input gradient made by the backward of (mb, chunk) to the holder of the
//                        previous virtual stage;
//   RG  kRecvGrad        output gradient needed by the backward of (mb, chunk) from the holder of
//                        the next one.
// Data that stays on one stage (pp = 1 with several chunks, the tip of DualPipeV's V) needs no
// instruction.
//
// Communication semantics every executor must provide and the checker assumes:
//   - a stage runs its list in order;
//   - a send never blocks the stage: it is posted and the stage moves on (the executor keeps the
//     buffer alive until the send completes);
//   - a receive blocks the stage until the matching send has been posted. Messages are matched by
//     (kind, micro-batch, virtual stage), e.g. an MPI tag made of them; an executor may post a
//     receive early and wait only before the consuming instruction (that only removes waits);
//   - NCCL-style untagged channels: every generator here also keeps each channel (source stage,
//     destination stage, activation or gradient) first-in first-out, which the checker verifies
//     on request (CheckOptions::fifo_channels).
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/placement.h"

namespace tessera::parallel {

// A schedule that cannot be built or is inconsistent; the message names the recipe key
// (parallel.schedule, parallel.pp, parallel.micro_batches, parallel.virtual_stages) and value.
class ScheduleError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class Op : uint8_t {
  kForward,
  kBackward,
  kBackwardInput,
  kBackwardWeight,
  kForwardBackward,
  kSendActivation,
  kRecvActivation,
  kSendGrad,
  kRecvGrad,
};

bool is_compute(Op op);
bool is_send(Op op);
bool is_recv(Op op);

struct Instruction {
  Op op = Op::kForward;
  int micro_batch = 0;
  int chunk = 0;
  int peer = -1;           // communication only: the other stage
  int micro_batch_b = -1;  // kForwardBackward only: the backward half
  int chunk_b = -1;

  bool operator==(const Instruction&) const = default;

  static Instruction forward(int mb, int chunk = 0) { return {Op::kForward, mb, chunk}; }
  static Instruction backward(int mb, int chunk = 0) { return {Op::kBackward, mb, chunk}; }
  static Instruction backward_input(int mb, int chunk = 0) {
    return {Op::kBackwardInput, mb, chunk};
  }
  static Instruction backward_weight(int mb, int chunk = 0) {
    return {Op::kBackwardWeight, mb, chunk};
  }
  static Instruction forward_backward(int mb_f, int chunk_f, int mb_b, int chunk_b) {
    return {Op::kForwardBackward, mb_f, chunk_f, -1, mb_b, chunk_b};
  }
  static Instruction send_activation(int mb, int chunk, int peer) {
    return {Op::kSendActivation, mb, chunk, peer};
  }
  static Instruction recv_activation(int mb, int chunk, int peer) {
    return {Op::kRecvActivation, mb, chunk, peer};
  }
  static Instruction send_grad(int mb, int chunk, int peer) {
    return {Op::kSendGrad, mb, chunk, peer};
  }
  static Instruction recv_grad(int mb, int chunk, int peer) {
    return {Op::kRecvGrad, mb, chunk, peer};
  }
};

// Readable form: "F3c0", "BW3c0", "B3c0", "W3c0", "FB3c0/2c1", "SA3c0>1", "RA3c0<0",
// "SG3c1>0", "RG3c1<2". Without show_chunk the "cK" parts are left out (for chunks = 1).
std::string to_string(const Instruction& inst, bool show_chunk = true);

struct Schedule {
  std::string name;  // generator name ("1f1b", ...) or anything for hand-made lists
  int micro_batches = 1;
  Placement placement;  // stages, chunks per stage and the data flow between them
  bool forward_only = false;  // evaluation: F (and its communication) only, no backward
  std::vector<std::vector<Instruction>> per_stage;  // [stage] -> its instructions in order

  int pp() const { return placement.pp(); }
  int chunks() const { return placement.chunks(); }  // model chunks per stage
  int virtual_stages() const { return placement.virtual_stages(); }
  size_t size() const;  // instructions over all stages
};

// One line per stage: "stage 0: F0 SA0>1 F1 SA1>1 RG0<1 BW0 ...".
std::string to_string(const Schedule& schedule);

// Micro-batches in flight on each chunk of `stage` at the list's peak: a forward starts one, the
// weight-gradient step (W, or the full backward) ends it; an FB's forward half starts before its
// backward half ends another. The activation memory a stage needs is this many contexts per
// chunk. REQUIRES: 0 <= stage < schedule.pp().
std::vector<int> peak_in_flight(const Schedule& schedule, int stage);

// A message between stages, identified by what it carries: activations flow vs -> next(vs),
// gradients vs -> prev(vs); `from_vs` is the virtual stage that produced it.
struct MessageKey {
  bool grad = false;
  int micro_batch = 0;
  int from_vs = 0;
  auto operator<=>(const MessageKey&) const = default;
};

// The message a communication instruction on `stage` sends or waits for, derived from the data
// flow (not from inst.peer). nullopt for compute instructions and for communication that has no
// counterpart (an activation sent from the last virtual stage, a gradient from the first).
std::optional<MessageKey> message_key(const Schedule& schedule, int stage, const Instruction& inst);

// The stage a communication instruction on `stage` must name as its peer (the holder of the
// neighbouring virtual stage); -1 when there is none.
int expected_peer(const Schedule& schedule, int stage, const Instruction& inst);

}  // namespace tessera::parallel
