// DeepSeek-V3 MoE router: sigmoid affinities, group-limited top-k selection on the biased
// scores (bias is for selection only, never trained by gradients), gates from the unbiased
// scores normalised over the chosen experts, times route_scale. Also the optional
// sequence-wise balance loss (V3 report eqs. 17-20).
#pragma once
#include <cstdint>

namespace tessera::kernels {

struct RouterShape {
  int64_t n_experts = 0;   // E
  int64_t top_k = 0;       // k
  int64_t n_group = 1;     // experts are split into n_group equal groups
  int64_t topk_group = 1;  // groups kept, ranked by the sum of each group's top-2 biased scores
  double route_scale = 1.0;
};

// The REQUIRES of router_forward below (also n_experts in [1, math::kRouterMaxExperts]), checked
// by every router (CPU and CUDA). Throws std::invalid_argument "<prefix>RouterShape: ..." naming
// the bad field and value.
void check_router_shape(const RouterShape& shape, const char* prefix = "");

// scores = sigmoid(logits). Per token: if n_group > 1, keep the topk_group groups with the
// largest (sum of the group's two largest biased scores), then pick the k largest biased scores
// inside the kept groups. Ties go to the lower index. expert_idx lists the chosen experts in
// descending biased score; gates[n, j] = route_scale * s[e_j] / sum_j' s[e_j'].
// REQUIRES: E % n_group == 0, E / n_group >= 2 when n_group > 1, topk_group <= n_group,
//           k <= topk_group * E / n_group.
template <typename T>
void router_forward(T* scores,            // (N, E)  sigmoid(logits), saved for backward
                    int32_t* expert_idx,  // (N, k)
                    T* gates,             // (N, k)
                    const T* logits,      // (N, E)
                    const T* bias,        // (E)   selection bias
                    int64_t N, const RouterShape& shape);

// dlogits (written) from the gradient of the gates and, if non-null, an extra gradient of the
// scores (from the balance loss). Selection is held fixed (it is piecewise constant).
template <typename T>
void router_backward(T* dlogits,              // (N, E)
                     const T* dgates,         // (N, k)
                     const T* dscores_extra,  // (N, E) or nullptr
                     const T* scores,         // (N, E)
                     const int32_t* expert_idx,  // (N, k)
                     int64_t N, const RouterShape& shape);

// Sequence-wise balance loss summed over the B sequences of T tokens (caller averages):
//   per sequence: alpha * sum_e f_e * P_e,  f_e = E / (k*T) * #(tokens of the sequence routed to e),
//   P_e = mean over the sequence's tokens of s_e / sum_j s_j.
template <typename T>
double seq_balance_loss_forward(const T* scores,            // (B*T, E)
                                const int32_t* expert_idx,  // (B*T, k)
                                int64_t B, int64_t T_len, int64_t E, int64_t k, double alpha);

// dscores += scale * d(loss sum)/d(scores); f_e held constant (it is a count).
template <typename T>
void seq_balance_loss_backward(T* dscores,                  // (B*T, E)
                               const T* scores,             // (B*T, E)
                               const int32_t* expert_idx,   // (B*T, k)
                               int64_t B, int64_t T_len, int64_t E, int64_t k, double alpha,
                               T scale);

// Tokens routed to each expert: counts[e] += #{(n, j): expert_idx[n, j] == e}.
void router_count_load(int64_t* counts, const int32_t* expert_idx, int64_t N, int64_t k,
                       int64_t E);

}  // namespace tessera::kernels
