// GPU smoke test: a bf16 matmul and a bf16 forward of the engine's transformer on CUDA agree with
// fp32 on the CPU. Skipped (exit 77) where no CUDA device is visible.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>

#include "engine/model/transformer.h"
#include "engine/train/optimizer.h"

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

// The CUDA optimizer path (fused AdamW on LibTorch ≥ 2.1) must match the CPU multi-tensor path.
TEST(GpuSmoke, AdamWOnCudaMatchesCpu) {
  torch::manual_seed(2);
  auto w = torch::randn({64, 32});
  auto b = torch::randn({32});
  auto wc = w.clone(), bc = b.clone();
  auto wg = w.to(torch::kCUDA), bg = b.to(torch::kCUDA);
  fathom::train::AdamWOptions o;
  fathom::train::AdamW cpu({{"w", wc}, {"b", bc}}, o);
  fathom::train::AdamW gpu({{"w", wg}, {"b", bg}}, o);
  for (int step = 0; step < 10; ++step) {
    auto gw = torch::randn({64, 32}), gb = torch::randn({32});
    wc.mutable_grad() = gw; bc.mutable_grad() = gb;
    wg.mutable_grad() = gw.to(torch::kCUDA); bg.mutable_grad() = gb.to(torch::kCUDA);
    cpu.step(1e-3);
    gpu.step(1e-3);
  }
  EXPECT_TRUE(torch::allclose(wg.cpu(), wc, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(bg.cpu(), bc, 1e-5, 1e-6));
}

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device visible (gpu tests run on the GPU machine: packaging/build-engine-gpu.sh)\n";
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
