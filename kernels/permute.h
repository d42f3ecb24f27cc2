// Token permute/unpermute for MoE: (token, slot) pairs are sorted by expert, stably by token
// index. The sorted order is deterministic and has each expert's rows contiguous, which is
// both what grouped expert GEMMs and an all-to-all dispatch need. "slot" = n*k + j.
#pragma once
#include <cstdint>

namespace tessera::kernels {

// pos_of_slot[slot] = row of that (token, slot) in the sorted order; slot_of_pos is its inverse;
// expert_counts[e] = rows routed to e (written).
void moe_build_permutation(int32_t* pos_of_slot,        // (N*k)
                           int32_t* slot_of_pos,        // (N*k)
                           int64_t* expert_counts,      // (E)
                           const int32_t* expert_idx,   // (N, k)
                           int64_t N, int64_t k, int64_t E);

// xp[p] = x[slot_of_pos[p] / k]
template <typename T>
void moe_permute(T* xp,                     // (N*k, C)
                 const T* x,                // (N, C)
                 const int32_t* slot_of_pos,  // (N*k)
                 int64_t N, int64_t k, int64_t C);

// dx[n] = sum_j dxp[pos_of_slot[n*k+j]]   (written, or added when accumulate)
template <typename T>
void moe_permute_backward(T* dx,                     // (N, C)
                          const T* dxp,              // (N*k, C)
                          const int32_t* pos_of_slot,  // (N*k)
                          int64_t N, int64_t k, int64_t C, bool accumulate = false);

// y[n] = sum_j gates[n, j] * yp[pos_of_slot[n*k+j]]   (written, or added when accumulate)
template <typename T>
void moe_unpermute_combine(T* y,                      // (N, C)
                           const T* yp,               // (N*k, C)
                           const T* gates,            // (N, k)
                           const int32_t* pos_of_slot,  // (N*k)
                           int64_t N, int64_t k, int64_t C, bool accumulate = false);

// dyp[pos_of_slot[n*k+j]] = gates[n, j] * dy[n];  dgates[n, j] = <dy[n], yp[pos_of_slot[n*k+j]]>
// (both written)
template <typename T>
void moe_unpermute_combine_backward(T* dyp,                     // (N*k, C)
                                    T* dgates,                  // (N, k)
                                    const T* dy,                // (N, C)
                                    const T* yp,                // (N*k, C)
                                    const T* gates,             // (N, k)
                                    const int32_t* pos_of_slot,  // (N*k)
                                    int64_t N, int64_t k, int64_t C);

}  // namespace tessera::kernels
