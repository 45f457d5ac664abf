// The naive references in kernels/reference against the LibTorch composites the engine runs on the
// CPU (engine/ops composite::), forward and autograd backward. The GPU tests (test_kernels) check
// the CUDA kernels against these references, so this is what ties the kernels to the model's maths;
// it runs everywhere (label unit), no GPU needed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/model/transformer.h"
#include "engine/train/optimizer.h"
#include "engine/ops/cross_entropy.h"
#include "engine/ops/grouped_linear.h"
#include "engine/ops/moe.h"
#include "engine/ops/rmsnorm.h"
#include "engine/ops/rope.h"
#include "engine/ops/swiglu.h"
#include "fathom/kernels/adamw.h"
#include "fathom/kernels/cross_entropy.h"
#include "fathom/kernels/decode.h"
#include "fathom/kernels/fp8_cast.h"
#include "fathom/kernels/int8_gemv.h"
#include "fathom/kernels/moe.h"
#include "fathom/kernels/rmsnorm.h"
#include "fathom/kernels/rope.h"
#include "fathom/kernels/swiglu.h"

namespace k = fathom::kernels;
namespace ops = fathom::ops;

namespace {
std::vector<float> vec(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat32).contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}
torch::Tensor tens(const std::vector<float>& v, at::IntArrayRef sizes) {
  return torch::from_blob(const_cast<float*>(v.data()), sizes, torch::kFloat32).clone();
}
double max_rel(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.detach().to(torch::kFloat64), w = want.detach().to(torch::kFloat64);
  return ((g - w).abs().max() / (w.abs().max() + 1e-30)).item<double>();
}
}  // namespace

TEST(KernelReference, AddRmsNormMatchesComposite) {
  torch::manual_seed(0);
  const int64_t rows = 7, C = 40;
  for (bool with_r : {true, false}) {
    auto x = torch::randn({rows, C}).requires_grad_(true);
    auto r = torch::randn({rows, C}).requires_grad_(true);
    auto w = (torch::rand({C}) + 0.5).requires_grad_(true);
    auto gy = torch::randn({rows, C}), gh = torch::randn({rows, C});
    torch::Tensor y, h;
    if (with_r) {
      std::tie(y, h) = ops::composite::add_rmsnorm(x, r, w, 1e-5);
      ((y * gy).sum() + (h * gh).sum()).backward();
    } else {
      y = ops::composite::rmsnorm(x, w, 1e-5);
      (y * gy).sum().backward();
    }
    auto xs = vec(x), rs = vec(r), ws = vec(w), gys = vec(gy), ghs = vec(gh);
    std::vector<float> yr(rows * C), hr(rows * C), rstd(rows), dh(rows * C), dw(C);
    k::ref::add_rmsnorm_forward(xs.data(), with_r ? rs.data() : nullptr, ws.data(), yr.data(), hr.data(), rstd.data(), rows, C,
                                1e-5f);
    EXPECT_LT(max_rel(tens(yr, {rows, C}), y), 1e-6);
    if (with_r) {
      EXPECT_LT(max_rel(tens(hr, {rows, C}), h), 1e-7);
    }
    const float* hin = with_r ? hr.data() : xs.data();
    k::ref::rmsnorm_backward(gys.data(), hin, ws.data(), rstd.data(), with_r ? ghs.data() : nullptr, dh.data(), dw.data(), rows, C);
    EXPECT_LT(max_rel(tens(dh, {rows, C}), x.grad()), 1e-5) << "with_r " << with_r;
    if (with_r) {
      EXPECT_LT(max_rel(tens(dh, {rows, C}), r.grad()), 1e-5);
    }
    EXPECT_LT(max_rel(tens(dw, {C}), w.grad()), 1e-5);
  }
}

TEST(KernelReference, SwiGluMatchesComposite) {
  torch::manual_seed(1);
  const int64_t n = 1000;
  auto g = (torch::randn({n}) * 4).requires_grad_(true);
  auto u = torch::randn({n}).requires_grad_(true);
  auto gout = torch::randn({n});
  auto out = ops::composite::swiglu(g, u);
  (out * gout).sum().backward();
  auto gs = vec(g), us = vec(u), gos = vec(gout);
  std::vector<float> o(n), dg(n), du(n);
  k::ref::swiglu_forward(gs.data(), us.data(), o.data(), n);
  k::ref::swiglu_backward(gos.data(), gs.data(), us.data(), dg.data(), du.data(), n);
  EXPECT_LT(max_rel(tens(o, {n}), out), 1e-6);
  EXPECT_LT(max_rel(tens(dg, {n}), g.grad()), 1e-5);
  EXPECT_LT(max_rel(tens(du, {n}), u.grad()), 1e-5);
}

