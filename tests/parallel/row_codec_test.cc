// The expert exchanges' wire formats (parallel/row_codec.h) and the packed dispatch/combine
// (parallel/expert_dispatch.h): fp8 rows decode to exactly the locally quantised values (e4m3 of
// x / s with s the recipe's scale rounded up to a power of two, per 1x128 tile), bf16 rows to
// the nearest-even bf16; re-encoding is lossless; over the fake communicator a packed dispatch
// delivers exactly the decoded rows the float dispatch of locally round-tripped rows would, and
// the bytes the communicator posts are the claimed row_bytes (fp8 rows + scales: a quarter of
// fp32 plus 4 bytes per 128 values).
#include "parallel/row_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/math/low_precision.h"
#include "parallel/expert_dispatch.h"
#include "parallel/fake_comm.h"
#include "parallel/trace_recorder.h"
#include "tests/parallel/expert_dispatch_checks.h"

namespace tessera::parallel {
namespace {

// Deterministic values spanning many binades; some tiles all zero, some below the amax floor.
std::vector<float> Rows(int64_t rows, int64_t width, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(rows * width));
  uint64_t h = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < width; ++i) {
      h ^= h >> 31;
      h *= 0xD6E8FEB86659FD93ull;
      h ^= h >> 29;
      const double u = static_cast<double>(h >> 11) / 9007199254740992.0;  // [0, 1)
      const int tile = static_cast<int>(i / 128);
      double x = (u - 0.5) * std::ldexp(1.0, static_cast<int>((h >> 3) % 9) - 4);
      if (r % 5 == 1 && tile == 0) x = 0;         // an all-zero tile
      if (r % 5 == 2 && tile == 1) x *= 1e-7;     // below the 1e-4 amax floor
      if (r % 5 == 3) x *= 3e4;                   // large values
      v[r * width + i] = static_cast<float>(x);
    }
  }
  return v;
}

// The reference written from the recipe's words, in double where it can be: scale =
// 2^ceil(log2(max(amax, 1e-4) / 448)), value = e4m3(x / scale) * scale.
std::vector<float> Fp8Reference(const std::vector<float>& x, int64_t rows, int64_t width) {
  std::vector<float> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t0 = 0; t0 < width; t0 += 128) {
      const int64_t t1 = std::min<int64_t>(t0 + 128, width);
      double amax = 0;
      for (int64_t i = t0; i < t1; ++i) amax = std::max(amax, std::abs(double{x[r * width + i]}));
      const double scale = std::exp2(std::ceil(std::log2(std::max(amax, 1e-4) / 448.0)));
      for (int64_t i = t0; i < t1; ++i) {
        const float q = kernels::math::round_to_e4m3(static_cast<float>(x[r * width + i] / scale));
        out[r * width + i] = static_cast<float>(q * scale);
      }
    }
  }
  return out;
}

TEST(RowCodecTest, WordsAndBytes) {
  EXPECT_EQ(row_bytes(RowFormat::kFp32, 7168), 4 * 7168);
  EXPECT_EQ(row_bytes(RowFormat::kBf16, 7168), 2 * 7168);
  EXPECT_EQ(row_bytes(RowFormat::kFp8, 7168), 7168 + 4 * 56);  // codes + 56 fp32 scales
  EXPECT_EQ(row_words(RowFormat::kBf16, 33), 17);
  EXPECT_EQ(row_words(RowFormat::kFp8, 32), 8 + 1);
  EXPECT_EQ(row_words(RowFormat::kFp8, 129), 33 + 2);
  // At V3's width an fp8 row is 25.8% of fp32, 51.6% of bf16.
  EXPECT_NEAR(double(row_bytes(RowFormat::kFp8, 7168)) / row_bytes(RowFormat::kBf16, 7168), 0.516,
              1e-3);
}

TEST(RowCodecTest, PowerOfTwoScale) {
  EXPECT_EQ(fp8_pow2_scale(448.0f), 1.0f);
  EXPECT_EQ(fp8_pow2_scale(449.0f), 2.0f);
  EXPECT_EQ(fp8_pow2_scale(300.0f), 1.0f);
  EXPECT_EQ(fp8_pow2_scale(224.0f), 0.5f);
  EXPECT_EQ(fp8_pow2_scale(0.0f), std::ldexp(1.0f, -22));  // 1e-4 / 448 = 2.2e-7 -> 2^-22
}

TEST(RowCodecTest, Fp8RowsDecodeToTheLocallyQuantisedValues) {
  for (const int64_t width : {32, 128, 300}) {
    const int64_t rows = 10;
    const std::vector<float> x = Rows(rows, width, 5 + width);
    std::vector<uint32_t> packed(static_cast<size_t>(rows * row_words(RowFormat::kFp8, width)));
    encode_rows(RowFormat::kFp8, x.data(), rows, width, packed.data());
    std::vector<float> got(x.size());
    decode_rows(RowFormat::kFp8, packed.data(), rows, width, got.data());
    const std::vector<float> want = Fp8Reference(x, rows, width);
    int64_t changed = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "width " << width << " element " << i << " x " << x[i];
      changed += got[i] != x[i];
    }
    EXPECT_GT(changed, static_cast<int64_t>(x.size()) / 2);  // it did round
    // round_trip_rows is the same thing in place; re-encoding decoded rows is lossless.
    std::vector<float> rt = x;
    round_trip_rows(RowFormat::kFp8, rt.data(), rows, width);
    EXPECT_EQ(rt, got);
    std::vector<uint32_t> again(packed.size());
    encode_rows(RowFormat::kFp8, got.data(), rows, width, again.data());
    std::vector<float> twice(x.size());
    decode_rows(RowFormat::kFp8, again.data(), rows, width, twice.data());
    EXPECT_EQ(twice, got) << "width " << width;
  }
}

