// Causal attention on the CPU, one (batch, head) pair at a time, its queries kQueryBlock at a
// time (flash-attention's algorithm with the whole score row of a block at hand, so no online
// rescaling: the block's keys are at most its last query).
//
// A block's scores are kept transposed, St[key][query], queries in vector lanes: the causal
// softmax runs down the columns with no horizontal reductions, and every product of the forward
// (scores, P V) and the backward (scores again, dP, dV, dK, dQ) is the one register-tiled kernel
// `product`: out[r][0:W] (+)= sum_s M(r, s) R[s][0:W], M read as broadcasts through two
// strides, R's rows as vectors. Nothing of the (T, T) matrices outlives a block: they live in
// per-thread (T, kQueryBlock) buffers that stay in cache, and the backward recomputes P from the
// saved logsumexp.
//
// Bits: every output element is one chain of std::fma over s in order (from 0, or added to the
// output once per block where dK and dV accumulate over blocks), so results do not depend on
// the tile shape, the ISA clone (an fma rounds once on every ISA: the AVX2 and AVX-512 clones
// use the instruction, the baseline clone libm's exact but slow fma; cpu_simd.h's exp_f32 is
// ISA-independent), nor the thread count: the (batch, head) pairs are spread over the threads,
// each computed alone. Double (gradient checks) runs the same code with std::exp and std::log.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cpu_simd.h"
#include "kernels/gemm.h"

namespace tessera::kernels {

namespace {

// Queries per block: the lanes of St (two AVX-512 or four AVX2 vectors of floats).
constexpr int64_t kQueryBlock = 32;

void check_strides(const char* op, int64_t H, int64_t hd, int64_t ld_a, const char* name_a,
                   int64_t ld_b, const char* name_b) {
  if (ld_a < H * hd || ld_b < H * hd) {
    throw std::invalid_argument(std::string(op) + ": row strides " + name_a + "=" +
                                std::to_string(ld_a) + ", " + name_b + "=" +
                                std::to_string(ld_b) + " must be >= H*hd = " +
                                std::to_string(H * hd));
  }
}

template <typename T>
[[gnu::always_inline]] inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return cpu::exp_f32(x);
  } else {
    return std::exp(x);
  }
}