// x is the model's layout: a (B, H, T, hd) transposed view of (B, T, H, hd) memory.
TEST(KernelReference, RopeMatchesComposite) {
  torch::manual_seed(2);
  const int64_t B = 2, H = 3, T = 5, hd = 8, Tmax = 16, offset = 4;
  auto tables = fathom::model::rope_tables(Tmax, hd, 10000.0);
  auto positions = torch::randint(0, Tmax, {B, T}, torch::kInt64);
  for (bool at : {false, true}) {
    auto base = torch::randn({B, T, H, hd}).requires_grad_(true);
    auto x = base.transpose(1, 2);
    auto y = at ? ops::composite::rope_apply_at(x, tables.cos, tables.sin, positions)
                : ops::composite::rope_apply(x, tables.cos, tables.sin, offset);
    auto gy = torch::randn({B, H, T, hd});
    (y * gy).sum().backward();

    auto xs = vec(base);  // (B, T, H, hd) memory
    auto cs = vec(tables.cos), ss = vec(tables.sin), gys = vec(gy);
    std::vector<float> yr(B * H * T * hd), dx(B * T * H * hd);
    auto pos = positions.contiguous();
    k::RopeArgs a;
    a.x = xs.data();
    a.y = yr.data();
    a.B = B; a.H = H; a.T = T; a.hd = hd;
    a.x_sb = T * H * hd; a.x_sh = hd; a.x_st = H * hd;     // the transposed view's strides
    a.y_sb = H * T * hd; a.y_sh = T * hd; a.y_st = hd;     // y contiguous (B, H, T, hd)
    a.cos = cs.data();
    a.sin = ss.data();
    a.positions = at ? pos.data_ptr<int64_t>() : nullptr;
    a.offset = at ? 0 : offset;
    k::ref::rope_apply(a);
    EXPECT_LT(max_rel(tens(yr, {B, H, T, hd}), y), 1e-6) << "at " << at;
    // Backward: gy contiguous (B, H, T, hd) in, dx written in (B, T, H, hd) memory.
    k::RopeArgs b = a;
    b.x = gys.data();
    b.y = dx.data();
    b.x_sb = H * T * hd; b.x_sh = T * hd; b.x_st = hd;
    b.y_sb = T * H * hd; b.y_sh = hd; b.y_st = H * hd;
    b.backward = true;
    k::ref::rope_apply(b);
    EXPECT_LT(max_rel(tens(dx, {B, T, H, hd}), base.grad()), 1e-5) << "at " << at;
  }
}

// On the CPU the ops are the composites, and the model's norm is the op.
TEST(KernelReference, OpsAreTheCompositesOnCpu) {
  torch::manual_seed(3);
  auto x = torch::randn({4, 16}), r = torch::randn({4, 16}), w = torch::rand({16});
  EXPECT_TRUE(torch::equal(fathom::ops::rmsnorm(x, w, 1e-5), ops::composite::rmsnorm(x, w, 1e-5)));
  auto [y, h] = fathom::ops::add_rmsnorm(x, r, w, 1e-5);
  EXPECT_TRUE(torch::equal(h, x + r));
  EXPECT_TRUE(torch::equal(y, ops::composite::rmsnorm(x + r, w, 1e-5)));
  EXPECT_TRUE(torch::equal(fathom::ops::swiglu(x, r), torch::silu(x) * r));
  fathom::model::RMSNorm norm(16, 1e-5);
  EXPECT_TRUE(torch::equal(norm(x), ops::composite::rmsnorm(x, norm->weight, 1e-5)));
}

