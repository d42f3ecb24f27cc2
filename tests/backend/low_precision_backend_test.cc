// bf16 and fp8 linear maps and bf16-moment AdamW on a device backend against the CPU backend, on
// the same inputs (instantiated for "cuda": SKIPPED where it cannot run, never passed).
//   linear maps: forward (plain and accumulating), dgrad, wgrad (accumulating into dW), and a
//     grouped forward with an empty segment; N, I, O not multiples of 16, every K (I, O, N)
//     ragged against 128. Both backends round the operands identically (bf16 nearest even; fp8
//     codes and scales bit for bit, tests/kernels_cuda/low_precision_gemm_test.cc); the CPU
//     multiplies the rounded values in one fp32 GEMM, the device in its own order (cuBLAS for
//     bf16, promotion every 128 of K for fp8), so each output agrees within fp32 summation
//     error: 4 (K + 4) 2^-23 sum_k |a_k b_k| (+ (K + 4) 2^-22 |C| when accumulating: a BLAS may
//     start its sums from C), with a, b the unrounded operands (e4m3 moves them by <= 1/16).
//   AdamW with bf16 moments: against the host conversion around the CPU's fp32 AdamW, moments
//     within one bf16 ulp (fused multiply-adds may differ in the last fp32 bit), parameters to
//     fp32 rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/factory/make_backend.h"
#include "kernels/fp8_quantize.h"
#include "kernels/math/low_precision.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

std::vector<float> random_floats(int64_t n, uint64_t seed, double scale) {
  const std::vector<double> d = testing::random_vector(n, seed, -scale, scale);
  return std::vector<float>(d.begin(), d.end());
}

// Host vectors in and out of one backend's memory.
class On {
 public:
  explicit On(Backend& be) : be_(be) {}
  template <typename T>
  T* up(const std::vector<T>& host) {
    tensors_.push_back(be_.alloc({static_cast<int64_t>(host.size())}, dtype_of<T>()));
    T* p = tensors_.back().template data<T>();
    be_.copy_from_host(p, host.data(), sizeof(T) * host.size());
    return p;
  }
  template <typename T>
  std::vector<T> down(const T* p, size_t n) {
    std::vector<T> host(n);
    be_.copy_to_host(host.data(), p, sizeof(T) * n);
    return host;
  }
  BackendOps<float>& ops() { return be_.ops<float>(); }

 private:
  Backend& be_;
  std::vector<Tensor> tensors_;
};

constexpr int64_t N = 200, I = 300, O = 130;  // tokens, in, out
constexpr int64_t ldx = I + 3, ldy = O + 2;   // strided activations

class LowPrecisionOnBackend : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    try {
      backend_ = make_backend(GetParam());
    } catch (const std::exception& e) {
      GTEST_SKIP() << GetParam() << " backend unavailable here (" << e.what()
                   << "): compiled, not run";
    }
    cpu_ = make_backend("cpu");
  }
  std::unique_ptr<Backend> backend_, cpu_;
  const std::vector<float> x = random_floats(N * ldx, 1, 2.0), W = random_floats(O * I, 2, 0.1),
                           dy = random_floats(N * ldy, 3, 0.01);
};

// |got - want| <= 4 (K + 4) 2^-23 sum_k |a(i,k) b(j,k)| + (K + 4) 2^-22 |c0| for each (i, j) of
// C (rows, cols) [ld] = A·Bᵀ (+ c0), A(i, k) and B(j, k) given as functions.
template <typename A, typename B>
void expect_within_summation_error(const std::vector<float>& got, const std::vector<float>& want,
                                   const std::vector<float>& c0, int64_t rows, int64_t cols,
                                   int64_t ld, int64_t K, A a, B b, const char* what) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double magnitude = 0;
      for (int64_t k = 0; k < K; ++k) magnitude += std::fabs(double{a(i, k)} * b(j, k));
      const size_t at = static_cast<size_t>(i * ld + j);
      const double bound =
          4.0 * (K + 4) * std::ldexp(magnitude, -23) +
          (c0.empty() ? 0.0 : (K + 4) * std::ldexp(std::fabs(double{c0[at]}), -22));
      const double error = std::fabs(double{got[at]} - want[at]);
      if (!(error <= bound) && wrong++ < 5) {
        ADD_FAILURE() << what << " (" << i << ", " << j << "): " << got[at] << " vs " << want[at]
                      << ", bound " << bound;
      }
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