TEST(RowCodecTest, Bf16RowsRoundToNearestEven) {
  const int64_t rows = 4, width = 33;
  const std::vector<float> x = Rows(rows, width, 9);
  std::vector<float> rt = x;
  round_trip_rows(RowFormat::kBf16, rt.data(), rows, width);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(rt[i], kernels::math::round_to_bf16(x[i])) << i;
  }
}

// Over `p` fake ranks: each rank's routed rows (expert-major) go out packed in `format`; what
// arrives, decoded, equals the float dispatch of the rows round-tripped locally, bit for bit;
// then the decoded rows come back packed (combine) and equal their local round trip. The
// all_to_all_v bytes the communicator posted are total rows x row_bytes.
void CheckPackedExchange(int p, RowFormat format, int64_t width) {
  const int64_t E = 2 * p;
  std::mutex mu;
  std::string failures;
  run_fake_ranks(p, [&](Comm& ep) {
    auto fail = [&](const std::string& what) {
      std::lock_guard<std::mutex> lock(mu);
      failures += "rank " + std::to_string(ep.rank()) + ": " + what + "\n";
    };
    const std::vector<int64_t> counts =
        testing::route_counts(testing::RoutePattern::kMixed, 11, ep.rank(), p, E);
    const DispatchPlan plan = plan_dispatch(ep, counts, E);
    const int64_t S = plan.total_send_rows(), R = plan.total_recv_rows();
    const std::vector<float> x = Rows(S, width, 100 + ep.rank());
    // Expected: the float dispatch of the locally round-tripped rows.
    std::vector<float> rt = x, want(static_cast<size_t>(R * width));
    round_trip_rows(format, rt.data(), S, width);
    dispatch(ep, plan, rt, want, width).wait();
    // The packed dispatch, traced.
    auto trace = std::make_shared<TraceRecorder>();
    trace->set_enabled(true);
    ep.set_trace(trace);
    const int64_t words = row_words(format, width);
    std::vector<uint32_t> send(static_cast<size_t>(S * words)), recv(static_cast<size_t>(R * words));
    encode_rows(format, x.data(), S, width, send.data());
    dispatch_packed(ep, plan, send, recv, words).wait();
    std::vector<float> got(static_cast<size_t>(R * width));
    decode_rows(format, recv.data(), R, width, got.data());
    if (got != want) fail("dispatched rows differ from the locally round-tripped ones");
    // Back again (combine), the decoded rows: their round trip is themselves for fp8.
    std::vector<uint32_t> back_send(static_cast<size_t>(R * words)),
        back_recv(static_cast<size_t>(S * words));
    encode_rows(format, got.data(), R, width, back_send.data());
    combine_packed(ep, plan, back_send, back_recv, words).wait();
    std::vector<float> back(static_cast<size_t>(S * width));
    decode_rows(format, back_recv.data(), S, width, back.data());
    if (back != rt) fail("combined rows differ from the round-tripped originals");
    ep.set_trace(nullptr);
    int64_t sent = 0, received = 0;
    int events = 0;
    for (const TraceEvent& e : trace->events()) {
      if (e.name != "all_to_all_v") continue;
      ++events;
      for (const auto& [k, v] : e.args) {
        if (k == "bytes") sent += v;
        if (k == "recv_bytes") received += v;
      }
    }
    if (events != 2) fail(std::to_string(events) + " all_to_all_v traced, expected 2");
    const int64_t want_bytes = (S + R) * row_bytes(format, width);
    if (sent != want_bytes || received != want_bytes) {
      fail("posted " + std::to_string(sent) + " / received " + std::to_string(received) +
           " bytes, expected " + std::to_string(want_bytes));
    }
  });
  EXPECT_EQ(failures, "") << row_format_name(format) << " on " << p << " ranks, width " << width;
}

TEST(RowCodecTest, PackedFp8DispatchDeliversTheDecodedRows) {
  CheckPackedExchange(2, RowFormat::kFp8, 256);
  CheckPackedExchange(2, RowFormat::kFp8, 40);
  CheckPackedExchange(3, RowFormat::kFp8, 130);
}

TEST(RowCodecTest, PackedBf16DispatchDeliversTheDecodedRows) {
  CheckPackedExchange(2, RowFormat::kBf16, 256);
  CheckPackedExchange(3, RowFormat::kBf16, 33);
}

TEST(RowCodecTest, PackedDispatchChecksItsBuffers) {
  run_fake_ranks(1, [&](Comm& ep) {
    const DispatchPlan plan = plan_dispatch(ep, std::vector<int64_t>{2, 1}, 2);
    std::vector<uint32_t> send(3 * 9 - 1), recv(3 * 9);
    EXPECT_THROW(dispatch_packed(ep, plan, send, recv, 9), std::invalid_argument);
  });
}

}  // namespace
}  // namespace tessera::parallel
