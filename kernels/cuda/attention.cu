// Tiled causal attention with an online softmax (see attention.h for the contract).
//
// Work split: a block owns one (b, h) and one tile of kTile rows (queries or keys). Its tiles
// of q, k, v, o and gradients live in dynamic shared memory with rows padded to hd + 1
// elements, so the threads of a warp reading the same column of consecutive rows hit distinct
// banks. Each step is a plain loop of the block's threads over the elements of a small
// tile-by-tile product; every output element is summed by one thread in a fixed order.
//
//   forward       grid (B*H, query tiles): for each key tile left of or on the diagonal,
//                 S = scale Q K^T, online softmax update of (m, l), O = alpha O + P V.
//   backward (1)  D = rowsum(dO * O), a thread per row.
//   backward (2)  grid (B*H, key tiles): for each query tile at or below the diagonal,
//                 P = exp(S - lse), dV += P^T dO, dS = scale P (dO V^T - D), dK += dS^T Q.
//   backward (3)  grid (B*H, query tiles): for each key tile left of or on the diagonal,
//                 dQ += dS K (P and dS recomputed: the price of no atomics).
#include "kernels/cuda/attention.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/scalar.h"

namespace tessera::kernels::cuda {

namespace {

// Rows per tile (queries and keys alike): 32 in fp32, 16 in fp64, so the largest kernel (dk/dv,
// six hd-wide tiles) stays near 200 KiB of shared memory at hd = 256 for both.
template <typename T> struct AttentionTile;
template <> struct AttentionTile<float> { static constexpr int kRows = 32; };
template <> struct AttentionTile<double> { static constexpr int kRows = 16; };

constexpr int kAttentionThreads = 128;

__device__ __forceinline__ float neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double neg_inf(double) {
  return __longlong_as_double(static_cast<long long>(0xfff0000000000000ULL));
}

// The block's dynamic shared memory as an array of T (16-byte aligned, enough for double).
template <typename T>
__device__ __forceinline__ T* shared_as() {
  extern __shared__ __align__(16) unsigned char attention_smem[];
  return reinterpret_cast<T*>(attention_smem);
}

// dst[i][0..hd) = src row (r0 + i) for i < rows, zeros for i in [rows, kTile): padded rows
// then contribute nothing to the products. dst rows have stride ldh.
template <typename T, int kTile>
__device__ void load_tile(T* dst, int ldh, const T* src, int64_t ld, int64_t r0, int rows,
                          int hd) {
  for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
    const int i = idx / hd, d = idx % hd;
    dst[i * ldh + d] = i < rows ? src[(r0 + i) * ld + d] : T(0);
  }
}

template <typename T>
__device__ __forceinline__ T dot_rows(const T* a, const T* b, int hd) {
  T s = 0;
  for (int d = 0; d < hd; ++d) s += a[d] * b[d];
  return s;
}

// ---- Forward.
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_forward_kernel(T* out, int64_t ld_out, T* lse, const T* q, const T* k, const T* v,
                             int64_t ld_qkv, int64_t T_len, int64_t H, int hd, T scale) {
  constexpr int kTile = AttentionTile<T>::kRows;
  const int ldh = hd + 1;
  T* Qs = shared_as<T>();           // (kTile, ldh)
  T* KVs = Qs + kTile * ldh;        // (kTile, ldh): the K tile, then the V tile
  T* Os = KVs + kTile * ldh;        // (kTile, ldh): unnormalised output
  T* Ps = Os + kTile * ldh;         // (kTile, kTile): scores, then probabilities
  T* row_max = Ps + kTile * kTile;  // (kTile) running max m
  T* row_sum = row_max + kTile;     // (kTile) running sum l of exp(s - m)
  T* rescale = row_sum + kTile;     // (kTile) exp(m_old - m_new) of the current key tile

  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H;
  // The last query tiles see the most keys: schedule them first.
  const int64_t r0 = (static_cast<int64_t>(gridDim.y) - 1 - blockIdx.y) * kTile;
  const int rows = static_cast<int>(T_len - r0 < kTile ? T_len - r0 : kTile);
  const int64_t head = b * T_len * ld_qkv + h * hd;

  load_tile<T, kTile>(Qs, ldh, q + head, ld_qkv, r0, rows, hd);
  for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
    Os[(idx / hd) * ldh + idx % hd] = T(0);
  }
  for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
    row_max[i] = neg_inf(T());
    row_sum[i] = T(0);
  }

  // Key tiles right of the diagonal are fully masked and never visited.
  const int64_t last_row = r0 + rows - 1;
  for (int64_t c0 = 0; c0 <= last_row; c0 += kTile) {
    const int cols = static_cast<int>(T_len - c0 < kTile ? T_len - c0 : kTile);
    __syncthreads();  // the previous tile's P V has finished with KVs and Ps
    load_tile<T, kTile>(KVs, ldh, k + head, ld_qkv, c0, cols, hd);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += blockDim.x) {
      const int i = idx / kTile, j = idx % kTile;
      const bool visible = i < rows && j < cols && c0 + j <= r0 + i;
      Ps[idx] = visible ? scale * dot_rows(Qs + i * ldh, KVs + j * ldh, hd) : neg_inf(T());
    }
    __syncthreads();
    // Online softmax, a thread per row, while the others load V over K.
    for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
      T* p = Ps + i * kTile;
      if (i >= rows) {  // padding row: no contribution
        for (int j = 0; j < kTile; ++j) p[j] = T(0);
        rescale[i] = T(1);
        continue;
      }
      // Finite: column 0 is visible to every row in the first key tile.
      T m = row_max[i];
      for (int j = 0; j < cols; ++j) m = math::hd_max(m, p[j]);
      T l = T(0);
      for (int j = 0; j < kTile; ++j) {
        const T e = p[j] == neg_inf(T()) ? T(0) : math::hd_exp(p[j] - m);
        p[j] = e;
        l += e;
      }
      const T alpha = math::hd_exp(row_max[i] - m);  // 0 on the first tile (m_old = -inf)
      rescale[i] = alpha;
      row_sum[i] = row_sum[i] * alpha + l;
      row_max[i] = m;
    }
    load_tile<T, kTile>(KVs, ldh, v + head, ld_qkv, c0, cols, hd);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
      const int i = idx / hd, d = idx % hd;
      T acc = Os[i * ldh + d] * rescale[i];
      for (int j = 0; j < cols; ++j) acc += Ps[i * kTile + j] * KVs[j * ldh + d];
      Os[i * ldh + d] = acc;
    }
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < rows * hd; idx += blockDim.x) {
    const int i = idx / hd, d = idx % hd;
    out[(b * T_len + r0 + i) * ld_out + h * hd + d] = Os[i * ldh + d] / row_sum[i];
  }
  for (int i = threadIdx.x; i < rows; i += blockDim.x) {
    lse[bh * T_len + r0 + i] = row_max[i] + math::hd_log(row_sum[i]);
  }
}

