// The planner's view of one model chunk: the work of each of its blocks' pieces (the trainer's own
// Block::pieces(): "attention", "route", "dispatch", "experts", ...), and the time of a chunk
// instruction found by running the trainer's own step policy (trainer/chunk_steps.h: run_steps
// for F, B, W and BW; run_overlapped for an FB pair) on a virtual clock. Each step advances the
// clock by its compute; an exchange it posts travels on its link (the EP group's network, or
// the links inside a node for node-aware dispatch's second hop; one exchange at a time per link,
// in posting order) while the clock runs on; a step that waits jumps the clock to its list's last
// exchange's arrival. Where exchanges take the ranks' cores (ChunkWork::exchanges_take_cores)
// the posting step runs the exchange itself: nothing is hidden. So an FB pair hides exactly as much of its exchanges as the executor's
// interleaving does, and a lone F still overlaps its dispatch with the shared experts.
// An exchange that ends a phase of compute (the compute since the previous exchange) starts
// ChunkWork::sync_loss(phase) later than its posting: the EP group's ranks do not finish the
// phase together (measured: cluster_spec.h's network.sync_loss); on the trace it is a wait.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "trainer/layers/block.h"

namespace tessera::cluster {

// Seconds of one kind of work per micro-batch: forward, input gradient, weight gradient.
struct PhaseCost {
  double f = 0, b = 0, w = 0;
};

// One step of an instruction on the virtual clock, in seconds from the instruction's start, for
// the predicted trace: a compute piece ("F attention", as the trainer's traces name it), a wait
// for an exchange ("wait all_to_all_v", inside the piece that waits), or an exchange in flight
// on its link ("all_to_all_v", lane 1: the EP group's network; lane 2: inside a node).
struct PieceSpan {
  std::string name;
  int lane = 0;  // 0 compute
  double start = 0, end = 0;
  int list = 0;    // 0: the only list, or an FB pair's backward; 1: the pair's forward
  int layer = -1;  // the model layer of the block; -1 for the chunk's glue
};

// One compute unit's work (a transformer layer, or an MTP module's block) by the piece that does
// it, and its exchanges (seconds each).
struct UnitCost {
  PhaseCost attention;  // attention block: projections, core, norm, RoPE, residual
  PhaseCost ffn;        // dense FFN block
  PhaseCost router;     // MoE: gate, scores and top-k, the FFN norm
  PhaseCost shared;     // MoE: shared experts
  PhaseCost experts;    // MoE: this rank's routed experts
  PhaseCost permute;    // MoE: permute / unpermute and the residual
  double dispatch = 0, combine = 0, backward = 0;  // the flat all-to-all (or its cross-node hop)
  double dispatch_within = 0, combine_within = 0, backward_within = 0;  // node-aware: second hop
  double small = 0;  // a tiny exchange (counts, routes, gate gradients): latency
};

// What one (stage, chunk) runs per micro-batch.
struct ChunkWork {
  std::vector<const trainer::Block*> blocks;  // Model::chunk_blocks: 2 per unit
  std::vector<UnitCost> units;                // blocks[2 i], blocks[2 i + 1] are units[i]'s
  int first_layer = 0;                        // units[i] is model layer first_layer + i
  // CPU ranks with no core to spare (ranks x threads >= the node's cores): MPI's copies and sums
  // run on the ranks' own cores, so an exchange holds up its rank's compute for its whole time
  // instead of travelling while the clock runs on.
  bool exchanges_take_cores = false;
  // Seconds an exchange after `phase_s` of compute waits for the group's other ranks beyond
  // the work priced (none when empty).
  std::function<double(double phase_s)> sync_loss;
  PhaseCost embedding;  // the lookup (f) and its gradient scatter (w)
  PhaseCost head;       // final norm, output projection, cross-entropy; MTP's eh_proj and heads
};

struct Timed {
  double seconds = 0;  // from the first step's start to the last one's end
  double waited = 0;   // of which the compute thread waited for exchanges (exposed)
  double compute = 0;  // compute summed over the steps
  double comm = 0;     // exchange time summed (hidden or not)
  // The compute after the last exchange posted (all of it when none): the phase a collective
  // after the instruction (ZeRO's reduce-scatter) synchronises.
  double compute_since_exchange = 0;
  std::vector<PieceSpan> spans;  // every step, wait and exchange, in the order they ran

  // Whether an exchange was posted after some of the compute (or at its end).
  bool exchanged() const { return compute_since_exchange < compute; }
};

Timed time_forward(const ChunkWork& work);
Timed time_backward_input(const ChunkWork& work);
Timed time_backward_weight(const ChunkWork& work);
Timed time_backward(const ChunkWork& work);  // BW: input gradient, then weight gradients
// FB: the forward of `f` interleaved with the full backward of `b` (run_overlapped's policy).
Timed time_forward_backward(const ChunkWork& f, const ChunkWork& b);

}  // namespace tessera::cluster