TEST_P(LowPrecisionOnBackend, LinearMapsMatchTheCpuBackend) {
  for (Precision p : {Precision::kBF16, Precision::kFP8}) {
    SCOPED_TRACE(precision_name(p));
    const std::vector<float> y0 = random_floats(N * ldy, 4, 1.0);
    const std::vector<float> dx0 = random_floats(N * ldx, 5, 1.0);
    const std::vector<float> dW0 = random_floats(O * I, 6, 1.0);
    struct Out {
      std::vector<float> y, y_acc, dx, dW;
    };
    auto run = [&](Backend& be) {
      On on(be);
      const float* dx_in = on.up(x);
      const float* dW_in = on.up(W);
      const float* ddy = on.up(dy);
      float* y = on.up(y0);
      float* y_acc = on.up(y0);
      float* dx = on.up(dx0);
      float* dW = on.up(dW0);
      on.ops().linear_forward(y, ldy, dx_in, ldx, dW_in, N, I, O, {.precision = p});
      on.ops().linear_forward(y_acc, ldy, dx_in, ldx, dW_in, N, I, O,
                              {.accumulate = true, .precision = p});
      on.ops().linear_backward_input(dx, ldx, ddy, ldy, dW_in, N, I, O, {.precision = p});
      on.ops().linear_backward_weight(dW, ddy, ldy, dx_in, ldx, N, I, O, p);
      return Out{on.down(y, y0.size()), on.down(y_acc, y0.size()), on.down(dx, dx0.size()),
                 on.down(dW, dW0.size())};
    };
    const Out got = run(*backend_), want = run(*cpu_);
    auto X = [&](int64_t n, int64_t k) { return x[n * ldx + k]; };
    auto Wt = [&](int64_t o, int64_t k) { return W[o * I + k]; };
    auto WT = [&](int64_t i, int64_t k) { return W[k * I + i]; };
    auto DY = [&](int64_t n, int64_t k) { return dy[n * ldy + k]; };
    auto DYT = [&](int64_t o, int64_t k) { return dy[k * ldy + o]; };
    auto XT = [&](int64_t i, int64_t k) { return x[k * ldx + i]; };
    expect_within_summation_error(got.y, want.y, {}, N, O, ldy, I, X, Wt, "forward");
    expect_within_summation_error(got.y_acc, want.y_acc, y0, N, O, ldy, I, X, Wt,
                                  "forward, accumulating");
    expect_within_summation_error(got.dx, want.dx, {}, N, I, ldx, O, DY, WT, "dgrad");
    expect_within_summation_error(got.dW, want.dW, dW0, O, I, I, N, DYT, XT, "wgrad");
    // Padding between the strided rows is left alone.
    for (int64_t n = 0; n < N; ++n) {
      EXPECT_EQ(got.y[n * ldy + O], y0[n * ldy + O]);
      EXPECT_EQ(got.dx[n * ldx + I], dx0[n * ldx + I]);
    }
  }
}

// Routed experts: one linear map per segment, an empty one among them.
TEST_P(LowPrecisionOnBackend, GroupedForwardMatchesTheCpuBackend) {
  const std::vector<RowSegment> segments = {{1, 0, 70}, {0, 70, 0}, {2, 70, 130}};
  const std::vector<float> W3 = random_floats(3 * O * I, 7, 0.1);
  for (Precision p : {Precision::kBF16, Precision::kFP8}) {
    SCOPED_TRACE(precision_name(p));
    auto run = [&](Backend& be) {
      On on(be);
      const std::vector<float> y0(N * ldy, 0.0f);
      float* y = on.up(y0);
      on.ops().grouped_linear_forward(y, ldy, on.up(x), ldx, on.up(W3), segments, I, O,
                                      {.precision = p});
      return on.down(y, y0.size());
    };
    const std::vector<float> got = run(*backend_), want = run(*cpu_);
    auto X = [&](int64_t n, int64_t k) { return x[n * ldx + k]; };
    auto Wg = [&](int64_t n, int64_t o, int64_t k) {
      const int64_t group = n < 70 ? 1 : 2;
      return W3[(group * O + o) * I + k];
    };
    for (int64_t n = 0; n < N; ++n) {
      const std::vector<float> got_row(got.begin() + n * ldy, got.begin() + n * ldy + O);
      const std::vector<float> want_row(want.begin() + n * ldy, want.begin() + n * ldy + O);
      expect_within_summation_error(
          got_row, want_row, {}, 1, O, O, I, [&](int64_t, int64_t k) { return X(n, k); },
          [&](int64_t o, int64_t k) { return Wg(n, o, k); }, "grouped forward");
    }
  }
}

