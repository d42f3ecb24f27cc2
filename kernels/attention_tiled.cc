// Register-tiled causal attention of one (batch, head) pair. Every product is one tile routine:
// a tile of kRows rows x (kVecs vectors of W floats) stays in registers while k runs, its left
// operand read as scalars (broadcast) through two strides, so the same routine computes
//   S = scale Q K^T  and  dP = dO V^T    (right operand packed transposed: K^T, V^T)
//   O = P V          and  dQ = dS K      (right operand packed with padded rows)
//   dV = P^T dO      and  dK = dS^T Q    (left operand read down P's / dS's columns)
// Causality bounds every loop: rows [i0, i0 + R) need columns [0, i0 + R) only, and column
// block j0 gathers rows [j0, T) only; above the diagonal P and dS hold zeros. The forward keeps
// a block's S rows in a small buffer and saves only each row's log-sum-exp; the backward
// rebuilds P = exp(S - lse) row block by row block into the pair's scratch. Each output element
// is one chain of multiply-adds in order of k, so results do not depend on the thread count
// (pairs run whole on one thread). W is the vector width: float's is compiled for each ISA level
// (x86-64-v4 / v3, plain otherwise) and chosen once at run time; double runs the plain one.
#include "kernels/attention_tiled.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu_simd.h"

namespace tessera::kernels::detail {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TESSERA_ATTENTION_ISA_LEVELS 1
#endif
#define TESSERA_INLINE inline __attribute__((always_inline))

constexpr int kRows = 4;  // rows per tile: 4 x 2 accumulators hide the fma latency
constexpr int kVecs = 2;  // vectors per tile row

template <typename E, int W>
struct Lanes {
  typedef E Vec __attribute__((vector_size(W * sizeof(E))));
};

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// c[r][0, n) = alpha * sum_{k < K} a(r, k) * b[k][0, n) for r < R, a(r, k) = a[r a_rs + k a_ks],
// plus c's old value when accumulate; b's rows are ldb apart and each holds kVecs * W readable
// elements (zero padding past n).
template <typename E, int W, int R>
TESSERA_INLINE void tile(E* c, int64_t ldc, int64_t n, const E* a, int64_t a_rs, int64_t a_ks,
                         const E* b, int64_t ldb, int64_t K, E alpha, bool accumulate = false) {
  using Vec = typename Lanes<E, W>::Vec;
  constexpr int kCols = kVecs * W;
  Vec acc[R][kVecs];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < kVecs; ++j) acc[r][j] = Vec{};
  }
  for (int64_t k = 0; k < K; ++k) {
    Vec bv[kVecs];
#pragma GCC unroll 8
    for (int j = 0; j < kVecs; ++j) std::memcpy(&bv[j], b + k * ldb + j * W, sizeof(Vec));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const E s = a[r * a_rs + k * a_ks];
#pragma GCC unroll 8
      for (int j = 0; j < kVecs; ++j) acc[r][j] += s * bv[j];
    }
  }
  if (n == kCols) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int j = 0; j < kVecs; ++j) {
        Vec out = acc[r][j] * alpha;
        if (accumulate) {
          Vec old;
          std::memcpy(&old, c + r * ldc + j * W, sizeof(Vec));
          out += old;
        }
        std::memcpy(c + r * ldc + j * W, &out, sizeof(Vec));
      }
    }
    return;
  }
  for (int r = 0; r < R; ++r) {  // a partial tile: the last columns of a row
    E row[kCols];
    for (int j = 0; j < kVecs; ++j) {
      const Vec scaled = acc[r][j] * alpha;
      std::memcpy(row + j * W, &scaled, sizeof(Vec));
    }
    for (int64_t x = 0; x < n; ++x) c[r * ldc + x] = accumulate ? c[r * ldc + x] + row[x] : row[x];
  }
}

