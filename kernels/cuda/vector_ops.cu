// Element-wise kernels (a thread per element) and a two-pass deterministic reduction: pass 1
// gives each chunk of kReduceChunk elements a block that sums it in a fixed order (strided per
// thread, then a fixed tree); pass 2, one block, adds the chunk sums in the same way. Pass 2's
// result lands after the partial sums in one stream-ordered scratch allocation.
#include "kernels/cuda/vector_ops.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/vector_ops.h"

namespace tessera::kernels::cuda {

namespace {

constexpr int kReduceThreads = 256;
static_assert(kReduceChunk % kReduceThreads == 0, "a chunk is whole strides of the block");

void check_n(const char* op, int64_t n) {
  if (n < 0) throw std::invalid_argument(std::string(op) + ": negative size " + std::to_string(n));
}

template <typename T>
__global__ void fill_kernel(T* x, T value, int64_t n) {
  const int64_t i = detail::thread_index();
  if (i < n) x[i] = value;
}

template <typename T>
__global__ void add_kernel(T* y, const T* x, int64_t n) {
  const int64_t i = detail::thread_index();
  if (i < n) y[i] += x[i];
}

template <typename T>
__global__ void add_2d_kernel(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t cols,
                              int64_t n) {
  const int64_t i = detail::thread_index();
  if (i < n) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * ld_dst + c] += src[r * ld_src + c];
  }
}

template <typename T>
__global__ void scale_kernel(T* x, T s, int64_t n) {
  const int64_t i = detail::thread_index();
  if (i < n) x[i] *= s;
}

// Adds the block's per-thread values in a fixed tree; thread 0 gets the total.
__device__ double block_sum(double v) {
  __shared__ double partial[kReduceThreads];
  partial[threadIdx.x] = v;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  return partial[0];
}

// Pass 1: out[chunk] = sum over the chunk of x (or x^2).
template <typename T, bool kSquare>
__global__ void __launch_bounds__(kReduceThreads)
    chunk_sum_kernel(double* out, const T* x, int64_t n) {
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kReduceChunk;
  const int64_t end = begin + kReduceChunk < n ? begin + kReduceChunk : n;
  double s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kReduceThreads) {
    const double v = static_cast<double>(x[i]);
    s += kSquare ? v * v : v;
  }
  const double total = block_sum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// Pass 2 (one block): *out = sum of the chunk sums.
__global__ void __launch_bounds__(kReduceThreads)
    total_sum_kernel(double* out, const double* partial, int64_t chunks) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < chunks; i += kReduceThreads) s += partial[i];
  const double total = block_sum(s);
  if (threadIdx.x == 0) *out = total;
}

template <typename T, bool kSquare>
double reduce(const T* x, int64_t n, cudaStream_t stream, const char* op) {
  check_n(op, n);
  if (n == 0) return 0.0;
  const int64_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  if (chunks > 0x7fffffff) {
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(n) +
                                " elements exceed one CUDA grid");
  }
  // chunks partial sums, then the total; freed (stream-ordered) on every exit.
  double* scratch = nullptr;
  TESSERA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch),
                                     sizeof(double) * (chunks + 1), stream));
  struct FreeAsync {
    double* p;
    cudaStream_t s;
    ~FreeAsync() { cudaFreeAsync(p, s); }
  } free_scratch{scratch, stream};

  chunk_sum_kernel<T, kSquare><<<static_cast<unsigned>(chunks), kReduceThreads, 0, stream>>>(
      scratch, x, n);
  check_launch("chunk_sum_kernel");
  total_sum_kernel<<<1, kReduceThreads, 0, stream>>>(scratch + chunks, scratch, chunks);
  check_launch("total_sum_kernel");
  double result = 0;
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(&result, scratch + chunks, sizeof(double),
                                     cudaMemcpyDeviceToHost, stream));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

}  // namespace

template <typename T>
void copy(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  check_n("cuda copy", n);
  if (n == 0 || dst == src) return;
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, sizeof(T) * n, cudaMemcpyDeviceToDevice, stream));
}

template <typename T>
void fill(T* x, T value, int64_t n, cudaStream_t stream) {
  check_n("cuda fill", n);
  if (n == 0) return;
  fill_kernel<<<detail::blocks_for(n, "fill"), detail::kThreadsPerBlock, 0, stream>>>(x, value,
                                                                                      n);
  check_launch("fill_kernel");
}

template <typename T>
void add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream) {
  check_n("cuda add_inplace", n);
  if (n == 0) return;
  add_kernel<<<detail::blocks_for(n, "add_inplace"), detail::kThreadsPerBlock, 0, stream>>>(y, x,
                                                                                            n);
  check_launch("add_kernel");
}

template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
             bool accumulate, cudaStream_t stream) {
  check_copy_2d("cuda copy_2d", ld_dst, ld_src, rows, cols);
  if (rows == 0 || cols == 0) return;
  if (!accumulate) {
    TESSERA_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(T) * ld_dst, src, sizeof(T) * ld_src,
                                         sizeof(T) * cols, rows, cudaMemcpyDeviceToDevice,
                                         stream));
    return;
  }
  const int64_t n = rows * cols;
  add_2d_kernel<<<detail::blocks_for(n, "copy_2d"), detail::kThreadsPerBlock, 0, stream>>>(
      dst, ld_dst, src, ld_src, cols, n);
  check_launch("add_2d_kernel");
}

template <typename T>
void scale_inplace(T* x, T s, int64_t n, cudaStream_t stream) {
  check_n("cuda scale_inplace", n);
  if (n == 0) return;
  scale_kernel<<<detail::blocks_for(n, "scale_inplace"), detail::kThreadsPerBlock, 0, stream>>>(
      x, s, n);
  check_launch("scale_kernel");
}

template <typename T>
double sum(const T* x, int64_t n, cudaStream_t stream) {
  return reduce<T, false>(x, n, stream, "cuda sum");
}

template <typename T>
double sum_squares(const T* x, int64_t n, cudaStream_t stream) {
  return reduce<T, true>(x, n, stream, "cuda sum_squares");
}

#define TESSERA_INSTANTIATE(T)                                          \
  template void copy<T>(T*, const T*, int64_t, cudaStream_t);          \
  template void fill<T>(T*, T, int64_t, cudaStream_t);                 \
  template void add_inplace<T>(T*, const T*, int64_t, cudaStream_t);   \
  template void copy_2d<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, bool, cudaStream_t); \
  template void scale_inplace<T>(T*, T, int64_t, cudaStream_t);        \
  template double sum<T>(const T*, int64_t, cudaStream_t);             \
  template double sum_squares<T>(const T*, int64_t, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