TEST(KernelReference, CrossEntropyMatchesComposite) {
  torch::manual_seed(4);
  const int64_t N = 9, C = 16, V = 50;
  auto h = torch::randn({N, C}).requires_grad_(true);
  auto w = (torch::randn({V, C}) * 0.3).requires_grad_(true);
  auto t = torch::randint(0, V, {N}, torch::kInt64);
  t.index_put_({3}, -100);
  auto logits = torch::matmul(h, w.t());
  logits.retain_grad();
  namespace F = torch::nn::functional;
  auto loss = F::cross_entropy(logits, t, F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
  (loss * 0.5).backward();
  EXPECT_NEAR(ops::composite::linear_cross_entropy_sum(h, w, t, -100).item<double>(), loss.item<double>(), 1e-5);
  auto zs = vec(logits);
  std::vector<float> lse(N), l(N), dl(N * V);
  k::ref::cross_entropy(zs.data(), N, V, t.data_ptr<int64_t>(), -100, 0.5f, lse.data(), l.data(), dl.data());
  EXPECT_NEAR(tens(l, {N}).sum().item<double>(), loss.item<double>(), 1e-4);
  EXPECT_EQ(l[3], 0.f);
  EXPECT_LT(max_rel(tens(dl, {N, V}), logits.grad()), 1e-5);
  EXPECT_FALSE(ops::linear_cross_entropy_fusable(h, w, t));  // CPU: the composite
}

TEST(KernelReference, Int8GemvMatchesDequantisedMatmul) {
  torch::manual_seed(5);
  const int64_t B = 3, N = 20, K = 32;
  auto q = torch::randint(-127, 128, {N, K}, torch::kInt8);
  auto scale = torch::rand({N}) * 0.1;
  auto x = torch::randn({B, K});
  auto want = torch::matmul(x.to(torch::kFloat64), (q.to(torch::kFloat64) * scale.to(torch::kFloat64).unsqueeze(1)).t());
  auto xs = vec(x), ss = vec(scale);
  std::vector<float> y(B * N);
  k::ref::int8_gemv(xs.data(), q.contiguous().data_ptr<int8_t>(), ss.data(), y.data(), B, N, K);
  EXPECT_LT(max_rel(tens(y, {B, N}), want), 1e-6);
}

TEST(KernelReference, DecodeGemvMatchesLinearAndSwiGlu) {
  torch::manual_seed(6);
  const int64_t B = 2, K = 32;
  const std::vector<int64_t> rows = {12, 4, 4};
  std::vector<torch::Tensor> w, b;
  for (auto n : rows) {
    w.push_back(torch::randn({n, K}));
    b.push_back(torch::randn({n}));
  }
  auto x = torch::randn({B, K});
  auto xs = vec(x);
  std::vector<std::vector<float>> ws, bs;
  for (size_t i = 0; i < 3; ++i) {
    ws.push_back(vec(w[i]));
    bs.push_back(vec(b[i]));
  }
  k::GemvArgs a;
  a.x = xs.data();
  a.B = B;
  a.K = K;
  a.segments = 3;
  for (int i = 0; i < 3; ++i) a.seg[i] = k::GemvSegment{ws[i].data(), nullptr, bs[i].data(), rows[i]};
  std::vector<float> y(B * 20);
  a.y = y.data();
  k::ref::gemv(a);
  namespace F = torch::nn::functional;
  auto want = torch::cat({F::linear(x, w[0], b[0]), F::linear(x, w[1], b[1]), F::linear(x, w[2], b[2])}, 1);
  EXPECT_LT(max_rel(tens(y, {B, 20}), want), 1e-5);
  // swiglu: gate and up are segments 1 and 2 (4 rows each).
  a.segments = 2;
  a.swiglu = true;
  a.seg[0] = k::GemvSegment{ws[1].data(), nullptr, nullptr, 4};
  a.seg[1] = k::GemvSegment{ws[2].data(), nullptr, nullptr, 4};
  std::vector<float> ys(B * 4);
  a.y = ys.data();
  k::ref::gemv(a);
  EXPECT_LT(max_rel(tens(ys, {B, 4}), ops::composite::swiglu(F::linear(x, w[1]), F::linear(x, w[2]))), 1e-5);
}

TEST(KernelReference, DecodeRopeAppendAndAttentionMatchTheModelsDecode) {
  // The references against the model's composite decode maths: rope_apply_at on q and k, the cache
  // write, and causal_attention over keys 0..position (grouped-query heads, per-row positions).
  torch::manual_seed(7);
  const int64_t B = 2, Hq = 4, Hkv = 2, hd = 8, S = 10;
  auto tables = fathom::model::rope_tables(16, hd, 10000.0);
  auto qkv = torch::randn({B, (Hq + 2 * Hkv) * hd});
  auto kc = torch::randn({B, Hkv, S, hd}), vc = torch::randn({B, Hkv, S, hd});
  const std::vector<int64_t> pv = {6, 2};
  auto positions = torch::tensor(pv, torch::kInt64);
  // The composite.
  auto q = qkv.narrow(1, 0, Hq * hd).reshape({B, 1, Hq, hd}).transpose(1, 2);
  auto kk = qkv.narrow(1, Hq * hd, Hkv * hd).reshape({B, 1, Hkv, hd}).transpose(1, 2);
  auto vv = qkv.narrow(1, (Hq + Hkv) * hd, Hkv * hd).reshape({B, 1, Hkv, hd}).transpose(1, 2);
  auto pos2 = positions.view({B, 1});
  q = ops::composite::rope_apply_at(q, tables.cos, tables.sin, pos2);
  kk = ops::composite::rope_apply_at(kk, tables.cos, tables.sin, pos2);
  auto kc_c = kc.clone(), vc_c = vc.clone();
  for (int64_t b = 0; b < B; ++b) {
    kc_c[b].select(1, pv[b]).copy_(kk[b].select(1, 0));
    vc_c[b].select(1, pv[b]).copy_(vv[b].select(1, 0));
  }
  auto mask = (torch::arange(S).view({1, S}) <= positions.view({B, 1})).view({B, 1, 1, S});
  auto want = fathom::model::causal_attention(q, kc_c, vc_c, 0, mask).transpose(1, 2).reshape({B, Hq * hd});
  // The references.
  auto qkv_h = vec(qkv), kc_h = vec(kc), vc_h = vec(vc), cs = vec(tables.cos), ss = vec(tables.sin);
  const k::KvCacheView view{kc_h.data(), vc_h.data(), Hkv * S * hd, S * hd, hd};
  k::DecodeRopeAppendArgs r;
  r.qkv = qkv_h.data();
  r.row_stride = (Hq + 2 * Hkv) * hd;
  r.B = B; r.Hq = Hq; r.Hkv = Hkv; r.hd = hd;
  r.cos = cs.data();
  r.sin = ss.data();
  r.positions = positions.data_ptr<int64_t>();
  r.cache = view;
  k::ref::decode_rope_append(r);
  EXPECT_LT(max_rel(tens(kc_h, {B, Hkv, S, hd}), kc_c), 1e-6);
  EXPECT_LT(max_rel(tens(vc_h, {B, Hkv, S, hd}), vc_c), 1e-7);
  std::vector<float> y(B * Hq * hd);
  k::DecodeAttentionArgs a;
  a.q = qkv_h.data();
  a.q_stride = r.row_stride;
  a.cache = view;
  a.positions = positions.data_ptr<int64_t>();
  a.y = y.data();
  a.B = B; a.Hq = Hq; a.Hkv = Hkv; a.hd = hd;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  k::ref::decode_attention(a);
  EXPECT_LT(max_rel(tens(y, {B, Hq * hd}), want), 1e-5);
}

// The kernel's hyper-parameters for the optimizer's step number `step` (1-based).
static k::AdamWHyper adamw_hyper(const fathom::train::AdamWOptions& o, double lr, int step) {
  k::AdamWHyper h;
  h.lr = static_cast<float>(lr);
  h.beta1 = static_cast<float>(o.beta1);
  h.beta2 = static_cast<float>(o.beta2);
  h.eps = static_cast<float>(o.eps);
  h.weight_decay = static_cast<float>(o.weight_decay);
  h.step_size = static_cast<float>(lr / (1.0 - std::pow(o.beta1, step)));
  h.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, step)));
  return h;
}