// Register tile: kR rows of out by kW lanes,
// out[r][l] (+)= sum_{s in [s0, s1)} M[r * mr + s * ms] * R[s * ldr + l].
template <typename T, int kR, int kW>
[[gnu::always_inline]] inline void tile(T* out, int64_t ldo, bool accumulate, const T* M,
                                        int64_t mr, int64_t ms, const T* R, int64_t ldr,
                                        int64_t s0, int64_t s1) {
  T acc[kR][kW] = {};
  for (int64_t s = s0; s < s1; ++s) {
    const T* rs = R + s * ldr;
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) {
      const T m = M[r * mr + s * ms];
#pragma omp simd
      for (int l = 0; l < kW; ++l) acc[r][l] = std::fma(m, rs[l], acc[r][l]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) {
    T* o = out + r * ldo;
    if (accumulate) {
#pragma omp simd
      for (int l = 0; l < kW; ++l) o[l] += acc[r][l];
    } else {
#pragma omp simd
      for (int l = 0; l < kW; ++l) o[l] = acc[r][l];
    }
  }
}

// The same for the last w < kW lanes of a row (a head width that is not a multiple of kW), kept
// apart so that `tile`'s accumulators stay in registers.
template <typename T, int kR, int kW>
[[gnu::always_inline]] inline void narrow_tile(T* out, int64_t ldo, bool accumulate, const T* M,
                                               int64_t mr, int64_t ms, const T* R, int64_t ldr,
                                               int64_t s0, int64_t s1, int w) {
  T acc[kR][kW] = {};
  for (int64_t s = s0; s < s1; ++s) {
    for (int r = 0; r < kR; ++r) {
      const T m = M[r * mr + s * ms];
      for (int l = 0; l < w; ++l) acc[r][l] = std::fma(m, R[s * ldr + l], acc[r][l]);
    }
  }
  for (int r = 0; r < kR; ++r) {
    T* o = out + r * ldo;
    for (int l = 0; l < w; ++l) o[l] = accumulate ? o[l] + acc[r][l] : acc[r][l];
  }
}

// The tile sizes of one ISA: kR rows by kW lanes of accumulators fill about half the vector
// registers (AVX-512: 8 x 2 zmm of floats; AVX2: 6 x 2 ymm).
template <int kRows, int kLanes>
struct Tiles {
  static constexpr int kR = kRows;
  static constexpr int kW = kLanes;
};

// Rows [r0, r0 + kRows) of `product`, every lane.
template <typename T, int kRows, int kW>
[[gnu::always_inline]] inline void row_tile(T* out, int64_t ldo, bool accumulate, int64_t W,
                                            const T* M, int64_t mr, int64_t ms, const T* R,
                                            int64_t ldr, int64_t s0, int64_t s1) {
  int64_t w = 0;
  for (; w + kW <= W; w += kW) {
    tile<T, kRows, kW>(out + w, ldo, accumulate, M, mr, ms, R + w, ldr, s0, s1);
  }
  if constexpr (kW > 16) {  // a half-width tile before the narrow lanes (hd 48, 80, ...)
    for (; w + 16 <= W; w += 16) {
      tile<T, kRows, 16>(out + w, ldo, accumulate, M, mr, ms, R + w, ldr, s0, s1);
    }
  }
  if (w < W) {
    narrow_tile<T, kRows, kW>(out + w, ldo, accumulate, M, mr, ms, R + w, ldr, s0, s1,
                              static_cast<int>(W - w));
  }
}

// out[r][0:W] (+)= sum_{s in range(r0, r1)} M[r * mr + s * ms] * R[s * ldr + 0:W] for every row
// r < rows; range(r0, r1) gives the [s0, s1) a tile of rows [r0, r1) needs (the causal bounds).
template <typename T, typename Shape, typename Range>
[[gnu::always_inline]] inline void product(T* out, int64_t ldo, bool accumulate, int64_t rows,
                                           int64_t W, const T* M, int64_t mr, int64_t ms,
                                           const T* R, int64_t ldr, Range range) {
  constexpr int kR = Shape::kR, kW = Shape::kW;
  int64_t r = 0;
  for (; r + kR <= rows; r += kR) {
    const auto [s0, s1] = range(r, r + kR);
    row_tile<T, kR, kW>(out + r * ldo, ldo, accumulate, W, M + r * mr, mr, ms, R, ldr, s0, s1);
  }
  for (; r < rows; ++r) {
    const auto [s0, s1] = range(r, r + 1);
    row_tile<T, 1, kW>(out + r * ldo, ldo, accumulate, W, M + r * mr, mr, ms, R, ldr, s0, s1);
  }
}

// The per-thread buffers of one pair's blocks, in one 64-byte aligned allocation: every row is
// kQueryBlock elements, so every row starts on a cache line and no vector load is split.
template <typename T>
class BlockBuffers {
 public:
  BlockBuffers(int64_t T_len, int64_t hd, bool backward)
      : memory_(static_cast<T*>(std::aligned_alloc(64, sizeof(T) * size(T_len, hd, backward))),
                &std::free) {
    if (memory_ == nullptr) throw std::bad_alloc();
    st = memory_.get();
    qt = st + T_len * kQueryBlock;
    dst = backward ? qt + hd * kQueryBlock : nullptr;
    dot = backward ? dst + T_len * kQueryBlock : nullptr;
    dk = backward ? dot + hd * kQueryBlock : nullptr;
    dv = backward ? dk + T_len * padded(hd) : nullptr;
  }
  // Rows of dk and dv: hd rounded up to whole cache lines.
  static int64_t padded(int64_t hd) { return (hd + 15) / 16 * 16; }

  T* st;   // (T, kQueryBlock): scores, then P (transposed)
  T* qt;   // (hd, kQueryBlock): the block's queries times the scale, transposed
  T* dst;  // (T, kQueryBlock): dP, then dS (backward)
  T* dot;  // (hd, kQueryBlock): the block's output gradients, transposed (backward)
  // (T, padded(hd)): the pair's dK and dV while the blocks add to them (backward). Accumulated
  // here, not in the caller's rows: those share cache lines with the neighbouring heads, which
  // the other threads are writing (two threads ran the backward 1.3x faster than one, not 1.8x).
  T* dk;
  T* dv;

 private:
  static int64_t size(int64_t T_len, int64_t hd, bool backward) {
    const int64_t forward = kQueryBlock * (T_len + hd);
    return backward ? 2 * forward + 2 * T_len * padded(hd) : forward;
  }
  std::unique_ptr<T, decltype(&std::free)> memory_;
};

// dst[c * ldd + r] = factor * src[r * ld + c] for an 8 x 8 block of floats, in 24 shuffles of
// 8-float vectors (GCC's generic vectors: each ISA clone lowers them to its own instructions).
[[gnu::always_inline]] inline void transpose_8x8(float* dst, int64_t ldd, const float* src,
                                                 int64_t ld, float factor) {
  using v8sf = float __attribute__((vector_size(32)));
  using v8si = int32_t __attribute__((vector_size(32)));
  v8sf r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * ld, sizeof(v8sf));
  // Pairs of rows interleaved within 128-bit halves, then pairs of pairs, then the halves.
  constexpr v8si kLo1 = {0, 8, 1, 9, 4, 12, 5, 13}, kHi1 = {2, 10, 3, 11, 6, 14, 7, 15};
  constexpr v8si kLo2 = {0, 1, 8, 9, 4, 5, 12, 13}, kHi2 = {2, 3, 10, 11, 6, 7, 14, 15};
  constexpr v8si kLo4 = {0, 1, 2, 3, 8, 9, 10, 11}, kHi4 = {4, 5, 6, 7, 12, 13, 14, 15};
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], kLo1);
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], kHi1);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = __builtin_shuffle(t[i], t[i + 2], kLo2);
    u[i + 1] = __builtin_shuffle(t[i], t[i + 2], kHi2);
    u[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], kLo2);
    u[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], kHi2);
  }
  for (int c = 0; c < 4; ++c) {
    const v8sf lo = __builtin_shuffle(u[c], u[c + 4], kLo4) * factor;
    const v8sf hi = __builtin_shuffle(u[c], u[c + 4], kHi4) * factor;
    std::memcpy(dst + c * ldd, &lo, sizeof(v8sf));
    std::memcpy(dst + (c + 4) * ldd, &hi, sizeof(v8sf));
  }
}

