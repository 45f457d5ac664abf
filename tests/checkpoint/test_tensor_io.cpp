// torch tensors <-> safetensors: every torch dtype, scalars, zero-size, non-contiguous views,
// ownership of loaded tensors, dtype errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "checkpoint/test_util.h"
#include "engine/checkpoint/tensor_io.h"

using namespace fathom::ckpt;
using fathom::test::TempDir;

namespace {

// Bitwise equality (NaN-safe, distinguishes -0.0), plus dtype and shape.
void expect_same(const torch::Tensor& a, const torch::Tensor& b, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(a.scalar_type(), b.scalar_type());
  ASSERT_EQ(a.sizes(), b.sizes());
  const torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  ASSERT_EQ(ac.numel(), bc.numel());
  if (ac.numel() == 0) return;
  EXPECT_EQ(std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()), 0);
}

torch::Tensor sample(c10::ScalarType type, std::vector<int64_t> shape) {
  auto opts = torch::TensorOptions().dtype(type);
  if (type == torch::kBool) return torch::randint(0, 2, shape, torch::kInt64).to(torch::kBool);
  if (type == torch::kUInt8) return torch::randint(0, 256, shape, torch::kInt64).to(opts);
  if (c10::isIntegralType(type, false)) return torch::randint(-1000, 1000, shape, torch::kInt64).to(opts);
  return torch::randn(shape, torch::kFloat64).mul(100).to(opts);
}

}  // namespace

TEST(TensorIo, RoundTripsEveryTorchDtypeScalarAndZeroSize) {
  TempDir dir;
  torch::manual_seed(0);
  const c10::ScalarType types[] = {torch::kBool,  torch::kUInt8,    torch::kInt8,    torch::kInt16,  torch::kInt32,
                                   torch::kInt64, torch::kFloat16, torch::kBFloat16, torch::kFloat32, torch::kFloat64};
  NamedTensors in;
  for (auto type : types) {
    const std::string n = c10::toString(type);
    in.emplace_back("w." + n, sample(type, {3, 5}));
    in.emplace_back("scalar." + n, sample(type, {}));
    in.emplace_back("empty." + n, sample(type, {0, 4}));
  }
  // Special float values survive bit for bit.
  in.emplace_back("specials", torch::tensor({0.f, -0.f, std::numeric_limits<float>::infinity(),
                                             std::numeric_limits<float>::quiet_NaN(), 1e-45f}));
  save_tensors(dir / "t.safetensors", in, {{"format", "pt"}});

  const auto out = load_tensors_map(dir / "t.safetensors");
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    expect_same(t, out.at(name), name);
    EXPECT_TRUE(out.at(name).is_contiguous());
  }
  EXPECT_EQ(out.at("scalar.Float").dim(), 0);
  EXPECT_EQ(out.at("empty.Half").numel(), 0);
  // The safetensors dtype names are the spec's.
  SafetensorsFile f(dir / "t.safetensors");
  EXPECT_EQ(f.info("w.BFloat16").dtype, DType::DTYPE_BF16);
  EXPECT_EQ(f.info("w.Bool").dtype, DType::DTYPE_BOOL);
  EXPECT_EQ(f.info("w.Char").dtype, DType::DTYPE_I8);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(TensorIo, SavesViewsAsTheirOwnValuesOnly) {
  TempDir dir;
  const torch::Tensor base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  const torch::Tensor transposed = base.t();                       // non-contiguous
  const torch::Tensor sliced = base.index({torch::indexing::Slice(1, 3)});  // offset into storage
  const torch::Tensor strided = base.index({torch::indexing::Slice(), torch::indexing::Slice(0, 6, 2)});
  save_tensors(dir / "v.safetensors", {{"t", transposed}, {"s", sliced}, {"st", strided}});
  SafetensorsFile f(dir / "v.safetensors");
  EXPECT_EQ(f.data("s").size, 2u * 6 * 4);  // only the view, not the whole storage
  const auto out = load_tensors_map(dir / "v.safetensors");
  EXPECT_TRUE(torch::equal(out.at("t"), transposed));
  EXPECT_TRUE(torch::equal(out.at("s"), sliced));
  EXPECT_TRUE(torch::equal(out.at("st"), strided));
}

