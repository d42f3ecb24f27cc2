// Causal attention per (batch, head): S = scale Q K^T (gemm), causal softmax rows (TESSERA_HD),
// O = P V (gemm). The (b, h) loop is sequential so that one (T, T) scratch serves backward and
// the GEMMs get all threads; softmax rows run in parallel.
// Causal blocking: rows are taken kRowBlock at a time, and a block of rows [r0, r1) only needs
// columns [0, r1), so the GEMMs skip the masked upper triangle (almost half the attention FLOPs
// for long sequences). P keeps its full (T, T) layout with zeros above the diagonal.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu_loop.h"
#include "kernels/gemm.h"
#include "kernels/math/softmax.h"

namespace tessera::kernels {

namespace {

constexpr int64_t kRowBlock = 64;

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
      for (int64_t r0 = 0; r0 < T_len; r0 += kRowBlock) {
        const int64_t r1 = std::min(T_len, r0 + kRowBlock), rows = r1 - r0;
        gemm<T>(Trans::kNo, Trans::kYes, rows, r1, hd, scale, q + base + r0 * ld_qkv, ld_qkv,
                k + base, ld_qkv, T(0), P + r0 * T_len, T_len);
#pragma omp parallel for if (rows * r1 >= cpu::kMinParallelWork)
        for (int64_t t = r0; t < r1; ++t) math::causal_softmax_row(P + t * T_len, t + 1, T_len);
        gemm<T>(Trans::kNo, Trans::kNo, rows, hd, r1, T(1), P + r0 * T_len, T_len, v + base,
                ld_qkv, T(0), out + (b * T_len + r0) * ld_out + h * hd, ld_out);
      }
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
      // Row blocks from the last: it spans every column, so its beta = 0 initialises all of dK
      // and dV, and the earlier (narrower) blocks accumulate into their prefix.
      const int64_t last_r0 = (T_len - 1) / kRowBlock * kRowBlock;
      for (int64_t r0 = last_r0; r0 >= 0; r0 -= kRowBlock) {
        const int64_t r1 = std::min(T_len, r0 + kRowBlock), rows = r1 - r0;
        const T beta = r0 == last_r0 ? T(0) : T(1);
        const T* Pb = P + r0 * T_len;
        const T* dOb = dO + r0 * ld_out;
        T* dSb = scratch + r0 * T_len;
        // dV[0:r1] += P_b^T dO_b
        gemm<T>(Trans::kYes, Trans::kNo, r1, hd, rows, T(1), Pb, T_len, dOb, ld_out, beta,
                dv + dbase, ld_dqkv);
        // dP_b = dO_b V[0:r1]^T, then dS_b = scale * softmax_backward(dP_b) in place
        gemm<T>(Trans::kNo, Trans::kYes, rows, r1, hd, T(1), dOb, ld_out, v + base, ld_qkv, T(0),
                dSb, T_len);
#pragma omp parallel for if (rows * r1 >= cpu::kMinParallelWork)
        for (int64_t t = r0; t < r1; ++t) {
          math::causal_softmax_backward_row(scratch + t * T_len, P + t * T_len, t + 1, r1, scale);
        }
        // dQ_b = dS_b K[0:r1], dK[0:r1] += dS_b^T Q_b
        gemm<T>(Trans::kNo, Trans::kNo, rows, hd, r1, T(1), dSb, T_len, k + base, ld_qkv, T(0),
                dq + dbase + r0 * ld_dqkv, ld_dqkv);
        gemm<T>(Trans::kYes, Trans::kNo, r1, hd, rows, T(1), dSb, T_len, q + base + r0 * ld_qkv,
                ld_qkv, beta, dk + dbase, ld_dqkv);
      }
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
