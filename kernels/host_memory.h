// Host allocator tuning. glibc returns large blocks (>= 128 KiB by default) to the kernel on free
// and maps fresh pages on the next malloc; here every first touch of a page costs ~11 us
// (MACHINE-FACTS.md), and libraries we call (oneDNN's GEMM packing buffers) allocate and free per
// call. Keeping freed memory in the heap removes that cost from every step.
#pragma once

namespace tessera::kernels {

// Makes glibc serve large allocations from the heap and never trim it. Call once at start-up,
// before the first large allocation. Idempotent.
void keep_freed_host_memory();

}  // namespace tessera::kernels