// ---- Backward (1): D[b, h, t] = <dO row, O row>.
template <typename T>
__global__ void attention_rowdot_kernel(T* D, const T* dout, const T* out, int64_t ld_out,
                                        int64_t T_len, int64_t H, int hd, int64_t n_rows) {
  const int64_t r = detail::thread_index();
  if (r >= n_rows) return;
  const int64_t bh = r / T_len, t = r % T_len, b = bh / H, h = bh % H;
  const int64_t o = (b * T_len + t) * ld_out + h * hd;
  D[r] = dot_rows(dout + o, out + o, hd);
}

// Loads rows [r0, r0 + rows) of a per-(b, h) row vector, zeros beyond.
template <typename T, int kTile>
__device__ void load_row_values(T* dst, const T* src, int64_t r0, int rows) {
  for (int i = threadIdx.x; i < kTile; i += blockDim.x) dst[i] = i < rows ? src[r0 + i] : T(0);
}

// P_ij and dS_ij = scale P_ij (dO_i . V_j - D_i) of query i and key j; both 0 when masked.
template <typename T>
__device__ __forceinline__ void probability_and_grad(T* p_out, T* ds_out, const T* Qi,
                                                     const T* dOi, const T* Kj, const T* Vj,
                                                     T lse_i, T D_i, int hd, T scale) {
  const T p = math::hd_exp(scale * dot_rows(Qi, Kj, hd) - lse_i);
  *p_out = p;
  *ds_out = scale * p * (dot_rows(dOi, Vj, hd) - D_i);
}

