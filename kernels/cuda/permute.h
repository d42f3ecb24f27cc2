// MoE token permute/unpermute on CUDA: the launchers of kernels/permute.h's row ops, same
// arguments and contracts, over device pointers, enqueued on `stream`. The permutation itself
// (kernels::moe_build_permutation, a counting sort whose expert counts the host needs anyway
// for the all-to-all sizes) is built on the host and copied to the device.
//
// Positions and slots live on the device and are not range-checked on the host: a row whose
// index lies outside [0, N*k) is written as NaN instead of being read out of bounds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// xp[p] = x[slot_of_pos[p] / k]
template <typename T>
void moe_permute(T* xp,                       // (N*k, C)
                 const T* x,                  // (N, C)
                 const int32_t* slot_of_pos,  // (N*k)
                 int64_t N, int64_t k, int64_t C, cudaStream_t stream = nullptr);

// dx[n] = sum_j dxp[pos_of_slot[n*k+j]]   (written, or added when accumulate)
template <typename T>
void moe_permute_backward(T* dx,                       // (N, C)
                          const T* dxp,                // (N*k, C)
                          const int32_t* pos_of_slot,  // (N*k)
                          int64_t N, int64_t k, int64_t C, bool accumulate = false,
                          cudaStream_t stream = nullptr);

// y[n] = sum_j gates[n, j] * yp[pos_of_slot[n*k+j]]   (written, or added when accumulate)
template <typename T>
void moe_unpermute_combine(T* y,                        // (N, C)
                           const T* yp,                 // (N*k, C)
                           const T* gates,              // (N, k)
                           const int32_t* pos_of_slot,  // (N*k)
                           int64_t N, int64_t k, int64_t C, bool accumulate = false,
                           cudaStream_t stream = nullptr);

// dyp[pos_of_slot[n*k+j]] = gates[n, j] * dy[n];  dgates[n, j] = <dy[n], yp[pos_of_slot[n*k+j]]>
// (both written). A token with a bad position gets NaN dgates and writes no dyp row.
template <typename T>
void moe_unpermute_combine_backward(T* dyp,                       // (N*k, C)
                                    T* dgates,                    // (N, k)
                                    const T* dy,                  // (N, C)
                                    const T* yp,                  // (N*k, C)
                                    const T* gates,               // (N, k)
                                    const int32_t* pos_of_slot,   // (N*k)
                                    int64_t N, int64_t k, int64_t C,
                                    cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
