// Causal attention per (batch, head): S = scale Q K^T (gemm), causal softmax rows (TESSERA_HD),
// O = P V (gemm). The (b, h) loop is sequential so that one (T, T) scratch serves backward and
// the GEMMs get all threads; softmax rows run in parallel.
#include "kernels/attention.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu_loop.h"
#include "kernels/gemm.h"
#include "kernels/math/softmax.h"

namespace tessera::kernels {

namespace {
void check_strides(const char* op, int64_t H, int64_t hd, int64_t ld_a, const char* name_a,
                   int64_t ld_b, const char* name_b) {
  if (ld_a < H * hd || ld_b < H * hd) {
    throw std::invalid_argument(std::string(op) + ": row strides " + name_a + "=" +
                                std::to_string(ld_a) + ", " + name_b + "=" +
                                std::to_string(ld_b) + " must be >= H*hd = " +
                                std::to_string(H * hd));
  }
}
}  // namespace

template <typename T>
void attention_forward(T* out, int64_t ld_out, T* probs, const T* q, const T* k, const T* v,
                       int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_forward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = b * T_len * ld_qkv + h * hd;
      T* P = probs + (b * H + h) * T_len * T_len;
      gemm<T>(Trans::kNo, Trans::kYes, T_len, T_len, hd, scale, q + base, ld_qkv, k + base,
              ld_qkv, T(0), P, T_len);
#pragma omp parallel for if (T_len * T_len >= cpu::kMinParallelWork)
      for (int64_t t = 0; t < T_len; ++t) math::causal_softmax_row(P + t * T_len, t + 1, T_len);
      gemm<T>(Trans::kNo, Trans::kNo, T_len, hd, T_len, T(1), P, T_len, v + base, ld_qkv, T(0),
              out + b * T_len * ld_out + h * hd, ld_out);
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                        int64_t ld_out, const T* probs, const T* q, const T* k, const T* v,
                        int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_backward", H, hd, ld_dqkv, "ld_dqkv", ld_qkv, "ld_qkv");
  check_strides("attention_backward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = b * T_len * ld_qkv + h * hd;
      const int64_t dbase = b * T_len * ld_dqkv + h * hd;
      const T* dO = dout + b * T_len * ld_out + h * hd;
      const T* P = probs + (b * H + h) * T_len * T_len;
      // dV = P^T dO
      gemm<T>(Trans::kYes, Trans::kNo, T_len, hd, T_len, T(1), P, T_len, dO, ld_out, T(0),
              dv + dbase, ld_dqkv);
      // dP = dO V^T, then dS = scale * softmax_backward(dP) in place
      gemm<T>(Trans::kNo, Trans::kYes, T_len, T_len, hd, T(1), dO, ld_out, v + base, ld_qkv,
              T(0), scratch, T_len);
#pragma omp parallel for if (T_len * T_len >= cpu::kMinParallelWork)
      for (int64_t t = 0; t < T_len; ++t) {
        math::causal_softmax_backward_row(scratch + t * T_len, P + t * T_len, t + 1, T_len,
                                          scale);
      }
      // dQ = dS K, dK = dS^T Q
      gemm<T>(Trans::kNo, Trans::kNo, T_len, hd, T_len, T(1), scratch, T_len, k + base, ld_qkv,
              T(0), dq + dbase, ld_dqkv);
      gemm<T>(Trans::kYes, Trans::kNo, T_len, hd, T_len, T(1), scratch, T_len, q + base, ld_qkv,
              T(0), dk + dbase, ld_dqkv);
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void attention_forward<T>(T*, int64_t, T*, const T*, const T*, const T*, int64_t,  \
                                     int64_t, int64_t, int64_t, int64_t);                     \
  template void attention_backward<T>(T*, T*, T*, int64_t, T*, const T*, int64_t, const T*,   \
                                      const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                      int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
