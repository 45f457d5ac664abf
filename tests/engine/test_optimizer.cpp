// AdamW, clipping and schedules against LibTorch's own implementations and closed forms.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "engine/train/optimizer.h"
#include "engine/train/schedule.h"

using namespace fathom::train;

TEST(AdamW, MatchesTorchOptimAdamW) {
  torch::manual_seed(0);
  auto w1 = torch::randn({8, 5}, torch::requires_grad());
  auto w2 = torch::randn({5, 3}, torch::requires_grad());
  auto r1 = w1.detach().clone().requires_grad_(true);
  auto r2 = w2.detach().clone().requires_grad_(true);
  AdamWOptions o;
  o.beta1 = 0.9; o.beta2 = 0.95; o.eps = 1e-8; o.weight_decay = 0.1;
  AdamW ours({{"w1", w1}, {"w2", w2}}, o);
  torch::optim::AdamW ref({r1, r2}, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int step = 0; step < 20; ++step) {
    auto x = torch::randn({4, 8});
    auto loss_a = torch::matmul(torch::matmul(x, w1), w2).pow(2).mean();
    auto loss_b = torch::matmul(torch::matmul(x, r1), r2).pow(2).mean();
    loss_a.backward();
    loss_b.backward();
    ours.step(1e-2);
    ref.step();
    w1.mutable_grad().zero_(); w2.mutable_grad().zero_();
    ref.zero_grad();
  }
  EXPECT_TRUE(torch::allclose(w1, r1, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(w2, r2, 1e-6, 1e-7));
  EXPECT_EQ(ours.steps_taken(), 20);
}

TEST(AdamW, NoDecayOnVectorsAndStateRoundTrip) {
  auto gain = torch::ones({4}, torch::requires_grad());
  AdamWOptions o;
  o.weight_decay = 0.5;
  AdamW opt({{"norm.weight", gain}}, o);
  gain.mutable_grad() = torch::zeros({4});
  opt.step(0.1);
  EXPECT_TRUE(torch::allclose(gain, torch::ones({4})));  // zero grad, no decay → unchanged
  auto state = opt.state_tensors();
  ASSERT_EQ(state.size(), 3u);
  AdamW other({{"norm.weight", torch::ones({4})}}, o);
  other.load_state_tensors(state);
  EXPECT_EQ(other.steps_taken(), 1);
  AdamW wrong({{"norm.weight", torch::ones({5})}}, o);
  EXPECT_THROW(wrong.load_state_tensors(state), std::runtime_error);
}

TEST(ClipGradNorm, MatchesTorch) {
  auto a = torch::randn({10}, torch::requires_grad());
  auto b = torch::randn({3, 3}, torch::requires_grad());
  auto ra = a.detach().clone().requires_grad_(true);
  auto rb = b.detach().clone().requires_grad_(true);
  (a.pow(3).sum() + b.exp().sum()).backward();
  (ra.pow(3).sum() + rb.exp().sum()).backward();
  const double ours = clip_grad_norm({a, b}, 0.5);
  const double ref = torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{ra, rb}, 0.5);
  EXPECT_NEAR(ours, ref, 1e-4 * ref);
  EXPECT_TRUE(torch::allclose(a.grad(), ra.grad()));
  EXPECT_TRUE(torch::allclose(b.grad(), rb.grad()));
}

// step(lr, grad_scale) (the trainer's clipping) equals scaling the gradients, then step(lr).
TEST(AdamW, GradScaleIsTheClipCoefficient) {
  torch::manual_seed(23);
  auto a = torch::randn({40, 3}), b = a.clone();
  fathom::train::AdamW oa({{"w", a}}, {}), ob({{"w", b}}, {});
  for (int s = 0; s < 3; ++s) {
    auto g = torch::randn({40, 3});
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g * 0.25;
    oa.step(1e-2, 0.25);
    ob.step(1e-2);
  }
  EXPECT_TRUE(torch::equal(a, b));
}

// grad_norm (the mixed-precision step's norm): bf16 gradients summed in fp32, undefined ones skipped,
// equal to clip_grad_norm's measurement of the same values in fp32; nothing is scaled.
TEST(GradNorm, Bf16GradientsInFp32) {
  torch::manual_seed(22);
  auto a = torch::randn({300, 7}).to(torch::kBFloat16), b = (torch::randn({1001}) * 1e3).to(torch::kBFloat16);
  auto a0 = a.clone(), b0 = b.clone();
  const double got = grad_norm({a, torch::Tensor(), b});
  auto pa = torch::zeros({300, 7}), pb = torch::zeros({1001});
  pa.mutable_grad() = a.to(torch::kFloat32);
  pb.mutable_grad() = b.to(torch::kFloat32);
  const double want = clip_grad_norm({pa, pb}, 0.0);
  EXPECT_NEAR(got, want, want * 1e-6);
  EXPECT_TRUE(torch::equal(a, a0));
  EXPECT_TRUE(torch::equal(b, b0));
  EXPECT_EQ(grad_norm({torch::Tensor()}), 0.0);
}

TEST(LrSchedule, WarmupCosineLinearConstant) {
  LrSchedule s{"cosine", 1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half way: min + (max-min)/2
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
  LrSchedule l{"linear", 1.0, 0.0, 0, 100};
  EXPECT_NEAR(l.at(25), 0.75, 1e-12);
  LrSchedule c{"constant", 0.3, 0.0, 5, 100};
  EXPECT_NEAR(c.at(2), 0.18, 1e-12);
  EXPECT_DOUBLE_EQ(c.at(50), 0.3);
}