// dst[d][l] = factor * src[(i0 + l) * ld + d] for l < nb, 0 for the lanes past the block.
template <typename T>
[[gnu::always_inline]] inline void transpose_block(T* dst, const T* src, int64_t ld, int64_t i0,
                                                   int64_t nb, int64_t hd, T factor) {
  const T* first = src + i0 * ld;
  int64_t d0 = 0, l0 = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; d0 + 8 <= hd; d0 += 8) {
      for (l0 = 0; l0 + 8 <= nb; l0 += 8) {
        transpose_8x8(dst + d0 * kQueryBlock + l0, kQueryBlock, first + l0 * ld + d0, ld, factor);
      }
    }
    l0 = nb / 8 * 8;  // rows [l0, nb) of the columns [0, d0) are left
  }
  for (int64_t d = 0; d < hd; ++d) {
    T* out = dst + d * kQueryBlock;
    for (int64_t l = d < d0 ? l0 : 0; l < nb; ++l) out[l] = factor * first[l * ld + d];
    for (int64_t l = nb; l < kQueryBlock; ++l) out[l] = T(0);
  }
}

// Asks for rows [r0, min(r1, T_len)) of one head's (T, hd) slice (row stride ld) in cache a block
// ahead of their first use: each row is a few cache lines a whole (B, T, H, hd) row apart, which
// the hardware prefetchers do not fetch ahead (attention alone on bench-moe's shape, Zen 5: the
// forward ran 7% faster, the backward 3-5%).
template <typename T>
[[gnu::always_inline]] inline void prefetch_rows(const T* x, int64_t ld, int64_t r0, int64_t r1,
                                                 int64_t T_len, int64_t hd) {
  constexpr int64_t kLine = 64 / sizeof(T);
  if (hd == 0) return;
  for (int64_t r = r0; r < std::min(r1, T_len); ++r) {
    for (int64_t c = 0; c < hd; c += kLine) __builtin_prefetch(x + r * ld + c);
    __builtin_prefetch(x + r * ld + hd - 1);  // the last line of a row that starts mid-line
  }
}