TEST(KernelReference, AdamWMatchesTheOptimizer) {
  // The fused AdamW reference against engine/train's AdamW (its _foreach_ path on the CPU), three
  // steps, a decayed matrix and an undecayed vector.
  torch::manual_seed(8);
  auto w = torch::randn({5, 7}), b = torch::randn({7});
  fathom::train::AdamWOptions o;
  o.weight_decay = 0.1;
  fathom::train::AdamW opt({{"w", w}, {"b", b}}, o);
  std::vector<float> wp = vec(w), bp = vec(b), wm(35, 0.f), wv(35, 0.f), bm(7, 0.f), bv(7, 0.f);
  const double lr = 3e-3;
  for (int step = 1; step <= 3; ++step) {
    auto gw = torch::randn({5, 7}), gb = torch::randn({7});
    w.mutable_grad() = gw;
    b.mutable_grad() = gb;
    opt.step(lr);
    auto gws = vec(gw), gbs = vec(gb);
    k::AdamWHyper h = adamw_hyper(o, lr, step);
    const k::AdamWTensor ts[2] = {{wp.data(), gws.data(), wm.data(), wv.data(), 35, true},
                                  {bp.data(), gbs.data(), bm.data(), bv.data(), 7, false}};
    k::ref::adamw_step(ts, 2, h);
  }
  EXPECT_LT(max_rel(tens(wp, {5, 7}), w), 1e-6);
  EXPECT_LT(max_rel(tens(bp, {7}), b), 1e-6);
  EXPECT_LT(max_rel(tens(wv, {5, 7}), opt.exp_avg_sq()[0]), 1e-6);
}