// ---- Backward (2): dK, dV of one key tile.
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_backward_dkdv_kernel(T* dk, T* dv, int64_t ld_dqkv, const T* dout, int64_t ld_out,
                                   const T* lse, const T* D, const T* q, const T* k, const T* v,
                                   int64_t ld_qkv, int64_t T_len, int64_t H, int hd, T scale) {
  constexpr int kTile = AttentionTile<T>::kRows;
  const int ldh = hd + 1;
  T* Ks = shared_as<T>();            // (kTile, ldh)
  T* Vs = Ks + kTile * ldh;          // (kTile, ldh)
  T* dKs = Vs + kTile * ldh;         // (kTile, ldh)
  T* dVs = dKs + kTile * ldh;        // (kTile, ldh)
  T* Qs = dVs + kTile * ldh;         // (kTile, ldh)
  T* dOs = Qs + kTile * ldh;         // (kTile, ldh)
  T* Ps = dOs + kTile * ldh;         // (kTile queries, kTile keys)
  T* dSs = Ps + kTile * kTile;       // (kTile queries, kTile keys)
  T* lse_s = dSs + kTile * kTile;    // (kTile)
  T* D_s = lse_s + kTile;            // (kTile)

  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H;
  // The first key tiles are seen by the most queries: schedule them first.
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int cols = static_cast<int>(T_len - c0 < kTile ? T_len - c0 : kTile);
  const int64_t head = b * T_len * ld_qkv + h * hd;
  const T* dO_head = dout + b * T_len * ld_out + h * hd;

  load_tile<T, kTile>(Ks, ldh, k + head, ld_qkv, c0, cols, hd);
  load_tile<T, kTile>(Vs, ldh, v + head, ld_qkv, c0, cols, hd);
  for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
    const int o = (idx / hd) * ldh + idx % hd;
    dKs[o] = T(0);
    dVs[o] = T(0);
  }

  // Query rows before c0 see none of these keys; tiles are aligned, so start at r0 = c0.
  for (int64_t r0 = c0; r0 < T_len; r0 += kTile) {
    const int rows = static_cast<int>(T_len - r0 < kTile ? T_len - r0 : kTile);
    __syncthreads();  // the previous query tile's products are done with Qs, dOs, Ps, dSs
    load_tile<T, kTile>(Qs, ldh, q + head, ld_qkv, r0, rows, hd);
    load_tile<T, kTile>(dOs, ldh, dO_head, ld_out, r0, rows, hd);
    load_row_values<T, kTile>(lse_s, lse + bh * T_len, r0, rows);
    load_row_values<T, kTile>(D_s, D + bh * T_len, r0, rows);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += blockDim.x) {
      const int i = idx / kTile, j = idx % kTile;
      if (i < rows && j < cols && c0 + j <= r0 + i) {
        probability_and_grad(Ps + idx, dSs + idx, Qs + i * ldh, dOs + i * ldh, Ks + j * ldh,
                             Vs + j * ldh, lse_s[i], D_s[i], hd, scale);
      } else {
        Ps[idx] = dSs[idx] = T(0);
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
      const int j = idx / hd, d = idx % hd;
      T acc_v = dVs[j * ldh + d], acc_k = dKs[j * ldh + d];
      for (int i = 0; i < rows; ++i) {
        acc_v += Ps[i * kTile + j] * dOs[i * ldh + d];
        acc_k += dSs[i * kTile + j] * Qs[i * ldh + d];
      }
      dVs[j * ldh + d] = acc_v;
      dKs[j * ldh + d] = acc_k;
    }
  }
  __syncthreads();

  const int64_t dhead = b * T_len * ld_dqkv + h * hd;
  for (int idx = threadIdx.x; idx < cols * hd; idx += blockDim.x) {
    const int j = idx / hd, d = idx % hd;
    dk[dhead + (c0 + j) * ld_dqkv + d] = dKs[j * ldh + d];
    dv[dhead + (c0 + j) * ld_dqkv + d] = dVs[j * ldh + d];
  }
}