// dst (rows, ld_dst) = src's rows, zero-padded from cols to ld_dst.
template <typename E>
void pack_rows(E* dst, int64_t ld_dst, const E* src, int64_t ld_src, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * ld_dst, src + r * ld_src, cols * sizeof(E));
    std::fill(dst + r * ld_dst + cols, dst + (r + 1) * ld_dst, E(0));
  }
}

// dst (cols, ld_dst) = src^T, zero-padded from rows to ld_dst. Reads src row by row: its rows
// are far apart (q|k|v interleaved), while dst's cols rows being written stay in L1.
template <typename E>
void pack_transposed(E* dst, int64_t ld_dst, const E* src, int64_t ld_src, int64_t rows,
                     int64_t cols) {
  for (int64_t j = 0; j < rows; ++j) {
    const E* in = src + j * ld_src;
    for (int64_t d = 0; d < cols; ++d) dst[d * ld_dst + j] = in[d];
  }
  for (int64_t d = 0; d < cols; ++d) {
    std::fill(dst + d * ld_dst + rows, dst + (d + 1) * ld_dst, E(0));
  }
}

// ---- Row math. float: exp_f32 over whole vectors, sums in kLanes partial sums; lanes past
// n_valid up to the next whole vector (where the row has them) are set to -inf first, whose
// exponential is 0, so a row's tail runs in the vector loop (a scalar tail cost more than the
// rest of the row). double: plain loops (gradient checks).

// exp(p[j] - shift) for j < n_valid, in place; returns their sum. p has room up to n_total.
TESSERA_CPU_CLONES float exp_shifted_row_f32(float* p, float shift, int64_t n_valid,
                                             int64_t n_total) {
  const int64_t padded = std::min(round_up(n_valid, cpu::kLanes), n_total);
  std::fill(p + n_valid, p + padded, -std::numeric_limits<float>::infinity());
  float part[cpu::kLanes] = {};
  const int64_t full = padded / cpu::kLanes * cpu::kLanes;
  for (int64_t j0 = 0; j0 < full; j0 += cpu::kLanes) {
#pragma omp simd
    for (int l = 0; l < cpu::kLanes; ++l) {
      const float e = cpu::exp_f32(p[j0 + l] - shift);
      p[j0 + l] = e;
      part[l] += e;
    }
  }
  for (int64_t j = full; j < padded; ++j) {
    const float e = cpu::exp_f32(p[j] - shift);
    p[j] = e;
    part[j - full] += e;
  }
  float sum = 0;
  for (int l = 0; l < cpu::kLanes; ++l) sum += part[l];
  return sum;
}

// Causal softmax of a row of scores in place (zeros from n_valid to n_total); returns the log
// of its normaliser, max + log(sum exp(s - max)).
TESSERA_CPU_CLONES float softmax_row(float* p, int64_t n_valid, int64_t n_total) {
  float mx = p[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n_valid; ++j) mx = p[j] > mx ? p[j] : mx;
  const float sum = exp_shifted_row_f32(p, mx, n_valid, n_total);
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n_valid; ++j) p[j] *= inv;
  std::fill(p + n_valid, p + n_total, 0.0f);
  return mx + std::log(sum);
}

double softmax_row(double* p, int64_t n_valid, int64_t n_total) {
  double mx = p[0];
  for (int64_t j = 0; j < n_valid; ++j) mx = std::max(mx, p[j]);
  double sum = 0;
  for (int64_t j = 0; j < n_valid; ++j) sum += (p[j] = std::exp(p[j] - mx));
  for (int64_t j = 0; j < n_valid; ++j) p[j] /= sum;
  std::fill(p + n_valid, p + n_total, 0.0);
  return mx + std::log(sum);
}

// A row of scores to the probabilities the forward had: exp(s - lse), zeros to n_total.
TESSERA_CPU_CLONES void probabilities_row(float* p, float lse, int64_t n_valid, int64_t n_total) {
  exp_shifted_row_f32(p, lse, n_valid, n_total);
  std::fill(p + n_valid, p + n_total, 0.0f);
}