// St[j][l] = sum_d K[j][d] * qt[d][l] for keys j < i1: the block's scaled scores, transposed.
template <typename T, typename Shape>
[[gnu::always_inline]] inline void block_scores(T* st, const T* qt, const T* k, int64_t ld_qkv,
                                                int64_t i1, int64_t hd) {
  product<T, Shape>(st, kQueryBlock, false, i1, kQueryBlock, k, ld_qkv, 1, qt, kQueryBlock,
                    [hd](int64_t, int64_t) { return std::pair<int64_t, int64_t>{0, hd}; });
}

// Keys before the block are visible to all its queries; key j >= i0 from lane j - i0 on. The
// lane loops below keep their running values in locals of fixed size (registers), not in the
// caller's arrays.
[[gnu::always_inline]] inline int first_visible_lane(int64_t j, int64_t i0) {
  return static_cast<int>(std::max<int64_t>(0, j - i0));
}

// The `product` range of a tile of the block's query rows [r0, r1): the keys its last query
// sees (the masked ones past them hold P = 0).
[[gnu::always_inline]] inline auto keys_seen(int64_t i0, int64_t i1) {
  return [i0, i1](int64_t, int64_t r1) {
    return std::pair<int64_t, int64_t>{0, std::min(i1, i0 + r1)};
  };
}

// mx[l] = the largest visible St[j][l] over keys j < i1.
template <typename T>
[[gnu::always_inline]] inline void column_max(T* mx, const T* st, int64_t i0, int64_t i1) {
  T m[kQueryBlock];
  for (int l = 0; l < kQueryBlock; ++l) m[l] = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < i0; ++j) {  // every lane (the split keeps masks off this loop)
    const T* row = st + j * kQueryBlock;
#pragma omp simd
    for (int l = 0; l < kQueryBlock; ++l) m[l] = row[l] > m[l] ? row[l] : m[l];
  }
  for (int64_t j = i0; j < i1; ++j) {
    const T* row = st + j * kQueryBlock;
    const int first = first_visible_lane(j, i0);
#pragma omp simd
    for (int l = 0; l < kQueryBlock; ++l) m[l] = l >= first && row[l] > m[l] ? row[l] : m[l];
  }
  std::copy(m, m + kQueryBlock, mx);
}

// St[j][l] = exp(St[j][l] - shift[l]) where visible, else 0, over keys j < i1; sum[l] (when
// not null) = the sum of the lane's exponentials in key order.
template <typename T>
[[gnu::always_inline]] inline void exp_columns(T* sum, T* st, const T* shift, int64_t i0,
                                               int64_t i1) {
  T sh[kQueryBlock], acc[kQueryBlock] = {};
  std::copy(shift, shift + kQueryBlock, sh);
  for (int64_t j = 0; j < i0; ++j) {
    T* row = st + j * kQueryBlock;
#pragma omp simd
    for (int l = 0; l < kQueryBlock; ++l) {
      const T e = exp_of(row[l] - sh[l]);
      row[l] = e;
      acc[l] += e;
    }
  }
  for (int64_t j = i0; j < i1; ++j) {
    T* row = st + j * kQueryBlock;
    const int first = first_visible_lane(j, i0);
#pragma omp simd
    for (int l = 0; l < kQueryBlock; ++l) {
      const T e = l >= first ? exp_of(row[l] - sh[l]) : T(0);
      row[l] = e;
      acc[l] += e;
    }
  }
  if (sum != nullptr) std::copy(acc, acc + kQueryBlock, sum);
}

