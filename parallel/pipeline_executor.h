// PipelineExecutor: runs this pipeline stage's instruction list (schedule.h) once per optimizer
// step, calling a StageCompute for F / B / W and moving activations and gradients over the
// pipeline communicator. It follows the list; it never decides the order itself.
//
// Instructions:
//   F    Forward.
//   BW   BackwardInput then BackwardWeight.
//   B, W BackwardInput, BackwardWeight.
//   FB   StageCompute::ForwardBackward: the forward of (mb, chunk) overlapped with the full
//        backward of (mb_b, chunk_b) (the stage interleaves their pieces; DESIGN.md's table).
//   SA / SG  post a send of the buffer the producing compute instruction wrote, and move on;
//   RA / RG  post a receive into the consumer's buffer as soon as the instruction is reached;
//            the consuming compute instruction waits for it (the latest possible wait).
// Data between virtual stages held by this stage (pp = 1 with several chunks, DualPipeV's tip)
// has no instruction: the producer's buffer is handed to the consumer locally. Which virtual
// stage a chunk holds and where its data goes is the schedule's Placement.
//
// Messages: every boundary buffer holds boundary_elements floats. A message's tag is
// ((grad ? 1 : 0) * micro_batches + micro_batch) * virtual_stages + from_vs (schedule.h's
// MessageKey), so tags [0, 2 * micro_batches * virtual_stages) are used on the pipeline
// communicator; they are unique within a step, and equal tags of consecutive steps match in
// posting order. Buffers come from a pool that grows to the step's high-water mark and is reused
// by later steps; a buffer returns to the pool once consumed (or once its send completed). Every
// posted buffer is also kept alive by its Work, so a failed run() or a destroyed executor never
// leaves the backend writing into freed memory.
//
// Failure: an exception from StageCompute or from a Work propagates out of run(); the executor
// abandons that step's buffers (in-flight ones stay owned by their Works) and may run again. The
// peers then fail in their own waits (the fake world's abort, MPI's watchdog or abort_all).
//
// Thread-safety: one run() at a time per executor; the pp communicator must not be used by other
// threads for point-to-point traffic with tags in the range above while run() executes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/schedule.h"

namespace tessera::parallel {

// What one pipeline stage computes; the trainer implements it over its model chunks. Every
// activation/gradient crossing a virtual-stage boundary has the same number of floats
// (boundary_elements, e.g. micro_batch_tokens * dim). Implementations must not keep the pointers
// they are given after the call returns (they copy what they need).
class StageCompute {
 public:
  virtual ~StageCompute() = default;
  // in: the activation entering virtual stage (chunk) for micro-batch mb; nullptr on the first
  // virtual stage (it reads its own inputs). out: where to write the chunk's output; nullptr on
  // the last virtual stage (it computes the loss).
  virtual void Forward(int mb, int chunk, const float* in, float* out) = 0;
  // dout: gradient of the chunk's output; nullptr on the last virtual stage (gradient starts at
  // the loss). din: where to write the gradient of the chunk's input; nullptr on the first
  // virtual stage.
  virtual void BackwardInput(int mb, int chunk, const float* dout, float* din) = 0;
  virtual void BackwardWeight(int mb, int chunk) = 0;
  // The FB instruction: Forward(mb_f, chunk_f, in, out) and the full backward of (mb_b, chunk_b)
  // (BackwardInput then BackwardWeight), their pieces interleaved however the implementation
  // overlaps them best; the results must equal the sequential order bit for bit. By default it
  // is that sequential order.
  virtual void ForwardBackward(int mb_f, int chunk_f, const float* in, float* out, int mb_b,
                               int chunk_b, const float* dout, float* din) {
    Forward(mb_f, chunk_f, in, out);
    BackwardInput(mb_b, chunk_b, dout, din);
    BackwardWeight(mb_b, chunk_b);
  }
};

struct PipelineStepStats {
  double total_s = 0;    // wall time of run()
  double compute_s = 0;  // inside StageCompute calls
  double wait_s = 0;     // blocked waiting for receives/sends (exposed pipeline communication)
  int64_t instructions = 0;
  // 1 - compute_s / total_s: the share of this stage's step not spent computing (0 when
  // total_s == 0).
  double bubble_fraction() const;
};

class PipelineExecutor {
 public:
  // pp: the pipeline communicator; its rank is this stage, its size must equal schedule.pp
  // (ScheduleError naming parallel.pp otherwise). Validates the schedule with check_schedule()
  // once (ScheduleError with the checker's summary), and that its messages fit in Comm::kMaxTag
  // (ScheduleError naming parallel.micro_batches and the virtual stages).
  // Throws std::invalid_argument if boundary_elements < 1. Boundary buffers are allocated on
  // `backend` (the device the stage computes on; the communicator must accept its memory).
  // REQUIRES: pp and backend outlive the executor.
  PipelineExecutor(Comm& pp, Schedule schedule, int64_t boundary_elements,
                   kernels::Backend& backend);
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // Runs this stage's list once (one optimizer step's micro-batches). Returns after every send
  // of this step has completed. Exceptions from compute or communication propagate.
  PipelineStepStats run(StageCompute& compute);

  const Schedule& schedule() const { return schedule_; }
  int stage() const { return stage_; }
  int64_t boundary_elements() const { return elements_; }
  // Boundary buffers allocated so far (the pool's size); stays constant across steps once the
  // pool reached the high-water mark.
  size_t pool_buffers() const { return pool_.size(); }
  // An upper bound of the pool's size, without running: run() replayed on `stage`'s list as if
  // no send completed before the step's end (a send that completes earlier frees its buffer for
  // reuse, so the real pool is never larger). With pp = 1 (no sends) it is exact.
  static int PlannedPoolBuffers(const Schedule& schedule, int stage);

 private:
  using Buffer = std::shared_ptr<kernels::Tensor>;
  struct PendingSend {
    Work work;
    int slot;
  };

  // A compute instruction's boundary buffers: its input (received or local; nullptr at a path's
  // end) and the message it consumes (-1: none), and where it writes its output.
  struct Boundary {
    const float* in = nullptr;
    float* out = nullptr;
    int consumed = -1;
  };

  int message_index(bool grad, int micro_batch, int from_vs) const;
  int acquire();              // a free pool slot, reclaiming completed sends first
  void reclaim_sends(bool wait, PipelineStepStats& stats);
  float* produce(int message);                             // output buffer of a message
  const float* consume(int message, PipelineStepStats& stats);  // waits for its receive
  void release(int message);
  void post_send(const Instruction& inst);
  void post_recv(const Instruction& inst);
  void forward(StageCompute& compute, int mb, int chunk, PipelineStepStats& stats);
  void backward_input(StageCompute& compute, int mb, int chunk, PipelineStepStats& stats);
  void backward_weight(StageCompute& compute, int mb, int chunk, PipelineStepStats& stats);
  void forward_backward(StageCompute& compute, const Instruction& inst, PipelineStepStats& stats);
  Boundary forward_boundary(int mb, int chunk, PipelineStepStats& stats);
  Boundary backward_boundary(int mb, int chunk, PipelineStepStats& stats);
  void abandon_step();

  Comm& comm_;
  kernels::Backend& backend_;
  const Schedule schedule_;
  const int64_t elements_;
  const int stage_;

  std::vector<Buffer> pool_;
  std::vector<int> free_;                 // pool slots not in use
  std::vector<int> slot_of_message_;      // [message index] -> pool slot holding it, or -1
  std::vector<Work> recv_of_message_;     // [message index] -> its posted receive
  std::vector<PendingSend> sends_;        // posted, not yet known complete
};

}  // namespace tessera::parallel
