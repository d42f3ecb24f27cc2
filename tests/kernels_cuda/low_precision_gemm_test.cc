// The CUDA backend's bf16/fp8 GEMM pieces against the CPU's (one numerics contract, two devices):
//   fp8_quantize   codes and scales bit for bit, both tilings, both orientations, ragged tiles;
//   fp8_gemm       bit for bit with kernels::fp8_gemm (same promotion order, exact products);
//   encode_bf16_2d bit for bit with math::float_to_bf16 of op(x);
//   LowPrecisionGemm  fp8: bit for bit with the reference on CPU-quantised op(a), op(b); bf16:
//                  within fp32 summation error of kernels::bf16_gemm (cuBLAS's order is its own);
//   adamw_update_bf16_moments  against widen / kernels::adamw_update / round on the host.
// Shapes are not multiples of 16, K not a multiple of 128.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/fp8_gemm.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/low_precision.h"
#include "kernels/cuda/low_precision_gemm.h"
#include "kernels/fp8_quantize.h"
#include "kernels/math/low_precision.h"
#include "kernels/quantized_gemm.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

struct Fp8 {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

// op(x) [rows, cols] quantised on the host; x stored with row stride ld.
Fp8 host_quantise(const std::vector<float>& x, Fp8Tiling tiling, Trans trans, int64_t ld,
                  int64_t rows, int64_t cols) {
  Fp8 q{std::vector<uint8_t>(rows * cols),
        std::vector<float>(fp8_scale_rows(tiling, rows) * fp8_scale_cols(cols))};
  fp8_quantize(q.codes.data(), q.scales.data(), tiling, trans, x.data(), ld, rows, cols);
  return q;
}

// op(x) packed [rows, cols].
std::vector<float> packed(const std::vector<float>& x, Trans trans, int64_t ld, int64_t rows,
                          int64_t cols) {
  std::vector<float> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = trans == Trans::kNo ? x[r * ld + c] : x[c * ld + r];
    }
  }
  return out;
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want,
                    const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]) && wrong++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: device " << got[i] << ", host " << want[i];
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

TEST(Fp8QuantizeCuda, CodesAndScalesEqualTheCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const int64_t rows = 200, cols = 300;  // ragged tiles both ways
  for (Fp8Tiling tiling : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
    for (Trans trans : {Trans::kNo, Trans::kYes}) {
      SCOPED_TRACE(::testing::Message() << "tiling " << static_cast<int>(tiling) << " trans "
                                        << static_cast<int>(trans));
      const int64_t ld = (trans == Trans::kNo ? cols : rows) + 5;
      const int64_t stored_rows = trans == Trans::kNo ? rows : cols;
      std::vector<float> x = random_as<float>(stored_rows * ld, 7, -3.0, 3.0);
      for (int64_t i = 0; i < 128; ++i) x[i] = 0.0f;  // a tile under the amax floor
      x[ld + 1] = std::nanf("");                      // NaN stays out of the amax
      x[2 * ld + 2] = 1e4f;                           // one large value in a tile
      const Fp8 want = host_quantise(x, tiling, trans, ld, rows, cols);
      DeviceBuffer<float> dx(x);
      DeviceBuffer<uint8_t> codes(rows * cols);
      DeviceBuffer<float> scales(static_cast<int64_t>(want.scales.size()));
      cuda::fp8_quantize(codes.data(), scales.data(), tiling, trans, dx.data(), ld, rows, cols);
      EXPECT_EQ(fetch(codes), want.codes);
      expect_bitwise(fetch(scales), want.scales, "scales");
    }
  }
}

TEST(Fp8QuantizeCuda, RejectsBadSizesBeforeLaunching) {
  EXPECT_THROW(
      cuda::fp8_quantize(nullptr, nullptr, Fp8Tiling::k1x128, Trans::kNo, nullptr, 4, -1, 4),
      std::invalid_argument);
  EXPECT_THROW(  // ldx 3 < 4 columns
      cuda::fp8_quantize(nullptr, nullptr, Fp8Tiling::k1x128, Trans::kNo, nullptr, 3, 2, 4),
      std::invalid_argument);
}