// Mixed precision (bf16 gradients in, a bf16 copy of the weights out, the clip coefficient applied
// first): the reference against what the trainer's fp32 path does, gradients → fp32, times the clip
// coefficient, the optimizer's step, masters → bf16. Three steps; the bf16 copy must be bit-equal to
// LibTorch's rounding of the fp32 masters.
TEST(KernelReference, AdamWMixedPrecisionMatchesTheFp32Path) {
  torch::manual_seed(18);
  const int64_t n = 300;
  auto master = torch::randn({n});
  fathom::train::AdamWOptions o;
  o.weight_decay = 0.1;
  fathom::train::AdamW opt({{"w", master}}, o, {true});
  std::vector<float> p = vec(master), m(n, 0.f), v(n, 0.f);
  std::vector<uint16_t> model(n, 0);
  const double lr = 3e-3;
  const float clip = 0.37f;
  for (int step = 1; step <= 3; ++step) {
    auto g_bf16 = torch::randn({n}).mul(step == 2 ? 1e-3 : 2.0).to(torch::kBFloat16);
    master.mutable_grad() = g_bf16.to(torch::kFloat32) * clip;
    opt.step(lr);
    std::vector<uint16_t> gbits(n);
    std::memcpy(gbits.data(), g_bf16.contiguous().data_ptr(), n * sizeof(uint16_t));
    k::AdamWHyper h = adamw_hyper(o, lr, step);
    h.grad_scale = clip;
    k::AdamWTensor t{p.data(), nullptr, m.data(), v.data(), n, true};
    t.g_bf16 = gbits.data();
    t.model_bf16 = model.data();
    k::ref::adamw_step(&t, 1, h);
  }
  EXPECT_LT(max_rel(tens(p, {n}), master), 1e-6);
  // The bf16 copy: LibTorch's round-to-nearest-even of the reference's own fp32 result, bit for bit.
  auto want = tens(p, {n}).to(torch::kBFloat16).contiguous();
  std::vector<uint16_t> want_bits(n);
  std::memcpy(want_bits.data(), want.data_ptr(), n * sizeof(uint16_t));
  EXPECT_EQ(model, want_bits);
  // Rounding ties and NaN, from the definition: 1 + 2⁻⁸ is halfway between two bf16 values and goes
  // to the even one (1.0); 1 + 3·2⁻⁸ goes up to 1 + 2⁻⁶.
  std::vector<float> tp{1.f + 1.f / 256.f, 1.f + 3.f / 256.f}, tm(2, 0.f), tv(2, 0.f);
  std::vector<uint16_t> tg(2, 0), tw(2, 0);
  k::AdamWHyper zero;  // lr 0: p unchanged
  zero.step_size = 0.f;
  k::AdamWTensor tt{tp.data(), nullptr, tm.data(), tv.data(), 2, false};
  tt.g_bf16 = tg.data();
  tt.model_bf16 = tw.data();
  k::ref::adamw_step(&tt, 1, zero);
  EXPECT_EQ(tw[0], 0x3f80);  // 1.0
  EXPECT_EQ(tw[1], 0x3f82);  // 1 + 2⁻⁶
}

