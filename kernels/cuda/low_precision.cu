// Low-precision conversion kernels: one thread per element, calling kernels/math/low_precision.h.
#include "kernels/cuda/low_precision.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/low_precision.h"

namespace tessera::kernels::cuda {

namespace {

// out[i] = f(in[i]); F is one of the math:: conversions (a function object, so it inlines).
template <typename Out, typename In, typename F>
__global__ void map_kernel(Out* out, const In* in, int64_t n, F f) {
  const int64_t i = detail::thread_index();
  if (i < n) out[i] = f(in[i]);
}

template <typename Out, typename In, typename F>
void map(Out* out, const In* in, int64_t n, F f, const char* name, cudaStream_t stream) {
  if (n <= 0) return;
  map_kernel<<<detail::blocks_for(n, name), detail::kThreadsPerBlock, 0, stream>>>(out, in, n, f);
  check_launch(name);
}

struct EncodeBf16 {
  __device__ uint16_t operator()(float x) const { return math::float_to_bf16(x); }
};
struct EncodeE4M3 {
  __device__ uint8_t operator()(float x) const { return math::float_to_e4m3(x); }
};
struct EncodeE5M2 {
  __device__ uint8_t operator()(float x) const { return math::float_to_e5m2(x); }
};
struct EncodeE5M2Sat {
  __device__ uint8_t operator()(float x) const { return math::float_to_e5m2_sat(x); }
};
struct DecodeBf16 {
  __device__ float operator()(uint16_t c) const { return math::bf16_to_float(c); }
};
struct DecodeE4M3 {
  __device__ float operator()(uint8_t c) const { return math::e4m3_to_float(c); }
};
struct DecodeE5M2 {
  __device__ float operator()(uint8_t c) const { return math::e5m2_to_float(c); }
};

// One thread per element of op(x), in out's (packed) order.
__global__ void encode_bf16_2d_kernel(uint16_t* out, bool trans, const float* x, int64_t ldx,
                                      int64_t rows, int64_t cols) {
  const int64_t i = detail::thread_index();
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  out[i] = math::float_to_bf16(trans ? x[c * ldx + r] : x[r * ldx + c]);
}

}  // namespace

void encode_bf16_2d(uint16_t* out, Trans trans, const float* x, int64_t ldx, int64_t rows,
                    int64_t cols, cudaStream_t stream) {
  const int64_t stored_width = trans == Trans::kNo ? cols : rows;
  if (rows < 0 || cols < 0 || ldx < std::max<int64_t>(stored_width, 1)) {
    throw std::invalid_argument("cuda encode_bf16_2d: rows=" + std::to_string(rows) +
                                " cols=" + std::to_string(cols) + " ldx=" +
                                std::to_string(ldx) + " (sizes >= 0, ldx >= stored row width)");
  }
  if (rows * cols == 0) return;
  encode_bf16_2d_kernel<<<detail::blocks_for(rows * cols, "encode_bf16_2d"),
                          detail::kThreadsPerBlock, 0, stream>>>(out, trans == Trans::kYes, x,
                                                                 ldx, rows, cols);
  check_launch("encode_bf16_2d_kernel");
}

void encode_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream) {
  map(out, x, n, EncodeBf16{}, "encode_bf16", stream);
}
void encode_e4m3(uint8_t* out, const float* x, int64_t n, cudaStream_t stream) {
  map(out, x, n, EncodeE4M3{}, "encode_e4m3", stream);
}
void encode_e5m2(uint8_t* out, const float* x, int64_t n, cudaStream_t stream) {
  map(out, x, n, EncodeE5M2{}, "encode_e5m2", stream);
}
void encode_e5m2_sat(uint8_t* out, const float* x, int64_t n, cudaStream_t stream) {
  map(out, x, n, EncodeE5M2Sat{}, "encode_e5m2_sat", stream);
}
void decode_bf16(float* out, const uint16_t* code, int64_t n, cudaStream_t stream) {
  map(out, code, n, DecodeBf16{}, "decode_bf16", stream);
}
void decode_e4m3(float* out, const uint8_t* code, int64_t n, cudaStream_t stream) {
  map(out, code, n, DecodeE4M3{}, "decode_e4m3", stream);
}
void decode_e5m2(float* out, const uint8_t* code, int64_t n, cudaStream_t stream) {
  map(out, code, n, DecodeE5M2{}, "decode_e5m2", stream);
}

}  // namespace tessera::kernels::cuda
