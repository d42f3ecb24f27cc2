// Placement of a pipeline schedule: which (stage, chunk) holds each virtual stage, which model
// block (range of layers) a virtual stage computes, and which way data flows (DESIGN.md "Pipeline
// schedules as data"). Every place that maps a (stage, chunk) to layers, neighbours or messages
// asks the Placement, so that V-shaped and two-directional schedules are just generators.
//
// Virtual stages are numbered 0 .. virtual_stages()-1 and lie on one or two PATHS. A micro-batch
// takes one path and flows along it: activations from a virtual stage to next(vs), gradients
// back to prev(vs). Position k of a path computes model block k (block 0 holds the embedding, the
// last block the head and loss), so every path runs the whole model.
//
//   looped (gpipe, 1f1b, zb1p, interleaved; Megatron's convention): one path of pp * chunks
//     virtual stages, vs = chunk * pp + stage held by (stage, chunk), block = vs.
//   v_shape (DualPipeV): one path of 2 pp virtual stages; stage r holds vs r on chunk 0 and
//     vs 2pp-1-r on chunk 1, block = vs. Stage pp-1 hands chunk 0's output to its own chunk 1, and
//     stage 0 holds both the embedding (block 0) and the head (block 2pp-1).
//   bidirectional (DualPipe): two paths of pp virtual stages. Path 0 (vs 0 .. pp-1) runs the first
//     half of the micro-batches from stage 0 to pp-1 on chunk 0; path 1 (vs pp .. 2pp-1) runs the
//     second half from stage pp-1 to stage 0 on chunk 1: vs pp + k is held by (pp-1-k, 1). Block
//     k is held twice, by (k, 0) and (pp-1-k, 1): MIRRORED parameters, whose gradients the trainer
//     sums over the mirror pair.
#pragma once

#include <string>
#include <vector>

namespace tessera::parallel {

struct StageChunk {
  int stage = 0;
  int chunk = 0;
  bool operator==(const StageChunk&) const = default;
};

class Placement {
 public:
  enum class Kind { kLooped, kVShape, kBidirectional };

  Placement() : Placement(looped(1, 1)) {}
  static Placement looped(int pp, int chunks);
  static Placement v_shape(int pp);
  // REQUIRES micro_batches even (each direction runs half).
  static Placement bidirectional(int pp, int micro_batches);

  Kind kind() const { return kind_; }
  int pp() const { return pp_; }
  int chunks() const { return chunks_; }
  int virtual_stages() const { return static_cast<int>(holder_.size()); }
  int paths() const { return kind_ == Kind::kBidirectional ? 2 : 1; }
  // Model blocks the layers are split into (virtual stages per path).
  int blocks() const { return virtual_stages() / paths(); }
  // True when every block is held by two (stage, chunk) pairs.
  bool mirrored() const { return kind_ == Kind::kBidirectional; }

  // The virtual stage (stage, chunk) holds. REQUIRES 0 <= stage < pp, 0 <= chunk < chunks.
  int virtual_stage(int stage, int chunk) const;
  StageChunk holder(int vs) const { return holder_.at(static_cast<size_t>(vs)); }
  int stage_of(int vs) const { return holder(vs).stage; }
  int chunk_of(int vs) const { return holder(vs).chunk; }
  // Neighbours along the path: -1 past either end.
  int next(int vs) const;
  int prev(int vs) const;
  bool first(int vs) const { return prev(vs) < 0; }
  bool last(int vs) const { return next(vs) < 0; }
  // The model block virtual stage vs computes (its position on its path).
  int block(int vs) const { return vs % blocks(); }
  int path_of_virtual(int vs) const { return vs / blocks(); }
  // The path micro-batch mb takes (bidirectional: the first half path 0, the rest path 1).
  int path_of(int micro_batch) const;
  // Whether micro-batch mb passes through virtual stage vs.
  bool visits(int micro_batch, int vs) const { return path_of(micro_batch) == path_of_virtual(vs); }

  // "looped", "v-shape", "bidirectional".
  std::string kind_name() const;

 private:
  Placement(Kind kind, int pp, int chunks, int micro_batches);

  Kind kind_;
  int pp_, chunks_, micro_batches_;
  std::vector<StageChunk> holder_;         // [vs]
  std::vector<std::vector<int>> vs_of_;    // [stage][chunk]
};

}  // namespace tessera::parallel