// The device clip's reference (kernels::ref::grad_norm_clip) against the trainer's host path:
// train::grad_norm over fp32 and bf16 gradients and clip_coefficient; max_norm ≤ 0 only measures;
// a non-finite loss or gradient gives a NaN coefficient (the AdamW update then skips, also in the
// reference).
TEST(KernelReference, GradNormClipMatchesTheHostPath) {
  torch::manual_seed(23);
  auto a = torch::randn({300, 7}), b = torch::randn({1001}).to(torch::kBFloat16);
  std::vector<uint16_t> bbits(1001);
  std::memcpy(bbits.data(), b.contiguous().data_ptr(), bbits.size() * sizeof(uint16_t));
  std::vector<float> av = vec(a);
  std::vector<k::NormTensor> ts{{av.data(), 2100, false}, {bbits.data(), 1001, true}, {nullptr, 0, false}};
  const double norm = fathom::train::grad_norm({a, b});
  float out[2];
  const float loss = 2.f;
  k::ref::grad_norm_clip(ts.data(), 3, 10.f, &loss, out);
  EXPECT_NEAR(out[0], norm, 1e-5 * norm);
  EXPECT_NEAR(out[1], fathom::train::clip_coefficient(norm, 10.0), 1e-6);
  EXPECT_LT(out[1], 1.f) << "the test's norm must exceed max_norm";
  k::ref::grad_norm_clip(ts.data(), 3, 0.f, &loss, out);
  EXPECT_EQ(out[1], 1.f);
  k::ref::grad_norm_clip(ts.data(), 3, 1000.f, nullptr, out);
  EXPECT_EQ(out[1], 1.f);
  const float bad = std::numeric_limits<float>::infinity();
  k::ref::grad_norm_clip(ts.data(), 3, 10.f, &bad, out);
  EXPECT_TRUE(std::isnan(out[1]));
  av[5] = std::numeric_limits<float>::quiet_NaN();
  k::ref::grad_norm_clip(ts.data(), 3, 10.f, &loss, out);
  EXPECT_TRUE(std::isnan(out[1]));
  // The update reading that coefficient (grad_scale_dev: a host pointer in the reference) skips.
  std::vector<float> p{1.f, 2.f}, g{0.5f, 0.5f}, m(2, 0.f), v(2, 0.f);
  k::AdamWTensor t{p.data(), g.data(), m.data(), v.data(), 2, true};
  k::AdamWHyper h;
  h.lr = 1e-2f;
  h.weight_decay = 0.1f;
  h.step_size = 1e-2f;
  h.grad_scale_dev = &out[1];
  k::ref::adamw_step(&t, 1, h);
  EXPECT_EQ(p, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(m, (std::vector<float>{0.f, 0.f}));
}

// MoE routing (with a capacity that drops assignments), dispatch and combine: the references
// against the composites, forward and backward (dx, dy and the routing weights' gradient).
TEST(KernelReference, MoePermuteAndCombineMatchComposite) {
  torch::manual_seed(9);
  const int64_t N = 13, k = 3, E = 5, C = 12, capacity = 6;
  std::vector<torch::Tensor> picks;
  for (int64_t t = 0; t < N; ++t) picks.push_back(torch::randperm(E).narrow(0, 0, k));
  auto idx = torch::stack(picks, 0);  // (N, k), distinct experts per token
  const auto r = ops::moe_route(idx, E, capacity);

  // The routing: per-expert rows capped, the earliest tokens kept, rows grouped by expert in token order.
  const int64_t total = N * k;
  int64_t kept = 0, dropped = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n_e = (idx == e).sum().item<int64_t>();
    EXPECT_EQ(r.counts[e].item<int64_t>(), n_e);
    EXPECT_EQ(r.rows[e], std::min(n_e, capacity));
    kept += r.rows[e];
    dropped += n_e - r.rows[e];
  }
  ASSERT_GT(dropped, 0) << "the test wants a capacity that drops";
  EXPECT_EQ(r.dropped, dropped);
  ASSERT_EQ(r.kept(), kept);
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> tokens;
    for (int64_t t = 0; t < N; ++t)
      for (int64_t i = 0; i < k; ++i)
        if (idx[t][i].item<int64_t>() == e) tokens.push_back(t);
    for (int64_t j = 0; j < r.rows[e]; ++j, ++row) {
      EXPECT_EQ(r.src[row].item<int64_t>(), tokens[j]) << "expert " << e << " row " << j;
      const int64_t a = r.assign[row].item<int64_t>();
      EXPECT_EQ(r.pos.view({-1})[a].item<int64_t>(), row);
      EXPECT_EQ(idx.view({-1})[a].item<int64_t>(), e);
    }
  }
  EXPECT_EQ((r.pos < 0).sum().item<int64_t>(), total - kept);

  auto x = torch::randn({N, C}).requires_grad_(true);
  auto xp = ops::composite::moe_permute(x, r);
  auto y = (torch::randn({kept, C})).requires_grad_(true);
  auto w = torch::rand({N, k}).requires_grad_(true);
  auto out = ops::composite::moe_unpermute(y, w, r);
  auto gxp = torch::randn({kept, C}), gout = torch::randn({N, C});
  ((xp * gxp).sum() + (out * gout).sum()).backward();

  auto xs = vec(x), ys = vec(y), ws = vec(w), gxps = vec(gxp), gouts = vec(gout);
  auto pos = r.pos.contiguous(), src = r.src.contiguous();
  std::vector<int64_t> ps(pos.data_ptr<int64_t>(), pos.data_ptr<int64_t>() + N * k),
      ss(src.data_ptr<int64_t>(), src.data_ptr<int64_t>() + kept);
  std::vector<float> xp_ref(kept * C), out_ref(N * C), dx(N * C), dy(kept * C), dw(N * k), scale(kept);
  k::ref::moe_gather_rows(xs.data(), ss.data(), nullptr, xp_ref.data(), kept, C);
  k::ref::moe_combine_rows(ys.data(), ps.data(), ws.data(), out_ref.data(), N, k, C);
  k::ref::moe_combine_rows(gxps.data(), ps.data(), nullptr, dx.data(), N, k, C);  // permute's backward
  for (int64_t j = 0; j < kept; ++j) scale[j] = ws[r.assign[j].item<int64_t>()];
  k::ref::moe_gather_rows(gouts.data(), ss.data(), scale.data(), dy.data(), kept, C);  // combine's dy
  k::ref::moe_combine_weight_grad(gouts.data(), ys.data(), ps.data(), dw.data(), N, k, C);
  EXPECT_LT(max_rel(tens(xp_ref, {kept, C}), xp), 1e-7);
  EXPECT_LT(max_rel(tens(out_ref, {N, C}), out), 1e-6);
  EXPECT_LT(max_rel(tens(dx, {N, C}), x.grad()), 1e-6);
  EXPECT_LT(max_rel(tens(dy, {kept, C}), y.grad()), 1e-6);
  EXPECT_LT(max_rel(tens(dw, {N, k}), w.grad()), 1e-5);
  // A dropped assignment's weight gets no gradient.
  EXPECT_EQ(w.grad().masked_select(r.pos < 0).abs().sum().item<double>(), 0.0);
  // On the CPU the ops are the composites.
  EXPECT_TRUE(torch::equal(ops::moe_permute(x, r), xp));
  EXPECT_TRUE(torch::equal(ops::moe_unpermute(y, w, r), out));
}

