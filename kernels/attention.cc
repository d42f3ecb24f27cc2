// Causal attention: (batch, head) pairs spread over the threads, each pair computed whole on one
// thread by kernels/attention_tiled.cc (so a pair computes exactly what it would alone, and the
// result does not depend on the thread count). The backward's scratch is the caller's on the
// first thread and a per-thread buffer on the others.
#include "kernels/attention.h"

#include <omp.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention_tiled.h"
#include "kernels/gemm.h"  // cpu_threads

namespace tessera::kernels {

namespace {

void check_strides(const char* op, int64_t H, int64_t hd, int64_t ld_a, const char* name_a,
                   int64_t ld_b, const char* name_b) {
  if (ld_a < H * hd || ld_b < H * hd) {
    throw std::invalid_argument(std::string(op) + ": row strides " + name_a + "=" +
                                std::to_string(ld_a) + ", " + name_b + "=" + std::to_string(ld_b) +
                                " must be >= H*hd = " + std::to_string(H * hd));
  }
}

}  // namespace

int64_t attention_scratch_elements(int64_t T_len) {
  return detail::attention_pair_scratch_elements(T_len);
}

template <typename T>
void attention_forward(T* out, int64_t ld_out, T* lse, const T* q, const T* k, const T* v,
                       int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_forward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const int64_t pairs = B * H;
#pragma omp parallel for schedule(dynamic, 1) if (pairs > 1 && cpu_threads() > 1)
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t b = i / H, h = i % H, base = b * T_len * ld_qkv + h * hd;
    detail::attention_forward_pair(out + b * T_len * ld_out + h * hd, ld_out, lse + i * T_len,
                                   q + base, k + base, v + base, ld_qkv, T_len, hd, scale);
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                        const T* out, int64_t ld_out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H,
                        int64_t hd) {
  check_strides("attention_backward", H, hd, ld_dqkv, "ld_dqkv", ld_qkv, "ld_qkv");
  check_strides("attention_backward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const int64_t pairs = B * H;
#pragma omp parallel if (pairs > 1 && cpu_threads() > 1)
  {
    // The caller's scratch serves the first thread; the others keep one of their own.
    T* mine = scratch;
    if (omp_get_thread_num() != 0) {
      thread_local std::vector<T> own;
      const auto n = static_cast<size_t>(attention_scratch_elements(T_len));
      if (own.size() < n) own.resize(n);
      mine = own.data();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < pairs; ++i) {
      const int64_t b = i / H, h = i % H;
      const int64_t base = b * T_len * ld_qkv + h * hd, dbase = b * T_len * ld_dqkv + h * hd;
      const int64_t obase = b * T_len * ld_out + h * hd;
      detail::attention_backward_pair(dq + dbase, dk + dbase, dv + dbase, ld_dqkv, mine,
                                      dout + obase, out + obase, ld_out, lse + i * T_len, q + base,
                                      k + base, v + base, ld_qkv, T_len, hd, scale);
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                                  \
  template void attention_forward<T>(T*, int64_t, T*, const T*, const T*, const T*, int64_t,    \
                                     int64_t, int64_t, int64_t, int64_t);                       \
  template void attention_backward<T>(T*, T*, T*, int64_t, T*, const T*, const T*, int64_t,     \
                                      const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                      int64_t, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