// dot[l] = sum_{j < i1} a[j][l] * b[j][l], one fma chain per lane in key order.
template <typename T>
[[gnu::always_inline]] inline void column_dot(T* dot, const T* a, const T* b, int64_t i1) {
  T acc[kQueryBlock] = {};
  for (int64_t j = 0; j < i1; ++j) {
    const T* x = a + j * kQueryBlock;
    const T* y = b + j * kQueryBlock;
#pragma omp simd
    for (int l = 0; l < kQueryBlock; ++l) acc[l] = std::fma(x[l], y[l], acc[l]);
  }
  std::copy(acc, acc + kQueryBlock, dot);
}

template <typename T, typename Shape>
[[gnu::always_inline]] inline void forward_pair(T* out, int64_t ld_out, T* lse, const T* q,
                                                const T* k, const T* v, int64_t ld_qkv,
                                                int64_t T_len, int64_t hd, T scale,
                                                BlockBuffers<T>& buf) {
  T* st = buf.st;
  for (int64_t i0 = 0; i0 < T_len; i0 += kQueryBlock) {
    const int64_t nb = std::min(kQueryBlock, T_len - i0), i1 = i0 + nb;
    // The next block's queries, and its keys and values (this block's are the last it reads).
    for (const T* x : {q, k, v}) prefetch_rows(x, ld_qkv, i1, i1 + kQueryBlock, T_len, hd);
    transpose_block(buf.qt, q, ld_qkv, i0, nb, hd, scale);
    block_scores<T, Shape>(st, buf.qt, k, ld_qkv, i1, hd);
    // Causal softmax down each lane: the max, then exp and sum.
    T mx[kQueryBlock], sum[kQueryBlock];
    column_max(mx, st, i0, i1);
    exp_columns(sum, st, mx, i0, i1);
    for (int64_t l = 0; l < nb; ++l) lse[i0 + l] = mx[l] + std::log(sum[l]);
    // O[i0 + l] = (sum_j exp[l][j] V[j]) / sum[l]: query rows, keys up to the tile's last query.
    product<T, Shape>(out + i0 * ld_out, ld_out, false, nb, hd, st, 1, kQueryBlock, v, ld_qkv,
                      keys_seen(i0, i1));
    for (int64_t l = 0; l < nb; ++l) {
      T* o = out + (i0 + l) * ld_out;
      const T inv = T(1) / sum[l];
#pragma omp simd
      for (int64_t c = 0; c < hd; ++c) o[c] *= inv;
    }
  }
}