// The grouped linear's autograd Function (what CUDA runs, one grouped GEMM per pass) with its
// products done by matmuls on the CPU, against the composite: output, input gradient, and the
// gradient of each weight that wants one (a frozen expert gets none).
TEST(KernelReference, GroupedLinearFunctionMatchesComposite) {
  torch::manual_seed(10);
  const std::vector<int64_t> rows{5, 1, 17, 7};
  const int64_t P = 30, in = 12, out = 8;
  auto x = torch::randn({P, in});
  std::vector<torch::Tensor> w;
  for (size_t g = 0; g < rows.size(); ++g) w.push_back(torch::randn({out, in}).requires_grad_(g != 2));
  auto seed = torch::randn({P, out});
  auto run = [&](bool function) {
    auto xl = x.clone().requires_grad_(true);
    std::vector<torch::Tensor> wl;
    for (auto& t : w) wl.push_back(t.detach().clone().requires_grad_(t.requires_grad()));
    auto y = function ? ops::detail::grouped_linear_function(xl, wl, rows) : ops::composite::grouped_linear(xl, wl, rows);
    (y * seed).sum().backward();
    std::vector<torch::Tensor> r{y.detach(), xl.grad()};
    for (auto& t : wl) r.push_back(t.grad());
    return r;
  };
  auto got = run(true), want = run(false);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].defined(), want[i].defined()) << "tensor " << i;
    if (want[i].defined()) {
      EXPECT_LT(max_rel(got[i], want[i]), 1e-6) << "tensor " << i;
    }
  }
  EXPECT_FALSE(got[2 + 2].defined()) << "the frozen weight gets no gradient";
  // On the CPU the op is the composite; rows that do not add up are refused.
  EXPECT_TRUE(torch::equal(ops::grouped_linear(x, w, rows), ops::composite::grouped_linear(x, w, rows)));
  EXPECT_THROW(ops::grouped_linear(x, w, {5, 1, 17, 6}), c10::Error);
  EXPECT_THROW(ops::grouped_linear(x, w, {5, 0, 18, 7}), c10::Error);
}

