// safetensors files: fp32 round trip bit for bit, bf16 round-to-nearest-even, fp8 e4m3 decoding,
// and every kind of bad file failing with a message that names the file and the tensor.
#include "trainer/safetensors.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

fs::path TempFile(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "tessera_safetensors";
  fs::create_directories(dir);
  return dir / name;
}

// A file from a literal header and `data_bytes` bytes of data (patterned), for bad inputs.
std::string RawFile(const std::string& name, const std::string& header, size_t data_bytes,
                    int64_t header_len_override = -1) {
  const fs::path path = TempFile(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t len = header_len_override >= 0 ? header_len_override : header.size();
  out.write(reinterpret_cast<const char*>(&len), sizeof(len));
  out << header;
  for (size_t i = 0; i < data_bytes; ++i) out.put(static_cast<char>(i));
  return path.string();
}

// Expects `fn` to throw a std::runtime_error whose message holds every one of `parts`.
template <typename Fn>
void ExpectErrorNaming(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << parts.at(0);
  } catch (const std::runtime_error& e) {
    for (const std::string& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << e.what() << "' does not name '" << p << "'";
    }
  }
}

uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }

TEST(Safetensors, Fp32RoundTripIsBitExactAndKeepsOrderAndMetadata) {
  const std::vector<float> a = {0.0f, -0.0f, 1.0f, -2.5f, 3.14159274f,
                                std::numeric_limits<float>::denorm_min(),
                                std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::infinity()};
  std::vector<float> b(2 * 3 * 5);
  for (size_t i = 0; i < b.size(); ++i) b[i] = std::sin(static_cast<float>(i) * 0.37f) * 1e-3f;
  const std::string path = TempFile("roundtrip.safetensors").string();
  {
    SafetensorsWriter w(path, {{"z.first", "F32", {8}}, {"a.second", "F32", {2, 3, 5}},
                               {"empty", "F32", {0, 4}}},
                        {{"format", "pt"}});
    w.write_floats(a);
    w.write_floats(b);
    w.write_floats(std::vector<float>{});
    w.close();
  }
  SafetensorsReader r(path);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  ASSERT_EQ(r.entries().size(), 3u);
  EXPECT_EQ(r.entries()[0].name, "z.first");  // data in the order written, not sorted
  EXPECT_EQ(r.entries()[1].name, "a.second");
  EXPECT_EQ(r.entries()[1].begin, 32u);
  const std::vector<float> a2 = r.read_floats("z.first", {8});
  const std::vector<float> b2 = r.read_floats("a.second", {2, 3, 5});
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(Bits(a2[i]), Bits(a[i])) << i;
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(Bits(b2[i]), Bits(b[i])) << i;
  EXPECT_TRUE(r.read_floats("empty", {0, 4}).empty());
  // The header is padded to 8 bytes, so the data starts aligned.
  uint64_t header_len = 0;
  std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(&header_len), 8);
  EXPECT_EQ(header_len % 8, 0u);
}

TEST(Safetensors, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly half way between bf16 1.0 and 1 + 2^-7: ties go to the even one (1.0);
  // 1 + 3 * 2^-8 lies half way between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  // Just above half way rounds up, just below down.
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3F807FFFu)), 0x3F80);
  EXPECT_EQ(float_to_bf16(-1.0f), 0xBF80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // overflows to inf
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low bits must not become infinity.
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_EQ(bf16_to_float(0x4049), 3.140625f);

  // Through a file: each value comes back as its rounding.
  const std::vector<float> v = {1.0f + std::ldexp(1.0f, -8), 3.14159274f, -1e-20f, 65504.0f};
  const std::string path = TempFile("bf16.safetensors").string();
  SafetensorsWriter w(path, {{"x", "BF16", {4}}});
  w.write_floats(v);
  w.close();
  SafetensorsReader r(path);
  EXPECT_EQ(r.entry("x").dtype, "BF16");
  EXPECT_EQ(r.entry("x").nbytes(), 8u);
  const std::vector<float> back = r.read_floats("x", {4});
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(back[i], bf16_to_float(float_to_bf16(v[i])));
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], 3.140625f);
}