void probabilities_row(double* p, double lse, int64_t n_valid, int64_t n_total) {
  for (int64_t j = 0; j < n_valid; ++j) p[j] = std::exp(p[j] - lse);
  std::fill(p + n_valid, p + n_total, 0.0);
}

// dS = scale * p * (dP - D) over n_valid, zeros to n_total, in place of dP.
TESSERA_CPU_CLONES void scaled_softmax_grad_row(float* ds, const float* p, float D, int64_t n_valid,
                                                int64_t n_total, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n_valid; ++j) ds[j] = scale * p[j] * (ds[j] - D);
  std::fill(ds + n_valid, ds + n_total, 0.0f);
}

void scaled_softmax_grad_row(double* ds, const double* p, double D, int64_t n_valid,
                             int64_t n_total, double scale) {
  for (int64_t j = 0; j < n_valid; ++j) ds[j] = scale * p[j] * (ds[j] - D);
  std::fill(ds + n_valid, ds + n_total, 0.0);
}

// ---- One pair.

template <typename E>
struct PairArgs {
  int64_t T, hd, ld_qkv;
  int64_t Tp, hdp;  // T and hd padded to whole tiles (Tp one tile more: see pair_args)
  E scale;
};

template <typename E, int W>
constexpr int64_t tile_cols() {
  return kVecs * W;
}

// Forward rows [i0, i0 + R): S into the block buffer Sb (R x Tp), softmax rows (lse saved), O.
template <typename E, int W, int R>
TESSERA_INLINE void forward_rows(int64_t i0, const PairArgs<E>& a, E* out, int64_t ld_out, E* lse,
                                 const E* q, const E* kt, const E* vp, E* Sb) {
  constexpr int64_t kCols = tile_cols<E, W>();
  const int64_t cols = i0 + R;
  for (int64_t j0 = 0; j0 < cols; j0 += kCols) {
    tile<E, W, R>(Sb + j0, a.Tp, kCols, q + i0 * a.ld_qkv, a.ld_qkv, 1, kt + j0, a.Tp, a.hd,
                  a.scale);
  }
  for (int64_t r = 0; r < R; ++r) lse[i0 + r] = softmax_row(Sb + r * a.Tp, i0 + r + 1, cols);
  for (int64_t d0 = 0; d0 < a.hd; d0 += kCols) {
    tile<E, W, R>(out + i0 * ld_out + d0, ld_out, std::min(kCols, a.hd - d0), Sb, a.Tp, 1, vp + d0,
                  a.hdp, cols, E(1));
  }
}

template <typename E, int W>
TESSERA_INLINE void forward_pair(E* out, int64_t ld_out, E* lse, const E* q, const E* kt,
                                 const E* vp, E* Sb, const PairArgs<E>& a) {
  int64_t i0 = 0;
  for (; i0 + kRows <= a.T; i0 += kRows) {
    forward_rows<E, W, kRows>(i0, a, out, ld_out, lse, q, kt, vp, Sb);
  }
  for (; i0 < a.T; ++i0) forward_rows<E, W, 1>(i0, a, out, ld_out, lse, q, kt, vp, Sb);
}

// ---- Backward, blocked as FlashAttention-2's: for each block of kBlock keys, the query blocks
// at and below the diagonal; per (query block, key block) P = exp(S - lse) and
// dS = scale P (dP - D) live in kBlock x kBlock buffers (in L1), D_i = <dO_i, O_i>. dV and dK
// rows of the key block gather over the query blocks, dQ rows over the key blocks (each output
// element: its blocks in ascending order, one multiply-add chain within a block).
constexpr int64_t kBlock = 64;

// The backward's packed operands and per-block buffers.
template <typename E>
struct BackwardPacks {
  const E *kt, *vt, *kp, *qp, *dop;
  const E* D;   // (T): <dO_i, O_i>
  E *Pb, *dSb;  // (kBlock, kBlock) each
};