template <typename T, typename Shape>
[[gnu::always_inline]] inline void backward_pair(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* dvec,
                                                 const T* dO, int64_t ld_out,
                                                 const T* lse, const T* q, const T* k,
                                                 const T* v, int64_t ld_qkv, int64_t T_len,
                                                 int64_t hd, T scale, BlockBuffers<T>& buf) {
  T* st = buf.st;
  T* dst = buf.dst;
  const int64_t ldk = BlockBuffers<T>::padded(hd);
  // Blocks from the last: it sees every key, so it writes all of the pair's dK and dV, and the
  // earlier (narrower) blocks add to their prefix.
  const int64_t last_i0 = (T_len - 1) / kQueryBlock * kQueryBlock;
  for (int64_t i0 = last_i0; i0 >= 0; i0 -= kQueryBlock) {
    const int64_t nb = std::min(kQueryBlock, T_len - i0), i1 = i0 + nb;
    const bool accumulate = i0 != last_i0;
    // The previous block's queries and output gradients (the last block read every key and value).
    if (i0 > 0) {
      prefetch_rows(q, ld_qkv, i0 - kQueryBlock, i0, T_len, hd);
      prefetch_rows(dO, ld_out, i0 - kQueryBlock, i0, T_len, hd);
    }
    // P recomputed exactly as the forward's scores, then exp(S - lse).
    transpose_block(buf.qt, q, ld_qkv, i0, nb, hd, scale);
    transpose_block(buf.dot, dO, ld_out, i0, nb, hd, T(1));
    block_scores<T, Shape>(st, buf.qt, k, ld_qkv, i1, hd);
    T row_lse[kQueryBlock];
    for (int64_t l = 0; l < kQueryBlock; ++l) row_lse[l] = l < nb ? lse[i0 + l] : T(0);
    exp_columns<T>(nullptr, st, row_lse, i0, i1);
    // dP[j][l] = sum_d V[j][d] dO[l][d], then dS = scale * P * (dP - D) in place.
    block_scores<T, Shape>(dst, buf.dot, v, ld_qkv, i1, hd);
    // D[l] = sum_j P[l][j] dP[l][j] down the lanes (the block holds whole score rows, so the
    // softmax backward's dot product needs no rowsum(dO * O)).
    T row_d[kQueryBlock];
    column_dot(row_d, st, dst, i1);
    std::copy(row_d, row_d + nb, dvec + i0);
    for (int64_t j = 0; j < i1; ++j) {
      const T* p = st + j * kQueryBlock;
      T* ds = dst + j * kQueryBlock;
#pragma omp simd
      for (int64_t l = 0; l < kQueryBlock; ++l) ds[l] = scale * (p[l] * (ds[l] - row_d[l]));
    }
    // dV[j] += sum_l P[l][j] dO[l], dK[j] += sum_l dS[l][j] Q[l]: key rows, the block's queries
    // from the tile's first key on.
    auto from_key = [i0, nb](int64_t r0, int64_t) {
      return std::pair<int64_t, int64_t>{std::max<int64_t>(0, r0 - i0), nb};
    };
    product<T, Shape>(buf.dv, ldk, accumulate, i1, hd, st, kQueryBlock, 1, dO + i0 * ld_out,
                      ld_out, from_key);
    product<T, Shape>(buf.dk, ldk, accumulate, i1, hd, dst, kQueryBlock, 1, q + i0 * ld_qkv,
                      ld_qkv, from_key);
    // dQ[i0 + l] = sum_j dS[l][j] K[j] (the scale is in dS).
    product<T, Shape>(dq + i0 * ld_dqkv, ld_dqkv, false, nb, hd, dst, 1, kQueryBlock, k, ld_qkv,
                      keys_seen(i0, i1));
  }
  for (int64_t t = 0; t < T_len; ++t) {
    std::copy(buf.dk + t * ldk, buf.dk + t * ldk + hd, dk + t * ld_dqkv);
    std::copy(buf.dv + t * ldk, buf.dv + t * ldk + hd, dv + t * ld_dqkv);
  }
}

using WideTiles = Tiles<8, 32>;    // AVX-512: 16 zmm accumulators
using NarrowTiles = Tiles<6, 16>;  // AVX2 and below: 12 ymm accumulators

