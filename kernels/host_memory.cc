#include "kernels/host_memory.h"

#include <malloc.h>

namespace tessera::kernels {

void keep_freed_host_memory() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // below 1 GiB: from the heap, reusable after free
  mallopt(M_TRIM_THRESHOLD, -1);       // never give the heap's top back to the kernel
}

}  // namespace tessera::kernels