// Rows [i0, i0 + R) of the block (query block starting at qb, key block [kb, kb + nk)): P and dS
// rows, then their dQ contribution.
template <typename E, int W, int R>
TESSERA_INLINE void backward_block_rows(int64_t i0, int64_t qb, int64_t kb, int64_t nk,
                                        const PairArgs<E>& a, E* dq, int64_t ld_d, const E* dO,
                                        int64_t ld_out, const E* lse, const E* q,
                                        const BackwardPacks<E>& p) {
  constexpr int64_t kCols = tile_cols<E, W>();
  const int64_t cols = std::min(nk, i0 + R - kb);  // key columns [kb, kb + cols) are causal
  E* Pr = p.Pb + (i0 - qb) * kBlock;
  E* dSr = p.dSb + (i0 - qb) * kBlock;
  for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
    tile<E, W, R>(Pr + c0, kBlock, kCols, q + i0 * a.ld_qkv, a.ld_qkv, 1, p.kt + kb + c0, a.Tp,
                  a.hd, a.scale);
    tile<E, W, R>(dSr + c0, kBlock, kCols, dO + i0 * ld_out, ld_out, 1, p.vt + kb + c0, a.Tp, a.hd,
                  E(1));
  }
  for (int64_t r = 0; r < R; ++r) {
    const int64_t i = i0 + r, valid = std::min(nk, i + 1 - kb);
    probabilities_row(Pr + r * kBlock, lse[i], valid, nk);
    scaled_softmax_grad_row(dSr + r * kBlock, Pr + r * kBlock, p.D[i], valid, nk, a.scale);
  }
  for (int64_t d0 = 0; d0 < a.hd; d0 += kCols) {
    tile<E, W, R>(dq + i0 * ld_d + d0, ld_d, std::min(kCols, a.hd - d0), dSr, kBlock, 1,
                  p.kp + kb * a.hdp + d0, a.hdp, cols, E(1), /*accumulate=*/kb > 0);
  }
}

// Key rows [j0, j0 + R) of the key block: their dV and dK contribution from query rows
// [qb, qb + nq).
template <typename E, int W, int R>
TESSERA_INLINE void backward_block_keys(int64_t j0, int64_t qb, int64_t nq, int64_t kb,
                                        const PairArgs<E>& a, E* dk, E* dv, int64_t ld_d,
                                        const BackwardPacks<E>& p) {
  constexpr int64_t kCols = tile_cols<E, W>();
  const bool accumulate = qb > kb;  // the diagonal block is each key row's first
  // In the diagonal block, query rows before j0 see none of these keys: start at j0.
  const int64_t i_first = qb == kb ? j0 - qb : 0;
  const E* P = p.Pb + i_first * kBlock + (j0 - kb);
  const E* dS = p.dSb + i_first * kBlock + (j0 - kb);
  for (int64_t d0 = 0; d0 < a.hd; d0 += kCols) {
    const int64_t n = std::min(kCols, a.hd - d0);
    tile<E, W, R>(dv + j0 * ld_d + d0, ld_d, n, P, 1, kBlock, p.dop + (qb + i_first) * a.hdp + d0,
                  a.hdp, nq - i_first, E(1), accumulate);
    tile<E, W, R>(dk + j0 * ld_d + d0, ld_d, n, dS, 1, kBlock, p.qp + (qb + i_first) * a.hdp + d0,
                  a.hdp, nq - i_first, E(1), accumulate);
  }
}