// ---- Backward (3): dQ of one query tile.
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_backward_dq_kernel(T* dq, int64_t ld_dqkv, const T* dout, int64_t ld_out,
                                 const T* lse, const T* D, const T* q, const T* k, const T* v,
                                 int64_t ld_qkv, int64_t T_len, int64_t H, int hd, T scale) {
  constexpr int kTile = AttentionTile<T>::kRows;
  const int ldh = hd + 1;
  T* Qs = shared_as<T>();            // (kTile, ldh)
  T* dOs = Qs + kTile * ldh;         // (kTile, ldh)
  T* dQs = dOs + kTile * ldh;        // (kTile, ldh)
  T* Ks = dQs + kTile * ldh;         // (kTile, ldh)
  T* Vs = Ks + kTile * ldh;          // (kTile, ldh)
  T* dSs = Vs + kTile * ldh;         // (kTile queries, kTile keys)
  T* lse_s = dSs + kTile * kTile;    // (kTile)
  T* D_s = lse_s + kTile;            // (kTile)

  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H;
  const int64_t r0 = (static_cast<int64_t>(gridDim.y) - 1 - blockIdx.y) * kTile;
  const int rows = static_cast<int>(T_len - r0 < kTile ? T_len - r0 : kTile);
  const int64_t head = b * T_len * ld_qkv + h * hd;

  load_tile<T, kTile>(Qs, ldh, q + head, ld_qkv, r0, rows, hd);
  load_tile<T, kTile>(dOs, ldh, dout + b * T_len * ld_out + h * hd, ld_out, r0, rows, hd);
  load_row_values<T, kTile>(lse_s, lse + bh * T_len, r0, rows);
  load_row_values<T, kTile>(D_s, D + bh * T_len, r0, rows);
  for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
    dQs[(idx / hd) * ldh + idx % hd] = T(0);
  }

  const int64_t last_row = r0 + rows - 1;
  for (int64_t c0 = 0; c0 <= last_row; c0 += kTile) {
    const int cols = static_cast<int>(T_len - c0 < kTile ? T_len - c0 : kTile);
    __syncthreads();  // the previous key tile's dS K is done with Ks and dSs
    load_tile<T, kTile>(Ks, ldh, k + head, ld_qkv, c0, cols, hd);
    load_tile<T, kTile>(Vs, ldh, v + head, ld_qkv, c0, cols, hd);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += blockDim.x) {
      const int i = idx / kTile, j = idx % kTile;
      T p = T(0), ds = T(0);
      if (i < rows && j < cols && c0 + j <= r0 + i) {
        probability_and_grad(&p, &ds, Qs + i * ldh, dOs + i * ldh, Ks + j * ldh, Vs + j * ldh,
                             lse_s[i], D_s[i], hd, scale);
      }
      dSs[idx] = ds;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
      const int i = idx / hd, d = idx % hd;
      T acc = dQs[i * ldh + d];
      for (int j = 0; j < cols; ++j) acc += dSs[i * kTile + j] * Ks[j * ldh + d];
      dQs[i * ldh + d] = acc;
    }
  }
  __syncthreads();

  const int64_t dhead = b * T_len * ld_dqkv + h * hd;
  for (int idx = threadIdx.x; idx < rows * hd; idx += blockDim.x) {
    const int i = idx / hd, d = idx % hd;
    dq[dhead + (r0 + i) * ld_dqkv + d] = dQs[i * ldh + d];
  }
}

// ---- Host side.

void check_shape(const char* op, int64_t B, int64_t T_len, int64_t H, int64_t hd) {
  if (B < 0 || T_len < 0 || H < 0) {
    throw std::invalid_argument(std::string(op) + ": negative size B=" + std::to_string(B) +
                                ", T=" + std::to_string(T_len) + ", H=" + std::to_string(H));
  }
  if (hd < 1 || hd > kAttentionMaxHeadDim) {
    throw std::invalid_argument(std::string(op) + ": head_dim " + std::to_string(hd) +
                                " outside [1, " + std::to_string(kAttentionMaxHeadDim) + "]");
  }
}

void check_stride(const char* op, const char* name, int64_t ld, int64_t H, int64_t hd) {
  if (ld < H * hd) {
    throw std::invalid_argument(std::string(op) + ": row stride " + name + "=" +
                                std::to_string(ld) + " < H*hd = " + std::to_string(H * hd));
  }
}

// The grid of a (b, h) x tile kernel; throws if it does not fit CUDA's grid limits.
template <typename T>
dim3 tile_grid(const char* op, int64_t B, int64_t T_len, int64_t H) {
  constexpr int64_t kTile = AttentionTile<T>::kRows;
  const int64_t heads = B * H, tiles = (T_len + kTile - 1) / kTile;
  if (heads > 0x7fffffff || tiles > 65535) {
    throw std::invalid_argument(std::string(op) + ": B*H=" + std::to_string(heads) + " and " +
                                std::to_string(tiles) + " tiles of " + std::to_string(kTile) +
                                " rows exceed one CUDA grid");
  }
  return dim3(static_cast<unsigned>(heads), static_cast<unsigned>(tiles));
}

// Bytes of shared memory of a kernel keeping `wide` (kTile, hd + 1) tiles, `square` (kTile,
// kTile) tiles and `vectors` (kTile) vectors.
template <typename T>
size_t smem_bytes(int64_t hd, int wide, int square, int vectors) {
  constexpr int64_t kTile = AttentionTile<T>::kRows;
  return sizeof(T) * static_cast<size_t>(wide * kTile * (hd + 1) + square * kTile * kTile +
                                         vectors * kTile);
}

