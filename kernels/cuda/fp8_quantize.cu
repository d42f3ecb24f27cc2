// FP8 quantisation kernel: one block of kFp8TileK threads per tile (1x128) or block (128x128);
// thread t owns column t of the tile. The block reduces the tile's amax in shared memory, then
// every thread quantises its column with the tile's scale. Correctness over speed.
#include "kernels/cuda/fp8_quantize.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/fp8_scaling.h"

namespace tessera::kernels::cuda {

namespace {

constexpr int kTile = static_cast<int>(kFp8TileK);

// tile_rows: 1 (1x128) or 128 (128x128). Tiles are numbered row-major, as the scales.
__global__ void fp8_quantize_kernel(uint8_t* codes, float* scales, int64_t tile_rows, bool trans,
                                    const float* x, int64_t ldx, int64_t rows, int64_t cols,
                                    int64_t scale_cols) {
  __shared__ float amax_of[kTile];
  const int64_t tile = blockIdx.x;
  const int64_t tr = tile / scale_cols, tc = tile % scale_cols;
  const int64_t r0 = tr * tile_rows, r1 = min(rows, r0 + tile_rows);
  const int64_t c = tc * kFp8TileK + threadIdx.x;
  const bool mine = c < cols;
  auto at = [&](int64_t r) { return trans ? x[c * ldx + r] : x[r * ldx + c]; };
  float amax = 0.0f;
  if (mine) {
    for (int64_t r = r0; r < r1; ++r) amax = math::fp8_amax_update(amax, at(r));
  }
  amax_of[threadIdx.x] = amax;
  __syncthreads();
  for (int half = kTile / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float other = amax_of[threadIdx.x + half];
      if (other > amax_of[threadIdx.x]) amax_of[threadIdx.x] = other;
    }
    __syncthreads();
  }
  const float scale = math::fp8_scale(amax_of[0]);
  if (threadIdx.x == 0) scales[tile] = scale;
  if (!mine) return;
  for (int64_t r = r0; r < r1; ++r) codes[r * cols + c] = math::fp8_quantize_elem(at(r), scale);
}

__global__ void fp8_dequantize_kernel(float* x, const uint8_t* codes, const float* scales,
                                      int64_t tile_rows, int64_t rows, int64_t cols,
                                      int64_t scale_cols) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  x[i] = math::e4m3_to_float(codes[i]) * scales[(r / tile_rows) * scale_cols + c / kFp8TileK];
}

void check_sizes(const char* op, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument(std::string("cuda ") + op + ": negative size rows=" +
                                std::to_string(rows) + " cols=" + std::to_string(cols));
  }
}

}  // namespace

void fp8_quantize(uint8_t* codes, float* scales, Fp8Tiling tiling, Trans trans, const float* x,
                  int64_t ldx, int64_t rows, int64_t cols, cudaStream_t stream) {
  check_sizes("fp8_quantize", rows, cols);
  const int64_t stored_width = trans == Trans::kNo ? cols : rows;
  if (ldx < std::max<int64_t>(stored_width, 1)) {
    throw std::invalid_argument("cuda fp8_quantize: row stride ldx=" + std::to_string(ldx) +
                                " < stored row width " + std::to_string(stored_width));
  }
  const int64_t scale_cols = fp8_scale_cols(cols);
  const int64_t tiles = fp8_scale_rows(tiling, rows) * scale_cols;
  if (tiles == 0) return;
  if (tiles > 0x7fffffff) {
    throw std::invalid_argument("cuda fp8_quantize: " + std::to_string(tiles) +
                                " tiles exceed one CUDA grid");
  }
  const int64_t tile_rows = tiling == Fp8Tiling::k1x128 ? 1 : kFp8TileK;
  fp8_quantize_kernel<<<static_cast<unsigned int>(tiles), kTile, 0, stream>>>(
      codes, scales, tile_rows, trans == Trans::kYes, x, ldx, rows, cols, scale_cols);
  check_launch("fp8_quantize_kernel");
}

void fp8_dequantize(float* x, const uint8_t* codes, const float* scales, Fp8Tiling tiling,
                    int64_t rows, int64_t cols, cudaStream_t stream) {
  check_sizes("fp8_dequantize", rows, cols);
  const int64_t n = rows * cols;
  if (n == 0) return;
  const int64_t tile_rows = tiling == Fp8Tiling::k1x128 ? 1 : kFp8TileK;
  fp8_dequantize_kernel<<<detail::blocks_for(n, "fp8_dequantize"), detail::kThreadsPerBlock, 0,
                          stream>>>(x, codes, scales, tile_rows, rows, cols, fp8_scale_cols(cols));
  check_launch("fp8_dequantize_kernel");
}

}  // namespace tessera::kernels::cuda