// D = A·Bᵀ from host-quantised operands: beta 0 is the reference bit for bit; beta 1 adds the
// old D once (one fp32 rounding, as acc + d on the host).
TEST(Fp8GemmCuda, EqualsTheCpuReferenceBitForBit) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const int64_t m = 37, n = 150, ldd = n + 3;
  for (int64_t k : {int64_t{300}, int64_t{128}, int64_t{5}, int64_t{0}}) {
    for (Fp8Tiling b_tiling : {Fp8Tiling::k128x128, Fp8Tiling::k1x128}) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " b tiling "
                                      << static_cast<int>(b_tiling));
      const Fp8 a = host_quantise(random_as<float>(m * k, 11, -2.0, 2.0), Fp8Tiling::k1x128,
                                  Trans::kNo, std::max<int64_t>(k, 1), m, k);
      const Fp8 b = host_quantise(random_as<float>(n * k, 12, -0.1, 0.1), b_tiling, Trans::kNo,
                                  std::max<int64_t>(k, 1), n, k);
      std::vector<float> want(m * n);
      fp8_gemm(want.data(), a.codes.data(), a.scales.data(), Fp8Tiling::k1x128, b.codes.data(),
               b.scales.data(), b_tiling, m, n, k);
      DeviceBuffer<uint8_t> da(a.codes), db(b.codes);
      DeviceBuffer<float> dsa(a.scales), dsb(b.scales);
      const std::vector<float> d0 = random_as<float>(m * ldd, 13);
      for (float beta : {0.0f, 1.0f}) {
        DeviceBuffer<float> dd(d0);
        cuda::fp8_gemm(dd.data(), ldd, da.data(), dsa.data(), Fp8Tiling::k1x128, db.data(),
                       dsb.data(), b_tiling, m, n, k, beta);
        const std::vector<float> got_all = fetch(dd);
        std::vector<float> got(m * n), expect(m * n);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            got[i * n + j] = got_all[i * ldd + j];
            expect[i * n + j] = beta == 0.0f ? want[i * n + j] : want[i * n + j] + d0[i * ldd + j];
          }
        }
        expect_bitwise(got, expect, beta == 0.0f ? "D = A·Bᵀ" : "D += A·Bᵀ");
        for (int64_t i = 0; i < m; ++i) {  // the padding between rows is not touched
          EXPECT_EQ(got_all[i * ldd + n], d0[i * ldd + n]);
        }
      }
    }
  }
}

TEST(Fp8GemmCuda, RejectsBadArgumentsBeforeLaunching) {
  EXPECT_THROW(cuda::fp8_gemm(nullptr, 4, nullptr, nullptr, Fp8Tiling::k1x128, nullptr, nullptr,
                              Fp8Tiling::k1x128, 2, 4, 8, 0.5f),
               std::invalid_argument);
  EXPECT_THROW(cuda::fp8_gemm(nullptr, 3, nullptr, nullptr, Fp8Tiling::k1x128, nullptr, nullptr,
                              Fp8Tiling::k1x128, 2, 4, 8, 0.0f),
               std::invalid_argument);
}

TEST(LowPrecisionCuda, EncodeBf16TwoDEqualsHost) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const int64_t rows = 37, cols = 45;
  for (Trans trans : {Trans::kNo, Trans::kYes}) {
    const int64_t ld = (trans == Trans::kNo ? cols : rows) + 2;
    const std::vector<float> x =
        random_as<float>((trans == Trans::kNo ? rows : cols) * ld, 21, -1e3, 1e3);
    const std::vector<float> p = packed(x, trans, ld, rows, cols);
    std::vector<uint16_t> want(p.size());
    for (size_t i = 0; i < p.size(); ++i) want[i] = math::float_to_bf16(p[i]);
    DeviceBuffer<float> dx(x);
    DeviceBuffer<uint16_t> out(rows * cols);
    cuda::encode_bf16_2d(out.data(), trans, dx.data(), ld, rows, cols);
    EXPECT_EQ(fetch(out), want) << "trans " << static_cast<int>(trans);
  }
}