// Lets `kernel` use `bytes` of dynamic shared memory (beyond the default 48 KiB needs an
// opt-in), or throws naming the op when the device has less to give.
template <typename Kernel>
void reserve_smem(Kernel kernel, size_t bytes, const char* op, int64_t hd) {
  int device = 0, max_optin = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  TESSERA_CUDA_CHECK(
      cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > static_cast<size_t>(max_optin)) {
    throw std::runtime_error(std::string(op) + ": head_dim " + std::to_string(hd) + " needs " +
                             std::to_string(bytes) + " bytes of shared memory per block; device " +
                             std::to_string(device) + " allows " + std::to_string(max_optin));
  }
  TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
}

template <typename T>
T attention_scale(int64_t hd) {
  return T(1) / std::sqrt(static_cast<T>(hd));  // as the CPU computes it
}

}  // namespace

template <typename T>
void attention_forward(T* out, int64_t ld_out, T* lse, const T* q, const T* k, const T* v,
                       int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H, int64_t hd,
                       cudaStream_t stream) {
  const char* op = "cuda attention_forward";
  check_shape(op, B, T_len, H, hd);
  check_stride(op, "ld_out", ld_out, H, hd);
  check_stride(op, "ld_qkv", ld_qkv, H, hd);
  const dim3 grid = tile_grid<T>(op, B, T_len, H);
  if (B * H * T_len == 0) return;
  const size_t smem = smem_bytes<T>(hd, 3, 1, 3);
  reserve_smem(attention_forward_kernel<T>, smem, op, hd);
  attention_forward_kernel<T><<<grid, kAttentionThreads, smem, stream>>>(
      out, ld_out, lse, q, k, v, ld_qkv, T_len, H, static_cast<int>(hd), attention_scale<T>(hd));
  check_launch("attention_forward_kernel");
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                        const T* out, int64_t ld_out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t ld_qkv, int64_t B, int64_t T_len, int64_t H,
                        int64_t hd, cudaStream_t stream) {
  const char* op = "cuda attention_backward";
  check_shape(op, B, T_len, H, hd);
  check_stride(op, "ld_dqkv", ld_dqkv, H, hd);
  check_stride(op, "ld_out", ld_out, H, hd);
  check_stride(op, "ld_qkv", ld_qkv, H, hd);
  const dim3 grid = tile_grid<T>(op, B, T_len, H);
  const int64_t n_rows = B * H * T_len;
  if (n_rows == 0) return;
  const int ihd = static_cast<int>(hd);
  const T scale = attention_scale<T>(hd);

  attention_rowdot_kernel<T><<<detail::blocks_for(n_rows, "attention_backward"),
                               detail::kThreadsPerBlock, 0, stream>>>(scratch, dout, out, ld_out,
                                                                      T_len, H, ihd, n_rows);
  check_launch("attention_rowdot_kernel");

  const size_t smem_dkdv = smem_bytes<T>(hd, 6, 2, 2);
  reserve_smem(attention_backward_dkdv_kernel<T>, smem_dkdv, op, hd);
  attention_backward_dkdv_kernel<T><<<grid, kAttentionThreads, smem_dkdv, stream>>>(
      dk, dv, ld_dqkv, dout, ld_out, lse, scratch, q, k, v, ld_qkv, T_len, H, ihd, scale);
  check_launch("attention_backward_dkdv_kernel");

  const size_t smem_dq = smem_bytes<T>(hd, 5, 1, 2);
  reserve_smem(attention_backward_dq_kernel<T>, smem_dq, op, hd);
  attention_backward_dq_kernel<T><<<grid, kAttentionThreads, smem_dq, stream>>>(
      dq, ld_dqkv, dout, ld_out, lse, scratch, q, k, v, ld_qkv, T_len, H, ihd, scale);
  check_launch("attention_backward_dq_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void attention_forward<T>(T*, int64_t, T*, const T*, const T*, const T*, int64_t,  \
                                     int64_t, int64_t, int64_t, int64_t, cudaStream_t);       \
  template void attention_backward<T>(T*, T*, T*, int64_t, T*, const T*, const T*, int64_t,   \
                                      const T*, const T*, const T*, const T*, int64_t,        \
                                      int64_t, int64_t, int64_t, int64_t, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