// The FP8 rounding of the reference against values worked out by hand from the formats: ties to
// even, subnormals, saturation, NaN. (The GPU test checks the kernels against this and against
// LibTorch's own conversion.)
TEST(KernelReference, Fp8RoundingFollowsTheFormats) {
  using F = k::Fp8Format;
  struct Case {
    float in, out;
    F fmt;
  };
  const float two_m9 = std::ldexp(1.f, -9), two_m16 = std::ldexp(1.f, -16);
  const std::vector<Case> cases = {
      {1.f, 1.f, F::e4m3},           {1.0625f, 1.f, F::e4m3},      // tie between 1.000 and 1.001: even
      {1.1875f, 1.25f, F::e4m3},     {1.19f, 1.25f, F::e4m3},      // tie between 1.001 and 1.010: even
      {-3.3f, -3.25f, F::e4m3},      {447.f, 448.f, F::e4m3},      {500.f, 448.f, F::e4m3},
      {-1e9f, -448.f, F::e4m3},      {two_m9, two_m9, F::e4m3},    // smallest subnormal
      {two_m9 / 2, 0.f, F::e4m3},    {two_m9 * 0.75f, two_m9, F::e4m3}, {two_m9 * 1.5f, 2 * two_m9, F::e4m3},
      {0.017f, 0.017578125f, F::e4m3},  // just above the smallest normal 2^-6: steps of 2^-9
      {0.005f, 0.005859375f, F::e4m3},  // subnormal: 2.56 steps of 2^-9 → 3
      {1.0625f, 1.f, F::e5m2},       {1.125f, 1.f, F::e5m2},       {1.375f, 1.5f, F::e5m2},
      {57344.f, 57344.f, F::e5m2},   {60000.f, 57344.f, F::e5m2},  {two_m16, two_m16, F::e5m2},
      {two_m16 / 2, 0.f, F::e5m2},   {0.f, 0.f, F::e5m2}};
  for (const auto& c : cases)
    EXPECT_EQ(k::ref::round_fp8(c.in, c.fmt), c.out) << c.in << (c.fmt == F::e4m3 ? " e4m3" : " e5m2");
  EXPECT_TRUE(std::isnan(k::ref::round_fp8(std::nanf(""), F::e4m3)));

  // The recipe: the largest magnitude lands on the format's maximum; q · inv is the tensor to within
  // the format's relative step (2^-4 for e4m3, 2^-3 for e5m2) for values well inside the range.
  std::vector<float> x{0.5f, -2.f, 3.f, -7.5f, 0.25f}, q(x.size());
  for (F fmt : {F::e4m3, F::e5m2}) {
    const float inv = k::ref::fp8_quantize(x.data(), static_cast<int64_t>(x.size()), fmt, q.data());
    EXPECT_EQ(q[3], -k::fp8_max(fmt));
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_NEAR(q[i] * inv, x[i], std::fabs(x[i]) * (fmt == F::e4m3 ? 0.0625 : 0.125)) << i;
  }
  x[2] = std::nanf("");
  const float inv = k::ref::fp8_quantize(x.data(), static_cast<int64_t>(x.size()), F::e4m3, q.data());
  EXPECT_TRUE(std::isnan(inv));
  for (float v : q) EXPECT_TRUE(std::isnan(v));
}