TEST(Safetensors, Fp8E4m3Decodes) {
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);             // exponent 7 = bias
  EXPECT_EQ(fp8_e4m3_to_float(0xB8), -1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x3C), 1.5f);             // mantissa 4/8
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);           // the largest: 1.75 * 2^8
  EXPECT_EQ(fp8_e4m3_to_float(0x78), 256.0f);           // exponent 15 is finite in e4m3fn
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xFF)));
  // Every other code is finite, and the decoding is odd-symmetric.
  for (int b = 0; b < 128; ++b) {
    if (b == 0x7F) continue;
    EXPECT_TRUE(std::isfinite(fp8_e4m3_to_float(static_cast<uint8_t>(b)))) << b;
    EXPECT_EQ(fp8_e4m3_to_float(static_cast<uint8_t>(b | 0x80)),
              -fp8_e4m3_to_float(static_cast<uint8_t>(b)));
  }
  const std::string path = TempFile("fp8.safetensors").string();
  SafetensorsWriter w(path, {{"q", "F8_E4M3", {2, 2}}});
  const uint8_t codes[4] = {0x38, 0xB8, 0x7E, 0x01};
  w.write_bytes(codes, 4);
  w.close();
  SafetensorsReader r(path);
  EXPECT_EQ(r.read_floats("q", {2, 2}),
            (std::vector<float>{1.0f, -1.0f, 448.0f, std::ldexp(1.0f, -9)}));
}

TEST(Safetensors, ReadingErrorsNameTensorAndFile) {
  const std::string path = TempFile("good.safetensors").string();
  {
    SafetensorsWriter w(path, {{"w", "F32", {2, 3}}, {"h", "F16", {2}}});
    w.write_floats(std::vector<float>(6, 1.0f));
    w.write_bytes("\0\0\0\0", 4);
    w.close();
  }
  SafetensorsReader r(path);
  ExpectErrorNaming([&] { r.read_floats("nope", {1}); }, {path, "'nope'", "missing"});
  ExpectErrorNaming([&] { r.read_floats("w", {3, 2}); }, {path, "'w'", "[2, 3]", "[3, 2]"});
  ExpectErrorNaming([&] { r.read_floats("h", {2}); }, {path, "'h'", "F16", "not supported"});
}

TEST(Safetensors, BadHeadersNameTensorAndFile) {
  const std::string entry_a = R"("a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  // Truncated: the header promises 16 bytes of data, the file holds 12.
  std::string f = RawFile("truncated.safetensors",
                          "{" + entry_a + R"(, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 12);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'b'", "run past", "truncated"});
  // Overlap: b starts inside a.
  f = RawFile("overlap.safetensors",
              "{" + entry_a + R"(, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'b'", "overlap", "'a'"});
  // Gap: bytes 8-12 belong to no tensor.
  f = RawFile("gap.safetensors",
              "{" + entry_a + R"(, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})", 20);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'b'", "not contiguous"});
  // Bytes after the last tensor.
  f = RawFile("trailing.safetensors", "{" + entry_a + "}", 12);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "after the last tensor"});
  // A byte range that does not fit shape x dtype.
  f = RawFile("size.safetensors", R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'a'", "needs 12"});
  // Unknown dtype.
  f = RawFile("dtype.safetensors", R"({"a": {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}})", 8);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'a'", "unknown dtype F12"});
  // Malformed entries.
  f = RawFile("shape.safetensors", R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'a'", "shape"});
  f = RawFile("offsets.safetensors", R"({"a": {"dtype": "F32", "shape": [2]}})", 8);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "'a'", "data_offsets"});
  // Header length larger than the file.
  f = RawFile("long-header.safetensors", "{}", 0, 1000);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "header length 1000", "larger than the file"});
  // Too short to hold even the length.
  {
    const fs::path p = TempFile("tiny.safetensors");
    std::ofstream(p, std::ios::binary) << "abc";
    ExpectErrorNaming([&] { SafetensorsReader{p.string()}; }, {p.string(), "too short"});
  }
  // Not JSON.
  f = RawFile("not-json.safetensors", "{\"a\": ", 0);
  ExpectErrorNaming([&] { SafetensorsReader{f}; }, {f, "not JSON"});
  ExpectErrorNaming([&] { SafetensorsReader{TempFile("absent.safetensors").string()}; },
                    {"absent.safetensors", "cannot open"});
}

TEST(Safetensors, WriterChecksSizesAndCompleteness) {
  const std::string path = TempFile("writer.safetensors").string();
  {
    SafetensorsWriter w(path, {{"a", "F32", {2}}, {"b", "BF16", {3}}});
    ExpectErrorNaming([&] { w.write_floats(std::vector<float>(3, 0.0f)); }, {path, "'a'", "needs 8"});
    w.write_floats(std::vector<float>(2, 0.0f));
    ExpectErrorNaming([&] { w.close(); }, {path, "'b'", "never written"});
  }
  ExpectErrorNaming([&] { SafetensorsWriter(path, {{"a", "F32", {1}}, {"a", "F32", {1}}}); },
                    {path, "'a'", "twice"});
}

}  // namespace
}  // namespace tessera::trainer