// Per-pair entry points: GCC compiles each for every ISA of TESSERA_CPU_CLONES, with the tile
// code inlined (the templates above are always_inline, so they take the clone's ISA). Double
// keeps the narrow tiles: its wide ones would not fit the registers.
#define TESSERA_ATTENTION_PAIR_CLONES(T)                                                         \
  TESSERA_CPU_CLONES void forward_pair_cloned(bool wide, T* out, int64_t ld_out, T* lse,         \
                                              const T* q, const T* k, const T* v,                \
                                              int64_t ld_qkv, int64_t T_len, int64_t hd, T scale, \
                                              BlockBuffers<T>& buf) {                            \
    if (std::is_same_v<T, float> && wide) {                                                      \
      forward_pair<T, WideTiles>(out, ld_out, lse, q, k, v, ld_qkv, T_len, hd, scale, buf);      \
    } else {                                                                                     \
      forward_pair<T, NarrowTiles>(out, ld_out, lse, q, k, v, ld_qkv, T_len, hd, scale, buf);    \
    }                                                                                            \
  }                                                                                              \
  TESSERA_CPU_CLONES void backward_pair_cloned(                                                  \
      bool wide, T* dq, T* dk, T* dv, int64_t ld_dqkv, T* dvec, const T* dO,                     \
      int64_t ld_out, const T* lse, const T* q, const T* k, const T* v, int64_t ld_qkv,          \
      int64_t T_len, int64_t hd, T scale, BlockBuffers<T>& buf) {                                \
    if (std::is_same_v<T, float> && wide) {                                                      \
      backward_pair<T, WideTiles>(dq, dk, dv, ld_dqkv, dvec, dO, ld_out, lse, q, k, v,        \
                                  ld_qkv, T_len, hd, scale, buf);                                \
    } else {                                                                                     \
      backward_pair<T, NarrowTiles>(dq, dk, dv, ld_dqkv, dvec, dO, ld_out, lse, q, k, v,      \
                                    ld_qkv, T_len, hd, scale, buf);                              \
    }                                                                                            \
  }
TESSERA_ATTENTION_PAIR_CLONES(float)
TESSERA_ATTENTION_PAIR_CLONES(double)
#undef TESSERA_ATTENTION_PAIR_CLONES

// The 512-bit tiles only where the CPU has AVX-512 (they would spill on 16 registers); the
// choice changes no bit.
bool wide_tiles() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

// Runs pair(i, buffers) for every (batch, head) pair, spread over the threads, each thread with
// its own block buffers.
template <typename T, typename Pair>
void for_each_pair(int64_t pairs, int64_t T_len, int64_t hd, bool backward, Pair pair) {
  if (pairs == 0 || T_len == 0) return;
  const bool parallel = pairs > 1 && cpu_threads() > 1;
#pragma omp parallel if (parallel)
  {
    BlockBuffers<T> buf(T_len, hd, backward);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < pairs; ++i) pair(i, buf);
  }
}

}  // namespace

template <typename T>
void attention_forward(T* out, int64_t ld_out, T* lse, const T* q, const T* k, const T* v,
                       int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  check_strides("attention_forward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const bool wide = wide_tiles();
  for_each_pair<T>(B * H, T_len, hd, false, [&](int64_t i, BlockBuffers<T>& buf) {
    const int64_t b = i / H, h = i % H;
    const int64_t base = b * T_len * ld_qkv + h * hd;
    T* o = out + b * T_len * ld_out + h * hd;
    forward_pair_cloned(wide, o, ld_out, lse + i * T_len, q + base, k + base, v + base, ld_qkv,
                        T_len, hd, scale, buf);
  });
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                        int64_t ld_out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H,
                        int64_t hd) {
  check_strides("attention_backward", H, hd, ld_dqkv, "ld_dqkv", ld_qkv, "ld_qkv");
  check_strides("attention_backward", H, hd, ld_out, "ld_out", ld_qkv, "ld_qkv");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const bool wide = wide_tiles();
  for_each_pair<T>(B * H, T_len, hd, true, [&](int64_t i, BlockBuffers<T>& buf) {
    const int64_t b = i / H, h = i % H;
    const int64_t base = b * T_len * ld_qkv + h * hd;
    const int64_t dbase = b * T_len * ld_dqkv + h * hd;
    const int64_t obase = b * T_len * ld_out + h * hd;
    backward_pair_cloned(wide, dq + dbase, dk + dbase, dv + dbase, ld_dqkv, scratch + i * T_len,
                         dout + obase, ld_out, lse + i * T_len, q + base, k + base,
                         v + base, ld_qkv, T_len, hd, scale, buf);
  });
}

#define TESSERA_INSTANTIATE(T)                                                                  \
  template void attention_forward<T>(T*, int64_t, T*, const T*, const T*, const T*, int64_t,   \
                                     int64_t, int64_t, int64_t, int64_t);                      \
  template void attention_backward<T>(T*, T*, T*, int64_t, T*, const T*, int64_t,              \
                                      const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                      int64_t, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