template <typename E, int W>
TESSERA_INLINE void backward_pair(E* dq, E* dk, E* dv, int64_t ld_d, const E* dO, int64_t ld_out,
                                  const E* lse, const E* q, const BackwardPacks<E>& p,
                                  const PairArgs<E>& a) {
  const int64_t T = a.T;
  for (int64_t kb = 0; kb < T; kb += kBlock) {
    const int64_t nk = std::min(kBlock, T - kb);
    for (int64_t qb = kb; qb < T; qb += kBlock) {
      const int64_t nq = std::min(kBlock, T - qb);
      int64_t i0 = qb;
      for (; i0 + kRows <= qb + nq; i0 += kRows) {
        backward_block_rows<E, W, kRows>(i0, qb, kb, nk, a, dq, ld_d, dO, ld_out, lse, q, p);
      }
      for (; i0 < qb + nq; ++i0) {
        backward_block_rows<E, W, 1>(i0, qb, kb, nk, a, dq, ld_d, dO, ld_out, lse, q, p);
      }
      int64_t j0 = kb;
      for (; j0 + kRows <= kb + nk; j0 += kRows) {
        backward_block_keys<E, W, kRows>(j0, qb, nq, kb, a, dk, dv, ld_d, p);
      }
      for (; j0 < kb + nk; ++j0) backward_block_keys<E, W, 1>(j0, qb, nq, kb, a, dk, dv, ld_d, p);
    }
  }
}

// ---- Entry points per vector width; float's per ISA level.
#define TESSERA_ATTENTION_WIDTH(suffix, E, W)                                                 \
  void forward_##suffix(E* out, int64_t ld_out, E* lse, const E* q, const E* kt, const E* vp, \
                        E* Sb, const PairArgs<E>& a) {                                        \
    forward_pair<E, W>(out, ld_out, lse, q, kt, vp, Sb, a);                                   \
  }                                                                                           \
  void backward_##suffix(E* dq, E* dk, E* dv, int64_t ld_d, const E* dO, int64_t ld_out,      \
                         const E* lse, const E* q, const BackwardPacks<E>& p,                 \
                         const PairArgs<E>& a) {                                              \
    backward_pair<E, W>(dq, dk, dv, ld_d, dO, ld_out, lse, q, p, a);                          \
  }

#ifdef TESSERA_ATTENTION_ISA_LEVELS
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
TESSERA_ATTENTION_WIDTH(f32_v4, float, 16)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
TESSERA_ATTENTION_WIDTH(f32_v3, float, 8)
#pragma GCC pop_options
#endif
TESSERA_ATTENTION_WIDTH(f32_plain, float, 4)
TESSERA_ATTENTION_WIDTH(f64, double, 2)
#undef TESSERA_ATTENTION_WIDTH

// The widest float ISA level this CPU runs, found once.
enum class Level { kV4, kV3, kPlain };

Level float_level() {
  static const Level chosen = [] {
#ifdef TESSERA_ATTENTION_ISA_LEVELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
      return Level::kV4;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Level::kV3;
#endif
    return Level::kPlain;
  }();
  return chosen;
}

template <typename E>
int lanes() {
  if constexpr (std::is_same_v<E, float>) {
    const Level l = float_level();
    return l == Level::kV4 ? 16 : l == Level::kV3 ? 8 : 4;
  } else {
    return 2;
  }
}

// Tp is one tile wider than T rounded up: a row stride of a multiple of 1 KiB (T = 256) made
// the packed rows and the block's output rows alias in the cache.
template <typename E>
PairArgs<E> pair_args(int64_t T, int64_t hd, int64_t ld_qkv, E scale) {
  const int64_t cols = kVecs * lanes<E>();
  return PairArgs<E>{T, hd, ld_qkv, round_up(T, cols) + cols, round_up(hd, cols), scale};
}

// This thread's working buffer for E, at least n elements (grown, never shrunk).
template <typename E>
E* working_buffer(int64_t n) {
  thread_local std::vector<E> buffer;
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(n);
  return buffer.data();
}

}  // namespace

