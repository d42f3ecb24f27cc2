// Runs two micro-batches through a block's pieces (trainer/layers/block.h), as the MoE tests do:
// sequentially (c0's forward, backward_input, backward_weight, then c1's), or interleaved the way
// an FB pair overlaps (c1's forward pieces alternating with c0's backward_input pieces). Both
// contexts must be prepared and have begun their forward and backward.
#pragma once

#include <algorithm>
#include <vector>

#include "trainer/layers/block.h"

namespace tessera::trainer::testing {

inline void RunTwoMicroBatches(const BlockPieces& p, BlockContext& c0, BlockContext& c1,
                               bool interleaved) {
  auto run = [](const std::vector<BlockPiece>& list, BlockContext& c) {
    for (const BlockPiece& piece : list) piece.run(c);
  };
  run(p.forward, c0);
  if (interleaved) {
    for (size_t i = 0; i < std::max(p.forward.size(), p.backward_input.size()); ++i) {
      if (i < p.forward.size()) p.forward[i].run(c1);
      if (i < p.backward_input.size()) p.backward_input[i].run(c0);
    }
    run(p.backward_weight, c0);
  } else {
    run(p.backward_input, c0);
    run(p.backward_weight, c0);
    run(p.forward, c1);
  }
  run(p.backward_input, c1);
  run(p.backward_weight, c1);
}

}  // namespace tessera::trainer::testing