TEST(TensorIo, LoadedTensorsOwnTheirMemory) {
  TempDir dir;
  const torch::Tensor w = torch::randn({64, 64});
  save_tensors(dir / "a.safetensors", {{"w", w}});
  NamedTensors loaded = load_tensors(dir / "a.safetensors");
  // Overwrite then delete the file: a tensor still pointing into the map would change or fault.
  save_tensors(dir / "a.safetensors", {{"w", torch::zeros({64, 64})}});
  fathom::test::remove_file(dir / "a.safetensors");
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(torch::equal(loaded[0].second, w));
  loaded[0].second.add_(1);  // writable
  EXPECT_TRUE(torch::allclose(loaded[0].second, w + 1));
}

TEST(TensorIo, ClearErrorsForWhatCannotBeStoredOrLoaded) {
  TempDir dir;
  auto expect_msg = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "succeeded; expected '" << needle << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { save_tensors(dir / "c.safetensors", {{"z", torch::zeros({2}, torch::kComplexFloat)}}); },
             "tensor 'z': torch dtype ComplexFloat has no safetensors equivalent");
  expect_msg([&] { save_tensors(dir / "u.safetensors", {{"u", torch::Tensor()}}); }, "'u' is undefined");
  expect_msg([&] { save_tensors(dir / "s.safetensors", {{"sp", torch::eye(3).to_sparse()}}); }, ".to_dense()");
  expect_msg([&] { save_tensors(dir / "d.safetensors", {{"a", torch::zeros({1})}, {"a", torch::ones({1})}}); },
             "added twice");

  // A BOOL byte other than 0/1 is refused rather than handed to torch.
  const uint8_t bad_bool[2] = {1, 7};
  SafetensorsWriter w;
  w.add("b", DType::DTYPE_BOOL, {2}, bad_bool, 2);
  w.write(dir / "b.safetensors");
  expect_msg([&] { load_tensors(dir / "b.safetensors"); }, "booleans must be 0 or 1");

  // Unsigned and float8 types need a newer LibTorch; the error says which.
  for (DType d : all_dtypes()) {
    if (torch_supports(d)) {
      EXPECT_EQ(dtype_from_torch(torch_from_dtype(d)), d);
      continue;
    }
    const uint8_t bytes[8] = {};
    SafetensorsWriter u;
    u.add("x", d, {1}, bytes, dtype_size(d));
    u.write(dir / "x.safetensors");
    expect_msg([&] { load_tensors(dir / "x.safetensors"); }, std::string("dtype ") + dtype_name(d) + " has no tensor type");
  }
}

// Every safetensors dtype this LibTorch has (10 on 1.13; all 15 on >= 2.3, incl. float8 and
// uint16/32/64) maps both ways and round-trips bit for bit.
TEST(TensorIo, EverySupportedSafetensorsDtypeRoundTrips) {
  TempDir dir;
  NamedTensors in;
  std::vector<DType> dtypes;
  for (DType d : all_dtypes()) {
    if (!torch_supports(d)) continue;
    dtypes.push_back(d);
    torch::Tensor raw = torch::randint(0, 256, {static_cast<int64_t>(4 * 3 * dtype_size(d))}, torch::kUInt8);
    if (d == DType::DTYPE_BOOL) raw = raw.remainder(2);
    in.emplace_back(dtype_name(d), raw.view(torch_from_dtype(d)).reshape({4, 3}));
  }
  EXPECT_GE(dtypes.size(), 10u);
  save_tensors(dir / "d.safetensors", in);
  SafetensorsFile f(dir / "d.safetensors");
  for (DType d : dtypes) EXPECT_EQ(f.info(dtype_name(d)).dtype, d) << dtype_name(d);
  const auto out = load_tensors_map(dir / "d.safetensors");
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    expect_same(t, out.at(name), name);
  }
}

TEST(TensorIo, CudaTensorsAreStagedToHostOneByOne) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  const torch::Tensor a = torch::randn({128, 64}, cuda);
  const torch::Tensor b = torch::randn({64, 32}, cuda.dtype(torch::kBFloat16)).t();  // non-contiguous
  const torch::Tensor c = torch::randint(0, 100, {7}, cuda.dtype(torch::kInt64));
  save_tensors(dir / "g.safetensors", {{"a", a}, {"b", b}, {"c", c}});
  const auto out = load_tensors_map(dir / "g.safetensors");
  EXPECT_TRUE(out.at("a").is_cpu());
  expect_same(a.cpu(), out.at("a"), "a");
  expect_same(b.cpu(), out.at("b"), "b");
  expect_same(c.cpu(), out.at("c"), "c");
}