template <typename E>
void attention_forward_pair(E* out, int64_t ld_out, E* lse, const E* q, const E* k, const E* v,
                            int64_t ld_qkv, int64_t T, int64_t hd, E scale) {
  const PairArgs<E> a = pair_args(T, hd, ld_qkv, scale);
  E* kt = working_buffer<E>(a.hd * a.Tp + a.T * a.hdp + kRows * a.Tp);
  E* vp = kt + a.hd * a.Tp;
  E* Sb = vp + a.T * a.hdp;
  pack_transposed(kt, a.Tp, k, ld_qkv, T, hd);
  pack_rows(vp, a.hdp, v, ld_qkv, T, hd);
  if constexpr (std::is_same_v<E, float>) {
    switch (float_level()) {
#ifdef TESSERA_ATTENTION_ISA_LEVELS
      case Level::kV4:
        return forward_f32_v4(out, ld_out, lse, q, kt, vp, Sb, a);
      case Level::kV3:
        return forward_f32_v3(out, ld_out, lse, q, kt, vp, Sb, a);
#endif
      default:
        return forward_f32_plain(out, ld_out, lse, q, kt, vp, Sb, a);
    }
  } else {
    forward_f64(out, ld_out, lse, q, kt, vp, Sb, a);
  }
}

template <typename E>
void attention_backward_pair(E* dq, E* dk, E* dv, int64_t ld_dqkv, E* scratch, const E* dout,
                             const E* out, int64_t ld_out, const E* lse, const E* q, const E* k,
                             const E* v, int64_t ld_qkv, int64_t T, int64_t hd, E scale) {
  const PairArgs<E> a = pair_args(T, hd, ld_qkv, scale);
  E* kt = working_buffer<E>(2 * a.hd * a.Tp + 3 * a.T * a.hdp);
  E* vt = kt + a.hd * a.Tp;
  E* kp = vt + a.hd * a.Tp;
  E* qp = kp + a.T * a.hdp;
  E* dop = qp + a.T * a.hdp;
  pack_transposed(kt, a.Tp, k, ld_qkv, T, hd);
  pack_transposed(vt, a.Tp, v, ld_qkv, T, hd);
  pack_rows(kp, a.hdp, k, ld_qkv, T, hd);
  pack_rows(qp, a.hdp, q, ld_qkv, T, hd);
  pack_rows(dop, a.hdp, dout, ld_out, T, hd);
  E* D = scratch + 2 * kBlock * kBlock;
  for (int64_t i = 0; i < T; ++i) {
    E dot = 0;
    for (int64_t d = 0; d < hd; ++d) dot += dout[i * ld_out + d] * out[i * ld_out + d];
    D[i] = dot;
  }
  const BackwardPacks<E> p{kt, vt, kp, qp, dop, D, scratch, scratch + kBlock * kBlock};
  if constexpr (std::is_same_v<E, float>) {
    switch (float_level()) {
#ifdef TESSERA_ATTENTION_ISA_LEVELS
      case Level::kV4:
        return backward_f32_v4(dq, dk, dv, ld_dqkv, dout, ld_out, lse, q, p, a);
      case Level::kV3:
        return backward_f32_v3(dq, dk, dv, ld_dqkv, dout, ld_out, lse, q, p, a);
#endif
      default:
        return backward_f32_plain(dq, dk, dv, ld_dqkv, dout, ld_out, lse, q, p, a);
    }
  } else {
    backward_f64(dq, dk, dv, ld_dqkv, dout, ld_out, lse, q, p, a);
  }
}

int64_t attention_pair_scratch_elements(int64_t T) { return 2 * kBlock * kBlock + T; }

template void attention_forward_pair<float>(float*, int64_t, float*, const float*, const float*,
                                            const float*, int64_t, int64_t, int64_t, float);
template void attention_forward_pair<double>(double*, int64_t, double*, const double*,
                                             const double*, const double*, int64_t, int64_t,
                                             int64_t, double);
template void attention_backward_pair<float>(float*, float*, float*, int64_t, float*, const float*,
                                             const float*, int64_t, const float*, const float*,
                                             const float*, const float*, int64_t, int64_t, int64_t,
                                             float);
template void attention_backward_pair<double>(double*, double*, double*, int64_t, double*,
                                              const double*, const double*, int64_t, const double*,
                                              const double*, const double*, const double*, int64_t,
                                              int64_t, int64_t, double);

}  // namespace tessera::kernels::detail
