// GPU smoke test: a bf16 matmul and a bf16 forward of the engine's transformer on CUDA agree with
// fp32 on the CPU. Skipped (exit 77) where no CUDA device is visible.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>

#include "engine/model/transformer.h"

TEST(GpuSmoke, Bf16MatmulMatchesCpu) {
  torch::manual_seed(0);
  auto a = torch::randn({512, 1024});
  auto b = torch::randn({1024, 256});
  auto ref = torch::matmul(a, b);
  auto got = torch::matmul(a.to(torch::kCUDA, torch::kBFloat16), b.to(torch::kCUDA, torch::kBFloat16)).to(torch::kCPU, torch::kFloat32);
  // bf16 has 8 bits of mantissa: relative error ~ 2^-8 per element, accumulated in fp32.
  const double rel = (got - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(rel, 1e-2);
}

TEST(GpuSmoke, TransformerForwardBf16) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 128; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 352; a.max_seq_len = 64;
  torch::manual_seed(1);
  fathom::model::Transformer net(a);
  auto idx = torch::randint(0, 512, {2, 64}, torch::kInt64);
  torch::NoGradGuard ng;
  auto ref = net->forward(idx);
  net->to(torch::kBFloat16);
  net->to_device(torch::kCUDA);
  auto got = net->forward(idx.to(torch::kCUDA)).to(torch::kCPU, torch::kFloat32);
  const double rel = (got - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(rel, 3e-2);
}

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device visible (gpu tests run on the GPU machine: packaging/build-engine-gpu.sh)\n";
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
