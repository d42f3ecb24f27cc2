// FP8 GEMM kernel: a block computes a kRows x kRows tile of D, one thread per output. For each
// 128-element K chunk the block decodes the chunk of its A rows and B rows into shared memory
// (e4m3 -> fp32, exact), then each thread sums its row/column products in k order into a fresh
// fp32 partial and promotes it: acc = fma(sa * sb, partial, acc). Products of two e4m3 values are
// exact in fp32, so fused or not, each step rounds once, as on the CPU.
#include "kernels/cuda/fp8_gemm.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/low_precision.h"

namespace tessera::kernels::cuda {

namespace {

constexpr int kRows = 16;  // outputs per block along m and n
constexpr int kChunk = static_cast<int>(kFp8TileK);

__device__ float scale_at(const float* scales, bool weight_blocks, int64_t row, int64_t chunk,
                          int64_t scale_cols) {
  const int64_t scale_row = weight_blocks ? row / kFp8TileK : row;
  return scales[scale_row * scale_cols + chunk];
}

__global__ void fp8_gemm_kernel(float* d, int64_t ldd, const uint8_t* a, const float* a_scales,
                                bool a_blocks, const uint8_t* b, const float* b_scales,
                                bool b_blocks, int64_t m, int64_t n, int64_t k, bool accumulate) {
  // +1: threads of a warp read b_chunk[tx][kk] for 16 tx, which would share one bank otherwise.
  __shared__ float a_chunk[kRows][kChunk + 1];
  __shared__ float b_chunk[kRows][kChunk + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;  // tx along n, ty along m
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows;  // m on x: the larger grid side
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int64_t i = i0 + ty, j = j0 + tx;
  const int64_t chunks = (k + kChunk - 1) / kChunk;
  const int thread = ty * kRows + tx;
  float acc = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t k0 = c * kChunk;
    const int len = static_cast<int>(k - k0 < kChunk ? k - k0 : kChunk);
    // kRows * kChunk elements of each operand, kRows * kRows threads loading.
    for (int e = thread; e < kRows * kChunk; e += kRows * kRows) {
      const int r = e / kChunk, kk = e % kChunk;
      const bool in_k = kk < len;
      a_chunk[r][kk] = in_k && i0 + r < m ? math::e4m3_to_float(a[(i0 + r) * k + k0 + kk]) : 0;
      b_chunk[r][kk] = in_k && j0 + r < n ? math::e4m3_to_float(b[(j0 + r) * k + k0 + kk]) : 0;
    }
    __syncthreads();
    if (i < m && j < n) {
      float partial = 0.0f;
      for (int kk = 0; kk < len; ++kk) partial += a_chunk[ty][kk] * b_chunk[tx][kk];
      const int64_t scale_cols = chunks;
      const float scale = scale_at(a_scales, a_blocks, i, c, scale_cols) *
                          scale_at(b_scales, b_blocks, j, c, scale_cols);
      acc = fmaf(scale, partial, acc);
    }
    __syncthreads();
  }
  if (i < m && j < n) d[i * ldd + j] = accumulate ? acc + d[i * ldd + j] : acc;
}

}  // namespace

void fp8_gemm(float* d, int64_t ldd, const uint8_t* a, const float* a_scales, Fp8Tiling a_tiling,
              const uint8_t* b, const float* b_scales, Fp8Tiling b_tiling, int64_t m, int64_t n,
              int64_t k, float beta, cudaStream_t stream) {
  if (m < 0 || n < 0 || k < 0 || ldd < (n > 1 ? n : 1) || (beta != 0.0f && beta != 1.0f)) {
    throw std::invalid_argument("cuda fp8_gemm: m=" + std::to_string(m) + " n=" +
                                std::to_string(n) + " k=" + std::to_string(k) + " ldd=" +
                                std::to_string(ldd) + " beta=" + std::to_string(beta) +
                                " (sizes >= 0, ldd >= max(n, 1), beta 0 or 1)");
  }
  if (m == 0 || n == 0) return;
  const int64_t grid_x = (m + kRows - 1) / kRows, grid_y = (n + kRows - 1) / kRows;
  if (grid_x > 0x7fffffff || grid_y > 65535) {
    throw std::invalid_argument("cuda fp8_gemm: m=" + std::to_string(m) + " n=" +
                                std::to_string(n) + " exceed one CUDA grid");
  }
  const dim3 grid(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y));
  fp8_gemm_kernel<<<grid, dim3(kRows, kRows), 0, stream>>>(
      d, ldd, a, a_scales, a_tiling == Fp8Tiling::k128x128, b, b_scales,
      b_tiling == Fp8Tiling::k128x128, m, n, k, beta != 0.0f);
  check_launch("fp8_gemm_kernel");
}

}  // namespace tessera::kernels::cuda