// The three GEMM shapes of a linear map (forward, dgrad, wgrad orientations), through
// LowPrecisionGemm, against the CPU references on the same op(a), op(b).
struct Orientation {
  Trans trans_a, trans_b;
  Fp8Tiling tiling_a, tiling_b;
};
constexpr Orientation kOrientations[] = {
    {Trans::kNo, Trans::kNo, Fp8Tiling::k1x128, Fp8Tiling::k128x128},   // forward
    {Trans::kNo, Trans::kYes, Fp8Tiling::k1x128, Fp8Tiling::k128x128},  // dgrad
    {Trans::kYes, Trans::kYes, Fp8Tiling::k1x128, Fp8Tiling::k1x128},   // wgrad
};

TEST(LowPrecisionGemmCuda, MatchesTheCpuReferences) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const int64_t m = 45, n = 150, k = 300;
  cuda::CublasHandle handle;
  cuda::LowPrecisionGemm lp(handle.get());
  for (const Orientation& o : kOrientations) {
    SCOPED_TRACE(::testing::Message() << "trans_a " << static_cast<int>(o.trans_a) << " trans_b "
                                      << static_cast<int>(o.trans_b));
    const int64_t lda = (o.trans_a == Trans::kNo ? k : m) + 3;
    const int64_t ldb = (o.trans_b == Trans::kNo ? k : n) + 1;
    const std::vector<float> a =
        random_as<float>((o.trans_a == Trans::kNo ? m : k) * lda, 31, -2.0, 2.0);
    const std::vector<float> b =
        random_as<float>((o.trans_b == Trans::kNo ? n : k) * ldb, 32, -0.1, 0.1);
    DeviceBuffer<float> da(a), db(b), dc(m * n);

    // fp8: the reference GEMM on the host-quantised operands, bit for bit.
    const Fp8 qa = host_quantise(a, o.tiling_a, o.trans_a, lda, m, k);
    const Fp8 qb = host_quantise(b, o.tiling_b, o.trans_b, ldb, n, k);
    std::vector<float> want(m * n);
    fp8_gemm(want.data(), qa.codes.data(), qa.scales.data(), o.tiling_a, qb.codes.data(),
             qb.scales.data(), o.tiling_b, m, n, k);
    lp.run(Precision::kFP8, m, n, k, da.data(), lda, o.trans_a, o.tiling_a, db.data(), ldb,
           o.trans_b, o.tiling_b, 0.0f, dc.data(), n);
    expect_bitwise(fetch(dc), want, "fp8");

    // bf16: products of bf16 values are exact in fp32; the sums differ by order only, each
    // within k * 2^-23 * sum |a b| (truncating accumulators included).
    const std::vector<float> pa = packed(a, o.trans_a, lda, m, k);
    const std::vector<float> pb = packed(b, o.trans_b, ldb, n, k);
    bf16_gemm(want.data(), pa.data(), k, pb.data(), k, m, n, k);
    lp.run(Precision::kBF16, m, n, k, da.data(), lda, o.trans_a, o.tiling_a, db.data(), ldb,
           o.trans_b, o.tiling_b, 0.0f, dc.data(), n);
    const std::vector<float> got = fetch(dc);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double magnitude = 0;
        for (int64_t kk = 0; kk < k; ++kk) {
          magnitude += std::fabs(double{math::round_to_bf16(pa[i * k + kk])} *
                                 math::round_to_bf16(pb[j * k + kk]));
        }
        const double bound = 2.0 * k * std::ldexp(magnitude, -23);
        ASSERT_LE(std::fabs(double{got[i * n + j]} - want[i * n + j]), bound)
            << "bf16 (" << i << ", " << j << ")";
      }
    }
  }
}

