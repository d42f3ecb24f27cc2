// Block: one residual sub-layer of the transformer (attention, dense FFN or MoE): y = x + f(norm(x)),
// with its forward and backward cut into PIECES (DESIGN.md "Layers: explicit forward and backward,
// in pieces"). The backward is split in two, as zero-bubble pipelines and DualPipe need:
//   forward          y from x
//   backward_input   dx from dy (B, the critical path)
//   backward_weight  weight gradients (W, deferrable)
// Each phase is a list of pieces run in order. A piece is either local compute ("no communication
// here") or posts an exchange and returns its Work; the piece that consumes the exchange's result
// waits for it (the Work is kept in the context), so the pieces in between overlap with it. Running
// the lists in order (Forward, BackwardInput, BackwardWeight below) is the sequential composition;
// the overlapped FB instruction interleaves two micro-batches' pieces instead, with the same
// results bit for bit.
//
// State: a micro-batch's saved activations live in a BlockContext that the CALLER owns (one per
// block per micro-batch in flight), its buffers carved from the caller's ActivationArena; the
// block itself holds only parameters and constants (and MoE load statistics). Buffer contract:
// x passed to BeginForward and dy passed to BeginBackward must stay valid and unchanged until the
// last weight piece ran. Weight gradients accumulate (+=); dx is written.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/work.h"
#include "trainer/activation_arena.h"

namespace tessera::trainer {

struct MicroBatchInfo {
  int64_t batch = 0;            // sequences in this micro-batch
  int64_t seq_len = 0;          // tokens per sequence
  bool training = true;         // false: no load statistics, no backward will follow
  double sequence_scale = 0.0;  // 1 / sequences of the global batch (auxiliary losses are means)
  int64_t tokens() const { return batch * seq_len; }
};

// A block's per-micro-batch state; each block defines its own and downcasts the one it made.
class BlockContext {
 public:
  virtual ~BlockContext() = default;
  MicroBatchInfo mb;
  const float* x = nullptr;  // the forward's input (caller-owned)
  float* y = nullptr;        // the forward's output
  const float* dy = nullptr; // the backward's output gradient (caller-owned)
  float* dx = nullptr;       // the backward's input gradient
  double aux_loss = 0;       // auxiliary loss of the forward (already scaled)
};

struct BlockPiece {
  std::string name;       // "attention", "route", "dispatch", "experts", "combine", ...
  bool communicates;      // posts an exchange and returns its Work; else local, returns {}
  std::function<parallel::Work(BlockContext&)> run;
  bool waits = false;     // first waits for an exchange an earlier piece posted (its consumer)
};

struct BlockPieces {
  std::vector<BlockPiece> forward, backward_input, backward_weight;
};

class Block {
 public:
  virtual ~Block() = default;
  virtual const std::string& name() const = 0;

  // A fresh context for one micro-batch in flight.
  virtual std::unique_ptr<BlockContext> NewContext() const = 0;
  // Carves every buffer the micro-batch needs (forward and backward) from `arena` (those that
  // live within one piece with take_transient); with a measuring arena this only counts them.
  virtual void Carve(BlockContext& ctx, ActivationArena& arena) const = 0;
  // The pieces of each phase, in their sequential order.
  virtual const BlockPieces& pieces() const = 0;

  // Binds a micro-batch's shape to ctx and carves its buffers from arena.
  void Prepare(BlockContext& ctx, ActivationArena& arena, const MicroBatchInfo& mb) const {
    ctx.mb = mb;
    arena.begin_block();
    Carve(ctx, arena);
  }
  // Binds the forward's input and output (after Prepare).
  void BeginForward(BlockContext& ctx, const float* x, float* y) const {
    ctx.x = x;
    ctx.y = y;
    ctx.aux_loss = 0;
  }
  void BeginBackward(BlockContext& ctx, const float* dy, float* dx) const {
    ctx.dy = dy;
    ctx.dx = dx;
  }
  // Bytes an arena on `device` needs for a micro-batch of this shape, its transient buffers
  // included (enough with or without a workspace attached); and the bytes of the workspace
  // (ActivationArena::attach_workspace) the transient buffers need.
  int64_t ArenaBytes(const MicroBatchInfo& mb, kernels::Device device) const {
    return Measure(mb, device, false);
  }
  int64_t WorkspaceBytes(const MicroBatchInfo& mb, kernels::Device device) const {
    return Measure(mb, device, true);
  }

  // Sequential compositions of the pieces.
  void Forward(BlockContext& ctx, ActivationArena& arena, const MicroBatchInfo& mb,
               const float* x, float* y) const {
    Prepare(ctx, arena, mb);
    BeginForward(ctx, x, y);
    Run(pieces().forward, ctx);
  }
  void Forward(BlockContext& ctx, const float* x, float* y) const {  // after Prepare
    BeginForward(ctx, x, y);
    Run(pieces().forward, ctx);
  }
  void BackwardInput(BlockContext& ctx, const float* dy, float* dx) const {
    BeginBackward(ctx, dy, dx);
    Run(pieces().backward_input, ctx);
  }
  void BackwardWeight(BlockContext& ctx) const { Run(pieces().backward_weight, ctx); }

 private:
  // The arena's bytes without a workspace, or the workspace's.
  int64_t Measure(const MicroBatchInfo& mb, kernels::Device device, bool workspace_bytes) const {
    std::unique_ptr<BlockContext> ctx = NewContext();
    ActivationArena measure(device), workspace(device);
    if (workspace_bytes) measure.attach_workspace(&workspace);
    Prepare(*ctx, measure, mb);
    return static_cast<int64_t>(workspace_bytes ? workspace.peak() : measure.used());
  }
  // Communication pieces are not waited here: their consumers wait.
  static void Run(const std::vector<BlockPiece>& list, BlockContext& ctx) {
    for (const BlockPiece& piece : list) piece.run(ctx);
  }
};

}  // namespace tessera::trainer
