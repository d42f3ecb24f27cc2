// Embedding kernels: a thread per output element (forward, a coalesced gather) or per column of
// the table gradient (backward, rows added in order: no atomics, deterministic). See launch.cuh.
#include "kernels/cuda/embedding.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"

namespace tessera::kernels::cuda {

namespace {

void check_sizes(const char* op, int64_t N, int64_t C, int64_t V) {
  if (N < 0 || C < 0 || V < 1) {
    throw std::invalid_argument(std::string(op) + ": sizes N=" + std::to_string(N) +
                                ", C=" + std::to_string(C) + ", V=" + std::to_string(V) +
                                " (need N, C >= 0 and V >= 1)");
  }
}

template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* table, int64_t N,
                                         int64_t C, int64_t V) {
  const int64_t i = detail::thread_index();
  if (i >= N * C) return;
  const int64_t id = ids[i / C];
  out[i] = id < 0 || id >= V ? detail::quiet_nan(T()) : table[id * C + i % C];
}

template <typename T>
__global__ void embedding_backward_weight_kernel(T* dtable, const T* dout, const int32_t* ids,
                                                 int64_t N, int64_t C, int64_t V) {
  const int64_t c = detail::thread_index();
  if (c >= C) return;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t id = ids[n];
    if (id < 0 || id >= V) {
      dtable[c] = detail::quiet_nan(T());  // row 0; NaN survives the later additions
      continue;
    }
    dtable[id * C + c] += dout[n * C + c];
  }
}

}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C,
                       int64_t V, cudaStream_t stream) {
  check_sizes("cuda embedding_forward", N, C, V);
  if (N * C == 0) return;
  embedding_forward_kernel<<<detail::blocks_for(N * C, "embedding_forward"),
                             detail::kThreadsPerBlock, 0, stream>>>(out, ids, table, N, C, V);
  check_launch("embedding_forward_kernel");
}

template <typename T>
void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                               int64_t C, int64_t V, cudaStream_t stream) {
  check_sizes("cuda embedding_backward_weight", N, C, V);
  if (N * C == 0) return;
  embedding_backward_weight_kernel<<<detail::blocks_for(C, "embedding_backward_weight"),
                                     detail::kThreadsPerBlock, 0, stream>>>(dtable, dout, ids, N,
                                                                            C, V);
  check_launch("embedding_backward_weight_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t, \
                                     cudaStream_t);                                          \
  template void embedding_backward_weight<T>(T*, const T*, const int32_t*, int64_t, int64_t,  \
                                             int64_t, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
