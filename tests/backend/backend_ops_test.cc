// Backend-ops test (in the spirit of ggml's test-backend-ops): every op of every backend this
// build has, against the CPU backend in double.
//   values:    each case's forward and backward outputs on the backend in float (and in double
//              where it offers it) against the CPU backend in double;
//   gradients: each backward against central finite differences of its forward, on the backend
//              in double (where it offers it) and on the CPU backend in double.
// Cases use small, odd shapes (strided rows, empty expert segments, causal rows across the CPU's
// 64-row blocks). Backends that cannot run here (no GPU) are reported as SKIPPED, never passed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/factory/make_backend.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using Arrays = std::vector<std::vector<double>>;
using testing::float_exact;
using testing::random_vector;

std::vector<double> rnd(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return float_exact(random_vector(n, seed, lo, hi));
}

// Host doubles <-> backend memory of scalar T (or int32 ids), owned until the object goes.
template <typename T>
class Dev {
 public:
  explicit Dev(Backend& be) : be_(be) {}
  T* up(const std::vector<double>& host) {
    std::vector<T> t(host.begin(), host.end());
    T* p = alloc<T>(static_cast<int64_t>(t.size()));
    be_.copy_from_host(p, t.data(), sizeof(T) * t.size());
    return p;
  }
  int32_t* ints(const std::vector<double>& host) {
    std::vector<int32_t> t(host.size());
    for (size_t i = 0; i < host.size(); ++i) t[i] = static_cast<int32_t>(host[i]);
    int32_t* p = alloc<int32_t>(static_cast<int64_t>(t.size()));
    be_.copy_from_host(p, t.data(), sizeof(int32_t) * t.size());
    return p;
  }
  T* filled(int64_t n, double value) { return up(std::vector<double>(n, value)); }
  template <typename U>
  std::vector<double> down(const U* p, int64_t n) {
    std::vector<U> t(n);
    be_.copy_to_host(t.data(), p, sizeof(U) * n);
    return std::vector<double>(t.begin(), t.end());
  }
  // The first `width` columns of `rows` rows of stride ld, packed.
  std::vector<double> down_rows(const T* p, int64_t rows, int64_t width, int64_t ld) {
    const std::vector<double> all = down(p, rows * ld);
    std::vector<double> out;
    for (int64_t r = 0; r < rows; ++r) {
      out.insert(out.end(), all.begin() + r * ld, all.begin() + r * ld + width);
    }
    return out;
  }
  template <typename U>
  U* alloc(int64_t n) {
    keep_.push_back(be_.alloc({std::max<int64_t>(n, 1)}, dtype_of<U>()));
    return keep_.back().data<U>();
  }

 private:
  Backend& be_;
  std::vector<Tensor> keep_;
};

