// Host memory a MoE block's row exchanges keep per micro-batch context (trainer/layers/moe_block.h,
// Context): the packed bf16 / fp8 rows sent and received (x_send, x_recv; node-aware dispatch's
// second hop x2_send, x2_recv; y_send, y_recv). The vectors grow to the largest exchange and
// stay, so the worst case (routing as the arena sizes it: moe_block.cc Carve) is what the memory
// plan counts (trainer/memory_plan.h; on the CPU, where host memory is the device's). fp32
// exchanges move the backend's rows directly and keep nothing; one process (ep 1) round-trips
// rows through a temporary freed at once. Not counted here: the fp32 host staging of rows where
// the host cannot address the backend's memory (GPUs).
#pragma once

#include <cstdint>

#include "parallel/row_codec.h"

namespace tessera::trainer {

struct MoeExchangeShape {
  int64_t tokens = 0;  // N of one micro-batch
  int64_t dim = 0, top_k = 0, n_experts = 0;
  int64_t ep = 1, ep_ranks_per_node = 1;
  bool node_aware = false;
  // MoeBlock's wire formats: forward dispatch and combine, backward dispatch and combine grads.
  parallel::RowFormat dispatch = parallel::RowFormat::kFp32, combine = parallel::RowFormat::kFp32,
                      dispatch_grads = parallel::RowFormat::kFp32,
                      combine_grads = parallel::RowFormat::kFp32;
};

// Bytes of one context's exchange buffers at worst-case routing (see above).
int64_t moe_exchange_bytes(const MoeExchangeShape& s);

}  // namespace tessera::trainer