TEST_P(LowPrecisionOnBackend, AdamWWithBf16MomentsMatchesTheHostConversion) {
  ASSERT_TRUE(backend_->capabilities().adamw_bf16_moments);
  const int64_t n = 5003;
  std::vector<float> p = random_floats(n, 11, 1.0);
  std::vector<uint16_t> m(n), v(n);
  for (int64_t i = 0; i < n; ++i) {  // a state a few steps in
    m[i] = math::float_to_bf16(static_cast<float>(1e-3 * std::sin(i)));
    v[i] = math::float_to_bf16(static_cast<float>(1e-6 * (1.5 + std::cos(i))));
  }
  const std::vector<float> g = random_floats(n, 12, 0.1);
  AdamWStep hp;
  hp.lr = 3e-3;
  hp.weight_decay = 0.1;
  hp.step = 4;
  On on(*backend_);
  float* dp = on.up(p);
  uint16_t* dm = on.up(m);
  uint16_t* dv = on.up(v);
  on.ops().adamw_update_bf16_moments(dp, on.up(g), dm, dv, n, hp, true, 0.5f);
  const std::vector<float> got_p = on.down(dp, n);
  const std::vector<uint16_t> got_m = on.down(dm, n), got_v = on.down(dv, n);

  std::vector<float> mf(n), vf(n);
  for (int64_t i = 0; i < n; ++i) {
    mf[i] = math::bf16_to_float(m[i]);
    vf[i] = math::bf16_to_float(v[i]);
  }
  cpu_->ops<float>().adamw_update(p.data(), g.data(), mf.data(), vf.data(), n, hp, true, 0.5f);
  EXPECT_LE(testing::rel_error(got_p, p), 1e-5);
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& [got, want] : {std::pair{got_m[i], math::float_to_bf16(mf[i])},
                                    std::pair{got_v[i], math::float_to_bf16(vf[i])}}) {
      const bool same_sign = (got ^ want) < 0x8000;
      const int distance = std::abs(static_cast<int>(got) - static_cast<int>(want));
      ASSERT_TRUE(distance == 0 || (same_sign && distance == 1))
          << "element " << i << ": " << got << " vs " << want;
    }
  }
}

// fp8 activation storage (precision fp8 keeps linear inputs so): codes and scales bit for bit
// the CPU's from a strided x, and the dequantised rows bit for bit (code times scale in fp32).
TEST_P(LowPrecisionOnBackend, Fp8RowStorageMatchesTheCpuBackendBitForBit) {
  On dev(*backend_), cpu(*cpu_);
  const int64_t scale_cols = (I + 127) / 128;
  struct Out {
    std::vector<uint8_t> codes;
    std::vector<float> scales, values;
  };
  auto run = [&](On& on) {
    // Tensors have no byte dtype: the codes take whole 32-bit words.
    uint8_t* codes = reinterpret_cast<uint8_t*>(on.up(std::vector<uint32_t>((N * I + 3) / 4)));
    float* scales = on.up(std::vector<float>(N * scale_cols));
    float* values = on.up(std::vector<float>(N * I));
    on.ops().fp8_quantize_rows(codes, scales, on.up(x), ldx, N, I);
    on.ops().fp8_dequantize_rows(values, codes, scales, N, I);
    return Out{on.down(codes, N * I), on.down(scales, N * scale_cols), on.down(values, N * I)};
  };
  const Out got = run(dev), want = run(cpu);
  EXPECT_EQ(got.codes, want.codes);
  EXPECT_EQ(got.scales, want.scales);
  EXPECT_EQ(got.values, want.values);
}