std::vector<double> minus(std::vector<double> v, double c) {
  for (double& x : v) x -= c;
  return v;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kAcc = 0.25;  // accumulating outputs start here; the case subtracts it

// ---- The cases. Each has inputs(), the indices of its differentiable inputs, forward<T> and
// backward<T> (gradients of the differentiable inputs, in order, given one dy per output).

struct Linear {
  static constexpr const char* kName = "linear";
  static constexpr int64_t N = 7, I = 5, O = 4, ldy = 6;
  Arrays inputs() const { return {rnd(N * I, 1), rnd(O * I, 2)}; }
  std::vector<int> diff() const { return {0, 1}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* y = d.filled(N * ldy, kNaN);  // a written output overwrites even NaN
    be.ops<T>().linear_forward(y, ldy, d.up(in[0]), I, d.up(in[1]), N, I, O);
    return {d.down_rows(y, N, O, ldy)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    T* dx = d.filled(N * I, kAcc);
    T* dW = d.filled(O * I, kAcc);
    T* g = d.up(dy[0]);
    be.ops<T>().linear_backward_input(dx, I, g, O, d.up(in[1]), N, I, O, {.accumulate = true});
    be.ops<T>().linear_backward_weight(dW, g, O, d.up(in[0]), I, N, I, O);
    return {minus(d.down(dx, N * I), kAcc), minus(d.down(dW, O * I), kAcc)};
  }
};

struct GroupedLinear {
  static constexpr const char* kName = "grouped_linear";
  static constexpr int64_t R = 9, I = 5, O = 3, G = 3;
  const std::vector<RowSegment> segments{{2, 0, 3}, {0, 3, 0}, {1, 3, 4}, {0, 7, 2}};
  Arrays inputs() const { return {rnd(R * I, 3), rnd(G * O * I, 4)}; }
  std::vector<int> diff() const { return {0, 1}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* y = d.filled(R * O, kNaN);
    be.ops<T>().grouped_linear_forward(y, O, d.up(in[0]), I, d.up(in[1]), segments, I, O);
    return {d.down(y, R * O)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    T* dx = d.filled(R * I, kNaN);
    T* dW = d.filled(G * O * I, kAcc);
    T* g = d.up(dy[0]);
    be.ops<T>().grouped_linear_backward_input(dx, I, g, O, d.up(in[1]), segments, I, O);
    be.ops<T>().grouped_linear_backward_weight(dW, g, O, d.up(in[0]), I, segments, I, O);
    return {d.down(dx, R * I), minus(d.down(dW, G * O * I), kAcc)};
  }
};

// q|k|v fused (N, 3C) as the attention block holds them; 67 rows cross the CPU's 64-row blocks.
struct Attention {
  static constexpr const char* kName = "attention";
  static constexpr int64_t B = 2, T_ = 67, H = 2, hd = 4, C = H * hd, N = B * T_;
  const AttentionShape shape{B, T_, H, hd};
  Arrays inputs() const { return {rnd(N * 3 * C, 5)}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* qkv = d.up(in[0]);
    T* out = d.filled(N * C, kNaN);
    T* saved = d.template alloc<T>(attention_saved_numel(be.device(), shape));
    ops.attention_forward(out, C, saved, qkv, qkv + C, qkv + 2 * C, 3 * C, shape);
    return {d.down(out, N * C)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* qkv = d.up(in[0]);
    T* out = d.filled(N * C, kNaN);
    T* saved = d.template alloc<T>(attention_saved_numel(be.device(), shape));
    T* scratch = d.template alloc<T>(attention_scratch_numel(be.device(), shape));
    T* dqkv = d.filled(N * 3 * C, kNaN);
    ops.attention_forward(out, C, saved, qkv, qkv + C, qkv + 2 * C, 3 * C, shape);
    ops.attention_backward(dqkv, dqkv + C, dqkv + 2 * C, 3 * C, scratch, d.up(dy[0]), out, C,
                           saved, qkv, qkv + C, qkv + 2 * C, 3 * C, shape);
    return {d.down(dqkv, N * 3 * C)};
  }
};

struct RmsNorm {
  static constexpr const char* kName = "rmsnorm";
  static constexpr int64_t N = 6, C = 10;
  Arrays inputs() const { return {rnd(N * C, 6), rnd(C, 7, 0.5, 1.5)}; }
  std::vector<int> diff() const { return {0, 1}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* y = d.filled(N * C, kNaN);
    T* rstd = d.filled(N, kNaN);
    be.ops<T>().rmsnorm_forward(y, rstd, d.up(in[0]), d.up(in[1]), N, C, T(1e-5));
    return {d.down(y, N * C), d.down(rstd, N)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* x = d.up(in[0]);
    T* w = d.up(in[1]);
    T* y = d.filled(N * C, kNaN);
    T* rstd = d.filled(N, kNaN);
    ops.rmsnorm_forward(y, rstd, x, w, N, C, T(1e-5));
    // rstd is an output too: its gradient flows into x (dL/dx += dL/drstd * drstd/dx).
    std::vector<double> drstd_x(N * C);
    const std::vector<double> r = d.down(rstd, N);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const double xv = in[0][n * C + c];
        drstd_x[n * C + c] = dy[1][n] * (-r[n] * r[n] * r[n] * xv / C);
      }
    }
    T* dx = d.up(drstd_x);
    T* dw = d.filled(C, kAcc);
    T* g = d.up(dy[0]);
    ops.rmsnorm_backward_input(dx, g, x, w, rstd, N, C, /*accumulate=*/true);
    ops.rmsnorm_backward_weight(dw, g, x, rstd, N, C);
    return {d.down(dx, N * C), minus(d.down(dw, C), kAcc)};
  }
};

// Rows of (B, T, H, hd) with a padded stride; the table comes from the backend too.
struct Rope {
  static constexpr const char* kName = "rope";
  static constexpr int64_t B = 2, T_ = 5, H = 2, hd = 6, ld = H * hd + 3, N = B * T_;
  Arrays inputs() const { return {rnd(N * ld, 8)}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* cos = d.filled(T_ * hd / 2, kNaN);
    T* sin = d.filled(T_ * hd / 2, kNaN);
    be.ops<T>().rope_table(cos, sin, T_, hd, 10000.0);
    T* x = d.up(in[0]);
    be.ops<T>().rope_forward(x, ld, cos, sin, B, T_, H, hd);
    return {d.down(x, N * ld), d.down(cos, T_ * hd / 2), d.down(sin, T_ * hd / 2)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays&, const Arrays& dy) const {
    Dev<T> d(be);
    T* cos = d.filled(T_ * hd / 2, kNaN);
    T* sin = d.filled(T_ * hd / 2, kNaN);
    be.ops<T>().rope_table(cos, sin, T_, hd, 10000.0);
    T* dx = d.up(dy[0]);
    be.ops<T>().rope_backward(dx, ld, cos, sin, B, T_, H, hd);
    return {d.down(dx, N * ld)};
  }
};

struct Swiglu {
  static constexpr const char* kName = "swiglu";
  static constexpr int64_t N = 5, F = 7;
  Arrays inputs() const { return {rnd(N * 2 * F, 9, -2, 2)}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* ab = d.up(in[0]);
    T* h = d.filled(N * F, kNaN);
    be.ops<T>().swiglu_forward(h, ab, ab + F, 2 * F, N, F);
    return {d.down(h, N * F)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    T* ab = d.up(in[0]);
    T* dab = d.filled(N * 2 * F, kNaN);
    be.ops<T>().swiglu_backward(dab, dab + F, d.up(dy[0]), ab, ab + F, 2 * F, N, F);
    return {d.down(dab, N * 2 * F)};
  }
};

// Group-limited top-k: scores and gates are differentiable, the selection is compared exactly.
struct Router {
  static constexpr const char* kName = "router";
  static constexpr int64_t N = 6, E = 8, K = 3;
  RouterShape shape() const {
    RouterShape s;
    s.n_experts = E, s.top_k = K, s.n_group = 4, s.topk_group = 2, s.route_scale = 2.5;
    return s;
  }
  Arrays inputs() const { return {rnd(N * E, 10, -3, 3), rnd(E, 11, -0.3, 0.3)}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* scores = d.filled(N * E, kNaN);
    T* gates = d.filled(N * K, kNaN);
    int32_t* idx = d.template alloc<int32_t>(N * K);
    be.ops<T>().router_forward(scores, idx, gates, d.up(in[0]), d.up(in[1]), N, shape());
    return {d.down(scores, N * E), d.down(gates, N * K), d.down(idx, N * K)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* scores = d.filled(N * E, kNaN);
    T* gates = d.filled(N * K, kNaN);
    int32_t* idx = d.template alloc<int32_t>(N * K);
    ops.router_forward(scores, idx, gates, d.up(in[0]), d.up(in[1]), N, shape());
    T* dlogits = d.filled(N * E, kNaN);
    ops.router_backward(dlogits, d.up(dy[1]), d.up(dy[0]), scores, idx, N, shape());
    return {d.down(dlogits, N * E)};
  }
};

// The balance loss of fixed routing, differentiated in the scores.
struct BalanceLoss {
  static constexpr const char* kName = "seq_balance_loss";
  static constexpr int64_t B = 2, T_ = 4, E = 6, K = 2, N = B * T_;
  static constexpr double kAlpha = 0.3;
  static std::vector<double> routing() {
    std::vector<double> idx;
    for (int64_t n = 0; n < N; ++n) {
      idx.push_back(static_cast<double>(n % E));
      idx.push_back(static_cast<double>((n * 3 + 1) % E == n % E ? (n + 1) % E : (n * 3 + 1) % E));
    }
    return idx;
  }
  Arrays inputs() const { return {rnd(N * E, 12, 0.05, 0.95), routing()}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    const double loss = be.ops<T>().seq_balance_loss_forward(d.up(in[0]), d.ints(in[1]), B, T_,
                                                             E, K, kAlpha);
    return {{loss}};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    T* ds = d.filled(N * E, kAcc);
    be.ops<T>().seq_balance_loss_backward(ds, d.up(in[0]), d.ints(in[1]), B, T_, E, K, kAlpha,
                                          static_cast<T>(dy[0][0]));
    return {minus(d.down(ds, N * E), kAcc)};
  }
};

// Permutation (compared exactly), permute and unpermute-combine with their backwards.
struct Permute {
  static constexpr const char* kName = "moe_permute";
  static constexpr int64_t N = 5, K = 2, E = 4, C = 3;
  static std::vector<double> routing() { return {3, 1, 0, 3, 1, 2, 3, 0, 0, 1}; }
  Arrays inputs() const {
    return {rnd(N * C, 13), rnd(N * K * C, 14), rnd(N * K, 15, 0.1, 1.0), routing()};
  }
  std::vector<int> diff() const { return {0, 1, 2}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    int32_t* pos = d.template alloc<int32_t>(N * K);
    int32_t* slot = d.template alloc<int32_t>(N * K);
    std::vector<int64_t> counts(E, -1);
    ops.moe_build_permutation(pos, slot, counts.data(), d.ints(in[3]), N, K, E);
    T* xp = d.filled(N * K * C, kNaN);
    ops.moe_permute(xp, d.up(in[0]), slot, N, K, C);
    T* y = d.filled(N * C, kAcc);
    ops.moe_unpermute_combine(y, d.up(in[1]), d.up(in[2]), pos, N, K, C, /*accumulate=*/true);
    return {d.down(xp, N * K * C), minus(d.down(y, N * C), kAcc), d.down(pos, N * K),
            d.down(slot, N * K), std::vector<double>(counts.begin(), counts.end())};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    int32_t* pos = d.template alloc<int32_t>(N * K);
    int32_t* slot = d.template alloc<int32_t>(N * K);
    std::vector<int64_t> counts(E);
    ops.moe_build_permutation(pos, slot, counts.data(), d.ints(in[3]), N, K, E);
    T* dx = d.filled(N * C, kNaN);
    ops.moe_permute_backward(dx, d.up(dy[0]), pos, N, K, C, /*accumulate=*/false);
    T* dyp = d.filled(N * K * C, kNaN);
    T* dgates = d.filled(N * K, kNaN);
    ops.moe_unpermute_combine_backward(dyp, dgates, d.up(dy[1]), d.up(in[1]), d.up(in[2]), pos,
                                       N, K, C);
    return {d.down(dx, N * C), d.down(dyp, N * K * C), d.down(dgates, N * K)};
  }
};

struct Embedding {
  static constexpr const char* kName = "embedding";
  static constexpr int64_t V = 6, C = 4, N = 7;
  Arrays inputs() const { return {rnd(V * C, 16), {5, 0, 2, 5, 5, 1, 0}}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* out = d.filled(N * C, kNaN);
    be.ops<T>().embedding_forward(out, d.ints(in[1]), d.up(in[0]), N, C, V);
    return {d.down(out, N * C)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    T* dtable = d.filled(V * C, kAcc);
    be.ops<T>().embedding_backward_weight(dtable, d.up(dy[0]), d.ints(in[1]), N, C, V);
    return {minus(d.down(dtable, V * C), kAcc)};
  }
};

// The backward computes the gradient of scale * sum(losses): one dy for every row.
struct CrossEntropy {
  static constexpr const char* kName = "cross_entropy";
  static constexpr int64_t N = 5, V = 11;
  static constexpr bool kUniformDy = true;
  Arrays inputs() const { return {rnd(N * V, 17, -4, 4), {3, 0, 10, 7, 3}}; }
  std::vector<int> diff() const { return {0}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* losses = d.filled(N, kNaN);
    T* lse = d.filled(N, kNaN);
    be.ops<T>().cross_entropy_forward(losses, lse, d.up(in[0]), d.ints(in[1]), N, V);
    return {d.down(losses, N)};
  }
  template <typename T>
  Arrays backward(Backend& be, const Arrays& in, const Arrays& dy) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* logits = d.up(in[0]);
    int32_t* targets = d.ints(in[1]);
    T* losses = d.filled(N, kNaN);
    T* lse = d.filled(N, kNaN);
    ops.cross_entropy_forward(losses, lse, logits, targets, N, V);
    ops.cross_entropy_backward(logits, logits, lse, targets, N, V, static_cast<T>(dy[0][0]));
    return {d.down(logits, N * V)};  // in place, as the output head runs it
  }
};

// ---- Value-only ops (no gradient): optimizer, element-wise, reductions.

struct AdamWUpdate {
  static constexpr const char* kName = "adamw";
  static constexpr int64_t n = 37;
  Arrays inputs() const {
    return {rnd(n, 18), rnd(n, 19), rnd(n, 20, -0.1, 0.1), rnd(n, 21, 0.0, 0.01)};
  }
  std::vector<int> diff() const { return {}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    T* p = d.up(in[0]);
    T* m = d.up(in[2]);
    T* v = d.up(in[3]);
    AdamWStep hp;
    hp.lr = 0.01, hp.weight_decay = 0.1, hp.step = 3;
    be.ops<T>().adamw_update(p, d.up(in[1]), m, v, n, hp, /*decay=*/true, T(0.7));
    return {d.down(p, n), d.down(m, n), d.down(v, n)};
  }
  template <typename T>
  Arrays backward(Backend&, const Arrays&, const Arrays&) const { return {}; }
};

struct VectorOps {
  static constexpr const char* kName = "vector_ops";
  static constexpr int64_t n = 10007;  // more than one reduction chunk
  Arrays inputs() const { return {rnd(n, 22), rnd(n, 23)}; }
  std::vector<int> diff() const { return {}; }
  template <typename T>
  Arrays forward(Backend& be, const Arrays& in) const {
    Dev<T> d(be);
    BackendOps<T>& ops = be.ops<T>();
    T* x = d.up(in[0]);
    T* y = d.up(in[1]);
    T* c = d.filled(n, kNaN);
    ops.copy(c, x, n);
    ops.add_inplace(y, x, n);
    ops.scale_inplace(x, T(-1.5), n);
    T* f = d.filled(n, kNaN);
    ops.fill(f, T(0.375), n);
    const double sum = ops.sum(y, n), sumsq = ops.sum_squares(y, n);
    // An empty range changes nothing and sums to 0.
    ops.copy(f, c, 0);
    // Strided blocks: 7 rows of 5 from stride 13 to stride 9, then added once more.
    T* b = d.filled(7 * 9, 0.25);
    ops.copy_2d(b, 9, y + 3, 13, 7, 5, /*accumulate=*/false);
    ops.copy_2d(b + 1, 9, x, 13, 7, 5, /*accumulate=*/true);
    ops.copy_2d(b, 9, x, 13, 0, 5, /*accumulate=*/false);
    return {d.down(c, n), d.down(y, n), d.down(x, n), d.down(f, n), {sum, sumsq, ops.sum(y, 0)},
            d.down(b, 7 * 9)};
  }
  template <typename T>
  Arrays backward(Backend&, const Arrays&, const Arrays&) const { return {}; }
};

// ---- Harness.

struct Case {
  std::string name;
  Arrays inputs;
  std::vector<int> diff;
  bool uniform_dy = false;
  std::function<Arrays(Backend&, const Arrays&)> fwd_f32, fwd_f64;
  std::function<Arrays(Backend&, const Arrays&, const Arrays&)> bwd_f32, bwd_f64;
};

template <typename C>
constexpr bool uniform_dy_of() {
  if constexpr (requires { C::kUniformDy; }) {
    return C::kUniformDy;
  } else {
    return false;
  }
}

template <typename C>
Case make_case() {
  const C c;
  Case k;
  k.name = C::kName;
  k.inputs = c.inputs();
  k.diff = c.diff();
  k.uniform_dy = uniform_dy_of<C>();
  k.fwd_f32 = [c](Backend& be, const Arrays& in) { return c.template forward<float>(be, in); };
  k.fwd_f64 = [c](Backend& be, const Arrays& in) { return c.template forward<double>(be, in); };
  k.bwd_f32 = [c](Backend& be, const Arrays& in, const Arrays& dy) {
    return c.template backward<float>(be, in, dy);
  };
  k.bwd_f64 = [c](Backend& be, const Arrays& in, const Arrays& dy) {
    return c.template backward<double>(be, in, dy);
  };
  return k;
}

std::vector<Case> all_cases() {
  return {make_case<Linear>(),  make_case<GroupedLinear>(), make_case<Attention>(),
          make_case<RmsNorm>(), make_case<Rope>(),          make_case<Swiglu>(),
          make_case<Router>(),  make_case<BalanceLoss>(),   make_case<Permute>(),
          make_case<Embedding>(), make_case<CrossEntropy>(), make_case<AdamWUpdate>(),
          make_case<VectorOps>()};
}

// One dy per forward output (float-exact), or one constant for every element.
Arrays make_dy(const Case& c, const Arrays& outputs) {
  Arrays dy;
  for (size_t i = 0; i < outputs.size(); ++i) {
    dy.push_back(c.uniform_dy ? std::vector<double>(outputs[i].size(), 0.75)
                              : rnd(static_cast<int64_t>(outputs[i].size()), 100 + i));
  }
  return dy;
}

double max_rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  return testing::rel_error(got, want);
}

void expect_close(const Arrays& got, const Arrays& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << what << " output " << i;
    for (double v : got[i]) ASSERT_TRUE(std::isfinite(v)) << what << " output " << i;
    EXPECT_LE(max_rel_error(got[i], want[i]), tol) << what << " output " << i;
  }
}

std::unique_ptr<Backend> backend_or_skip(const std::string& device, std::string* why) {
  try {
    return make_backend(device);
  } catch (const std::exception& e) {
    *why = e.what();
    return nullptr;
  }
}

class BackendOpsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    backend_ = backend_or_skip(GetParam(), &why);
    if (!backend_) GTEST_SKIP() << GetParam() << " backend unavailable here (" << why
                                << "): compiled, not run";
    cpu_ = make_backend("cpu");
  }
  std::unique_ptr<Backend> backend_, cpu_;
};

// fp32 on the backend vs fp64 on the CPU: rounding of float arithmetic only.
constexpr double kF32Tol = 2e-5;
// fp64 on another device vs the CPU: summation order and fused multiply-adds only.
constexpr double kF64Tol = 1e-10;

TEST_P(BackendOpsTest, ValuesMatchTheCpuBackendInDouble) {
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name + " on " + backend_->capabilities().name);
    const Arrays ref = c.fwd_f64(*cpu_, c.inputs);
    expect_close(c.fwd_f32(*backend_, c.inputs), ref, kF32Tol, "forward f32");
    if (backend_->capabilities().f64) {
      expect_close(c.fwd_f64(*backend_, c.inputs), ref, kF64Tol, "forward f64");
    }
    if (c.diff.empty()) continue;
    const Arrays dy = make_dy(c, ref);
    const Arrays ref_grads = c.bwd_f64(*cpu_, c.inputs, dy);
    expect_close(c.bwd_f32(*backend_, c.inputs, dy), ref_grads, kF32Tol, "backward f32");
    if (backend_->capabilities().f64) {
      expect_close(c.bwd_f64(*backend_, c.inputs, dy), ref_grads, kF64Tol, "backward f64");
    }
  }
}

