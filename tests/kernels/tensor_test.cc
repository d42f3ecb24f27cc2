#include "kernels/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>

namespace tessera::kernels {
namespace {

TEST(Tensor, EmptyIsAlignedAndZerosIsZero) {
  Tensor e = Tensor::empty({3, 5}, DType::kF32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e.data<float>()) % 64, 0u);
  EXPECT_EQ(e.numel(), 15);
  EXPECT_EQ(e.nbytes(), 60u);
  EXPECT_EQ(e.dim(-1), 5);
  Tensor z = Tensor::zeros({7}, DType::kF64);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(z.data<double>()[i], 0.0);
  EXPECT_TRUE(Tensor::empty({0}, DType::kI32).defined());
  EXPECT_FALSE(Tensor().defined());
}

TEST(Tensor, ViewsShareStorageAtOffset) {
  Tensor t = Tensor::zeros({12}, DType::kI64);
  Tensor v = t.view(4, {2, 3});
  EXPECT_EQ(v.shape(), (Shape{2, 3}));
  v.data<int64_t>()[0] = 42;
  EXPECT_EQ(t.data<int64_t>()[4], 42);
  Tensor vv = v.view(5, {1});  // a view of a view adds offsets
  vv.data<int64_t>()[0] = 7;
  EXPECT_EQ(t.data<int64_t>()[9], 7);
  Tensor r = t.reshape({3, 4});
  EXPECT_EQ(r.data<int64_t>()[9], 7);
  t.data<int64_t>()[3] = 5;
  t.data<int64_t>()[10] = 6;
  v.fill_zero();  // elements 4..9 only
  EXPECT_EQ(t.data<int64_t>()[4], 0);
  EXPECT_EQ(t.data<int64_t>()[9], 0);
  EXPECT_EQ(t.data<int64_t>()[3], 5);
  EXPECT_EQ(t.data<int64_t>()[10], 6);
}

TEST(Tensor, ChecksBoundsAndDtype) {
  Tensor t = Tensor::zeros({4, 4}, DType::kF32);
  EXPECT_THROW(t.view(10, {7}), std::out_of_range);
  EXPECT_THROW(t.view(-1, {1}), std::out_of_range);
  EXPECT_THROW(t.view(4, {2, 2}).view(1, {4}), std::out_of_range);
  EXPECT_THROW(t.data<double>(), std::logic_error);
  EXPECT_THROW(Tensor::empty({2, -1}, DType::kF32), std::invalid_argument);
  EXPECT_THROW(Tensor::empty({2}, DType::kF32, Device::kCUDA), std::runtime_error);
}

TEST(Tensor, Names) {
  EXPECT_EQ(shape_string({2, 3}), "[2, 3]");
  EXPECT_EQ(shape_string({}), "[]");
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(dtype_size(DType::kU16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
  EXPECT_STREQ(dtype_name(DType::kF32), "f32");
  EXPECT_EQ(dtype_of<uint32_t>(), DType::kU32);
}

}  // namespace
}  // namespace tessera::kernels