TEST(LowPrecisionGemmCuda, RejectsFp32AndBadBeta) {
  TESSERA_SKIP_WITHOUT_CUDA();  // a cuBLAS handle needs a device
  cuda::CublasHandle handle;
  cuda::LowPrecisionGemm lp(handle.get());
  EXPECT_THROW(lp.run(Precision::kF32, 2, 2, 2, nullptr, 2, Trans::kNo, Fp8Tiling::k1x128,
                      nullptr, 2, Trans::kNo, Fp8Tiling::k1x128, 0.0f, nullptr, 2),
               std::invalid_argument);
  EXPECT_THROW(lp.run(Precision::kBF16, 2, 2, 2, nullptr, 2, Trans::kNo, Fp8Tiling::k1x128,
                      nullptr, 2, Trans::kNo, Fp8Tiling::k1x128, 0.5f, nullptr, 2),
               std::invalid_argument);
}

// bf16 moments: each step starts both devices from the same state. The moments are rounded
// from fp32 values that may differ in the last fp32 bit (fused multiply-adds differ between the
// host compiler and nvcc), which moves a bf16 rounding only when it lands on a boundary: within
// one bf16 ulp, and almost always equal. Parameters are fp32, within the usual device tolerance.
TEST(CudaAdamW, Bf16MomentsMatchTheHostConversion) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const int64_t n = 5003;
  std::vector<float> p = random_as<float>(n, 51);
  std::vector<uint16_t> m(n, 0), v(n, 0);
  AdamWStep hp;
  hp.lr = 3e-3;
  hp.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    hp.step = step;
    const bool decay = step != 2;
    const float grad_scale = step == 3 ? 0.5f : 1.0f;
    const std::vector<float> g = random_as<float>(n, 51 + step, -0.1, 0.1);
    DeviceBuffer<float> dp(p), dg(g);
    DeviceBuffer<uint16_t> dm(m), dv(v);
    cuda::adamw_update_bf16_moments(dp.data(), dg.data(), dm.data(), dv.data(), n, hp, decay,
                                    grad_scale);
    std::vector<float> mf(n), vf(n);
    for (int64_t i = 0; i < n; ++i) {
      mf[i] = math::bf16_to_float(m[i]);
      vf[i] = math::bf16_to_float(v[i]);
    }
    adamw_update(p.data(), g.data(), mf.data(), vf.data(), n, hp, decay, grad_scale);
    for (int64_t i = 0; i < n; ++i) {
      m[i] = math::float_to_bf16(mf[i]);
      v[i] = math::float_to_bf16(vf[i]);
    }
    EXPECT_LE(rel_error(fetch(dp), p), kDeviceTolerance<float>) << "step " << step;
    for (const auto& [got, want] : {std::pair{fetch(dm), m}, std::pair{fetch(dv), v}}) {
      int64_t off_by_one = 0;
      for (int64_t i = 0; i < n; ++i) {
        const bool same_sign = (got[i] ^ want[i]) < 0x8000u;
        const int distance = std::abs(static_cast<int>(got[i]) - static_cast<int>(want[i]));
        ASSERT_TRUE(distance == 0 || (same_sign && distance == 1))
            << "step " << step << " element " << i << ": " << got[i] << " vs " << want[i];
        off_by_one += distance;
      }
      EXPECT_LE(off_by_one, n / 100) << "step " << step;
    }
    m = fetch(dm);  // continue from the device's state
    v = fetch(dv);
    p = fetch(dp);
  }
}

TEST(CudaAdamW, Bf16MomentsRejectStepZeroBeforeLaunching) {
  AdamWStep hp;
  hp.step = 0;
  EXPECT_THROW(cuda::adamw_update_bf16_moments(nullptr, nullptr, nullptr, nullptr, 8, hp, true),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