INSTANTIATE_TEST_SUITE_P(Backends, LowPrecisionOnBackend, ::testing::Values("cuda"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// The CPU backend's AdamW with bf16 moments is the fp32 AdamW op on the widened moments, the
// new moments rounded to nearest even (math::float_to_bf16), bit for bit: over several of its
// chunks and a ragged end, with decay and a gradient scale; float only.
TEST(CpuBackendBf16Moments, AreTheFp32UpdateOfTheWidenedMomentsRounded) {
  std::unique_ptr<Backend> cpu = make_backend("cpu");
  EXPECT_TRUE(cpu->capabilities().adamw_bf16_moments);
  const int64_t n = 20011;
  std::vector<float> p = random_floats(n, 21, 1.0), want_p = p;
  const std::vector<float> g = random_floats(n, 22, 0.1);
  std::vector<uint16_t> m(n), v(n);
  std::vector<float> mf(n), vf(n);
  for (int64_t i = 0; i < n; ++i) {  // a state a few steps in
    m[i] = math::float_to_bf16(static_cast<float>(1e-3 * std::sin(i)));
    v[i] = math::float_to_bf16(static_cast<float>(1e-6 * (1.5 + std::cos(i))));
    mf[i] = math::bf16_to_float(m[i]);
    vf[i] = math::bf16_to_float(v[i]);
  }
  AdamWStep hp;
  hp.lr = 3e-3;
  hp.weight_decay = 0.1;
  hp.step = 4;
  cpu->ops<float>().adamw_update_bf16_moments(p.data(), g.data(), m.data(), v.data(), n, hp,
                                              true, 0.5f);
  cpu->ops<float>().adamw_update(want_p.data(), g.data(), mf.data(), vf.data(), n, hp, true,
                                 0.5f);
  EXPECT_EQ(p, want_p);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    wrong += m[i] != math::float_to_bf16(mf[i]) || v[i] != math::float_to_bf16(vf[i]);
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_THROW(cpu->ops<double>().adamw_update_bf16_moments(nullptr, nullptr, nullptr, nullptr,
                                                            0, hp, true, 1.0),
               std::invalid_argument);
}

// The CPU backend's fp8 row storage is the shared quantiser (kernels/fp8_quantize.h, checked
// against a reference written from the format) in 1x128 tiles along the row: same codes and
// scales from a strided x, each value back within e4m3's half ulp (2^-4 relative) of the input
// or of the tile's subnormal step, and float only.
TEST(CpuFp8RowStorage, IsTheSharedQuantiserInRowTiles) {
  std::unique_ptr<Backend> cpu = make_backend("cpu");
  BackendOps<float>& ops = cpu->ops<float>();
  const std::vector<float> x = random_floats(N * ldx, 7, 3.0);
  const int64_t scale_cols = (I + 127) / 128;
  std::vector<uint8_t> codes(N * I), want_codes(N * I);
  std::vector<float> scales(N * scale_cols), want_scales(N * scale_cols), back(N * I);
  ops.fp8_quantize_rows(codes.data(), scales.data(), x.data(), ldx, N, I);
  fp8_quantize(want_codes.data(), want_scales.data(), Fp8Tiling::k1x128, Trans::kNo, x.data(),
               ldx, N, I);
  EXPECT_EQ(codes, want_codes);
  EXPECT_EQ(scales, want_scales);
  ops.fp8_dequantize_rows(back.data(), codes.data(), scales.data(), N, I);
  int64_t wrong = 0;
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t c = 0; c < I; ++c) {
      const double in = x[r * ldx + c], out = back[r * I + c];
      const double scale = scales[r * scale_cols + c / 128];
      // e4m3: 3 mantissa bits (half ulp 2^-4 relative), subnormal step 2^-9 of the scale.
      const double bound = std::max(std::fabs(in) / 16, std::ldexp(scale, -10)) * (1 + 1e-6);
      if (!(std::fabs(out - in) <= bound) && wrong++ < 5) {
        ADD_FAILURE() << "(" << r << ", " << c << "): " << in << " came back " << out;
      }
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_THROW(cpu->ops<double>().fp8_quantize_rows(nullptr, nullptr, nullptr, 1, 0, 0),
               std::invalid_argument);
  EXPECT_THROW(cpu->ops<double>().fp8_dequantize_rows(nullptr, nullptr, nullptr, 0, 0),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