// Finite differences of L = sum_i <dy_i, output_i> at up to 24 sampled elements per input.
TEST_P(BackendOpsTest, EveryBackwardMatchesFiniteDifferences) {
  if (!backend_->capabilities().f64) GTEST_SKIP() << "no fp64 ops on this backend";
  for (const Case& c : all_cases()) {
    if (c.diff.empty()) continue;
    SCOPED_TRACE(c.name + " on " + backend_->capabilities().name);
    Arrays x = c.inputs;
    const Arrays dy = make_dy(c, c.fwd_f64(*backend_, x));
    const Arrays grads = c.bwd_f64(*backend_, x, dy);
    ASSERT_EQ(grads.size(), c.diff.size());
    auto loss = [&] {
      const Arrays out = c.fwd_f64(*backend_, x);
      double l = 0;
      for (size_t i = 0; i < out.size(); ++i) l += testing::dot(dy[i], out[i]);
      return l;
    };
    for (size_t j = 0; j < c.diff.size(); ++j) {
      std::vector<double>& input = x[c.diff[j]];
      std::vector<int64_t> sample;
      const int64_t n = static_cast<int64_t>(input.size());
      for (int64_t s = 0; s < std::min<int64_t>(n, 24); ++s) sample.push_back(s * n / std::min<int64_t>(n, 24));
      const std::vector<double> numeric = testing::numeric_grad(input, loss, sample);
      EXPECT_LE(testing::rel_error(grads[j], numeric, sample), testing::kFdTolerance)
          << "gradient of input " << c.diff[j];
    }
  }
}

TEST_P(BackendOpsTest, CapabilitiesDescribeTheDevice) {
  const BackendCapabilities& caps = backend_->capabilities();
  EXPECT_FALSE(caps.name.empty());
  EXPECT_EQ(caps.device, GetParam() == "cpu" ? Device::kCPU : Device::kCUDA);
  // A host-accessible backend runs its ops synchronously (the model reads its memory directly).
  if (caps.host_accessible) {
    EXPECT_FALSE(caps.asynchronous);
  }
  std::unique_ptr<Event> event = backend_->record_event();
  event->synchronize();
  EXPECT_TRUE(event->ready());
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendOpsTest, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(MakeBackend, UnknownDeviceNamesTheValue) {
  try {
    make_backend("tpu");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera::kernels
