// GPU tests of kernels/ (label gpu; exit 77 without a CUDA device):
//  1. each CUDA launcher against its naive reference (kernels/reference) on the same rounded inputs,
//     for fp32 / fp16 / bf16 and widths that take every code path (packs per thread 1, 2, 4; tails;
//     strided and unaligned views);
//  2. each engine op's fused path (engine/ops, autograd Function) against the LibTorch composite it
//     replaces: outputs and gradients;
//  3. a small transformer's loss and gradients with the kernels on and off (every op above, the
//     fused linear + cross-entropy included).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/cuda/CUDAContext.h>

#include <cstdlib>
#include <limits>
#include <tuple>
#include <iostream>
#include <string>
#include <vector>

#include "engine/model/linear.h"
#include "engine/train/optimizer.h"
#include "engine/model/transformer.h"
#include "engine/ops/adamw.h"
#include "engine/ops/cross_entropy.h"
#include "engine/ops/decode.h"
#include "engine/ops/fp8_cast.h"
#include "engine/ops/int8_linear.h"
#include "engine/ops/kernels.h"
#include "engine/ops/grouped_linear.h"
#include "engine/ops/moe.h"
#include "engine/model/moe.h"
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
const torch::Device kCuda(torch::kCUDA, 0);

struct Kind {
  torch::ScalarType st;
  k::DType dt;
  double tol;  // max |got − want| / max |want|: a few units in the last place of the type
};
const std::vector<Kind> kKinds = {
    {torch::kFloat32, k::DType::f32, 2e-5}, {torch::kFloat16, k::DType::f16, 4e-3}, {torch::kBFloat16, k::DType::bf16, 2e-2}};

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }

std::vector<float> host(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}
torch::Tensor tens(const std::vector<float>& v, at::IntArrayRef sizes) {
  return torch::from_blob(const_cast<float*>(v.data()), sizes, torch::kFloat32).clone();
}
double max_rel(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.detach().to(torch::kCPU, torch::kFloat64), w = want.detach().to(torch::kCPU, torch::kFloat64);
  return ((g - w).abs().max() / (w.abs().max() + 1e-30)).item<double>();
}
// Random values already rounded to the type, on the GPU.
torch::Tensor rnd(at::IntArrayRef sizes, torch::ScalarType st, double scale = 1.0, double shift = 0.0) {
  return (torch::randn(sizes) * scale + shift).to(kCuda, st);
}
}  // namespace

// ---- 1. launchers against the references ------------------------------------------------------

TEST(RmsNormKernel, MatchesReference) {
  torch::manual_seed(0);
  struct Case { int64_t rows, C; };
  // C/pack: 96 packs (gpt2, 1 per thread), 256 (llama-1b), 512 and 1024 (2 and 4 per thread in
  // 16-bit), 40 (a width that is not a multiple of 32 packs).
  const std::vector<Case> cases = {{37, 768}, {64, 2048}, {5, 4096}, {3, 8192}, {300, 320}, {1, 2048}};
  for (const auto& kind : kKinds) {
    for (const auto& c : cases) {
      if (!k::rmsnorm_supported(kind.dt, c.C)) {
        EXPECT_TRUE(kind.dt == k::DType::f32 && c.C > 4096) << "unsupported " << c.C;
        continue;
      }
      SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " rows " + std::to_string(c.rows) + " C " + std::to_string(c.C));
      auto x = rnd({c.rows, c.C}, kind.st), r = rnd({c.rows, c.C}, kind.st), w = rnd({c.C}, kind.st, 0.2, 1.0);
      auto dy = rnd({c.rows, c.C}, kind.st), dh_in = rnd({c.rows, c.C}, kind.st);
      auto y = torch::empty_like(x), h = torch::empty_like(x), dh = torch::empty_like(x), dw = torch::empty_like(w);
      auto rstd = torch::empty({c.rows}, x.options().dtype(torch::kFloat32));
      k::add_rmsnorm_forward(kind.dt, x.data_ptr(), r.data_ptr(), w.data_ptr(), y.data_ptr(), h.data_ptr(), rstd.data_ptr<float>(),
                             c.rows, c.C, 1e-5f, stream());
      auto ws = torch::empty({static_cast<int64_t>(k::rmsnorm_backward_workspace_bytes(kind.dt, c.rows, c.C) / 4) + 1},
                             x.options().dtype(torch::kFloat32));
      k::rmsnorm_backward(kind.dt, dy.data_ptr(), h.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), dh_in.data_ptr(),
                          dh.data_ptr(), dw.data_ptr(), ws.data_ptr<float>(), c.rows, c.C, stream());
      // h is the rounded sum, exactly what the unfused add gives.
      EXPECT_TRUE(torch::equal(h, x + r));
      const auto n = c.rows * c.C;
      std::vector<float> yr(n), rs(c.rows), dhr(n), dwr(c.C);
      auto xs = host(x), wsv = host(w), dys = host(dy), hs = host(h), dis = host(dh_in);
      // The reference normalises the kernel's h (checked equal to the rounded sum above).
      k::ref::add_rmsnorm_forward(hs.data(), nullptr, wsv.data(), yr.data(), nullptr, rs.data(), c.rows, c.C, 1e-5f);
      // The backward reference runs on the kernel's (rounded) h and its rstd, as the kernel does.
      auto rstd_h = host(rstd);
      k::ref::rmsnorm_backward(dys.data(), hs.data(), wsv.data(), rstd_h.data(), dis.data(), dhr.data(), dwr.data(), c.rows, c.C);
      EXPECT_LT(max_rel(y, tens(yr, {c.rows, c.C})), kind.tol);
      EXPECT_LT(max_rel(rstd, tens(rs, {c.rows})), 1e-5);
      EXPECT_LT(max_rel(dh, tens(dhr, {c.rows, c.C})), kind.tol);
      EXPECT_LT(max_rel(dw, tens(dwr, {c.C})), kind.tol);
      // Plain RMSNorm (no residual, no dh_in).
      auto y2 = torch::empty_like(x);
      k::add_rmsnorm_forward(kind.dt, x.data_ptr(), nullptr, w.data_ptr(), y2.data_ptr(), nullptr, nullptr, c.rows, c.C, 1e-5f, stream());
      std::vector<float> y2r(n);
      k::ref::add_rmsnorm_forward(xs.data(), nullptr, wsv.data(), y2r.data(), nullptr, nullptr, c.rows, c.C, 1e-5f);
      EXPECT_LT(max_rel(y2, tens(y2r, {c.rows, c.C})), kind.tol);
    }
  }
}

TEST(RmsNormKernel, BackwardIsDeterministic) {
  torch::manual_seed(1);
  const int64_t rows = 4096, C = 2048;
  auto h = rnd({rows, C}, torch::kBFloat16), w = rnd({C}, torch::kBFloat16), dy = rnd({rows, C}, torch::kBFloat16);
  auto rstd = torch::rsqrt(h.to(torch::kFloat32).pow(2).mean(-1) + 1e-5);
  auto ws = torch::empty({static_cast<int64_t>(k::rmsnorm_backward_workspace_bytes(k::DType::bf16, rows, C) / 4) + 1},
                         h.options().dtype(torch::kFloat32));
  torch::Tensor first;
  for (int i = 0; i < 3; ++i) {
    auto dh = torch::empty_like(h), dw = torch::empty_like(w);
    k::rmsnorm_backward(k::DType::bf16, dy.data_ptr(), h.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), nullptr, dh.data_ptr(),
                        dw.data_ptr(), ws.data_ptr<float>(), rows, C, stream());
    if (i == 0) {
      first = dw;
    } else {
      EXPECT_TRUE(torch::equal(dw, first));
    }
  }
}

TEST(SwiGluKernel, MatchesReference) {
  torch::manual_seed(2);
  for (const auto& kind : kKinds) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{100003}, int64_t{4 * 1024 * 1024 + 5}}) {
      SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " n " + std::to_string(n));
      auto g = rnd({n}, kind.st, 3.0), u = rnd({n}, kind.st), dout = rnd({n}, kind.st);
      auto out = torch::empty_like(g), dg = torch::empty_like(g), du = torch::empty_like(g);
      k::swiglu_forward(kind.dt, g.data_ptr(), u.data_ptr(), out.data_ptr(), n, stream());
      k::swiglu_backward(kind.dt, dout.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(), du.data_ptr(), n, stream());
      auto gs = host(g), us = host(u), ds = host(dout);
      std::vector<float> o(n), dgr(n), dur(n);
      k::ref::swiglu_forward(gs.data(), us.data(), o.data(), n);
      k::ref::swiglu_backward(ds.data(), gs.data(), us.data(), dgr.data(), dur.data(), n);
      // Elementwise: compare each element to its own magnitude (plus a floor).
      auto elem = [&](const torch::Tensor& got, const std::vector<float>& want) {
        auto w = tens(want, {n}).to(torch::kFloat64), gg = got.to(torch::kCPU, torch::kFloat64);
        return ((gg - w).abs() / (w.abs() + 1e-2)).max().item<double>();
      };
      EXPECT_LT(elem(out, o), kind.tol);
      EXPECT_LT(elem(dg, dgr), kind.tol);
      EXPECT_LT(elem(du, dur), kind.tol);
    }
  }
}

TEST(RopeKernel, MatchesReference) {
  torch::manual_seed(3);
  const int64_t B = 2, H = 4, T = 33, Tmax = 64;
  for (const auto& kind : kKinds) {
    for (int64_t hd : {int64_t{64}, int64_t{128}, int64_t{6}}) {
      auto tables = fathom::model::rope_tables(Tmax, hd, 10000.0);
      auto cos = tables.cos.to(kCuda), sin = tables.sin.to(kCuda);
      auto positions = torch::randint(0, Tmax, {B, T}, torch::kInt64);
      auto pos_d = positions.to(kCuda);
      for (int layout = 0; layout < 2; ++layout) {
        for (bool backward : {false, true}) {
          SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " hd " + std::to_string(hd) + " layout " + std::to_string(layout) +
                       " backward " + std::to_string(backward));
          // layout 0: the model's transposed view of (B, T, H, hd); 1: contiguous (B, H, T, hd).
          auto x = layout == 0 ? rnd({B, T, H, hd}, kind.st).transpose(1, 2) : rnd({B, H, T, hd}, kind.st);
          auto y = torch::empty({B, H, T, hd}, x.options());
          for (bool at : {false, true}) {
            k::RopeArgs a;
            a.x = x.data_ptr();
            a.y = y.data_ptr();
            a.B = B; a.H = H; a.T = T; a.hd = hd;
            a.x_sb = x.stride(0); a.x_sh = x.stride(1); a.x_st = x.stride(2);
            a.y_sb = y.stride(0); a.y_sh = y.stride(1); a.y_st = y.stride(2);
            a.cos = cos.data_ptr<float>();
            a.sin = sin.data_ptr<float>();
            a.positions = at ? pos_d.data_ptr<int64_t>() : nullptr;
            a.offset = at ? 0 : Tmax - T;
            a.backward = backward;
            k::rope_apply(kind.dt, a, stream());
            // The reference on contiguous host copies.
            auto xs = host(x.contiguous());
            auto cs = host(tables.cos), ss = host(tables.sin);
            std::vector<float> yr(B * H * T * hd);
            auto pos_h = positions.contiguous();
            k::RopeArgs r = a;
            r.x = xs.data();
            r.y = yr.data();
            r.x_sb = H * T * hd; r.x_sh = T * hd; r.x_st = hd;
            r.y_sb = H * T * hd; r.y_sh = T * hd; r.y_st = hd;
            r.cos = cs.data();
            r.sin = ss.data();
            r.positions = at ? pos_h.data_ptr<int64_t>() : nullptr;
            k::ref::rope_apply(r);
            EXPECT_LT(max_rel(y, tens(yr, {B, H, T, hd})), kind.tol) << "at " << at;
          }
        }
      }
    }
  }
}

TEST(CrossEntropyKernel, MatchesReference) {
  torch::manual_seed(8);
  // V 10,000 in chunks of 4,096, 4,096 and 1,808 columns: wide enough that a thread's later unrolled
  // loads (kUnroll in cross_entropy.cu) carry packs of their own. V 40,000 in chunks of 16,384 (the
  // training path's width): the backward's grid then has several blocks across a row, and every
  // unrolled load of a 16-bit chunk carries a pack.
  struct Shape {
    int64_t V, chunk, rows;
  };
  for (const Shape& shape : {Shape{10000, 4096, 37}, Shape{10000, 4096, 300}, Shape{40000, 16384, 37}})
  for (const auto& kind : kKinds) {
    const int64_t V = shape.V, chunk = shape.chunk, rows = shape.rows;
    SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " V " + std::to_string(V) + " chunk " + std::to_string(chunk) + " rows " +
                 std::to_string(rows));
    auto logits = rnd({rows, V}, kind.st, 3.0);
    auto targets = torch::randint(0, V, {rows}, torch::kInt64);
    targets.index_put_({torch::arange(0, rows, 5)}, -100);  // every fifth row ignored
    auto t_d = targets.to(kCuda);
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(kCuda);
    auto m = torch::empty({rows}, f32), s = torch::empty({rows}, f32), zt = torch::empty({rows}, f32);
    auto lse = torch::empty({rows}, f32), loss = torch::empty({rows}, f32);
    auto dl = torch::empty_like(logits);
    auto scale = torch::full({1}, 0.5, f32);
    k::ce_init(rows, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(), stream());
    const auto esz = logits.element_size();
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      ASSERT_TRUE(k::ce_chunk_supported(kind.dt, n, V));
      k::ce_chunk_forward(kind.dt, static_cast<char*>(logits.data_ptr()) + v0 * esz, V, rows, n, v0, t_d.data_ptr<int64_t>(),
                          m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(), stream());
    }
    k::ce_finish(rows, t_d.data_ptr<int64_t>(), -100, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(),
                 lse.data_ptr<float>(), loss.data_ptr<float>(), stream());
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      k::ce_chunk_backward(kind.dt, static_cast<char*>(logits.data_ptr()) + v0 * esz, V, static_cast<char*>(dl.data_ptr()) + v0 * esz,
                           V, rows, n, v0, t_d.data_ptr<int64_t>(), -100, lse.data_ptr<float>(), scale.data_ptr<float>(), stream());
    }
    auto zs = host(logits);
    std::vector<float> lr(rows), lossr(rows), dlr(rows * V);
    k::ref::cross_entropy(zs.data(), rows, V, targets.data_ptr<int64_t>(), -100, 0.5f, lr.data(), lossr.data(), dlr.data());
    EXPECT_LT(max_rel(lse, tens(lr, {rows})), 1e-5);
    EXPECT_LT(max_rel(loss, tens(lossr, {rows})), 1e-4);
    EXPECT_LT(max_rel(dl, tens(dlr, {rows, V})), kind.tol);
  }
}

// ce_scale: x *= s in place, one fp32 multiply and one rounding per element: exactly what ATen's
// x.float() * s rounded back gives. Sizes with a tail after the 16-byte packs, and a start that is
// not 16-byte aligned (the element-at-a-time path).
TEST(CrossEntropyKernel, ScaleInPlaceMatchesTheComposite) {
  torch::manual_seed(18);
  for (const auto& kind : kKinds) {
    for (int64_t n : {1, 7, 4099, 1 << 20}) {
      for (int64_t offset : {0, 1}) {
        SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " n " + std::to_string(n) + " offset " + std::to_string(offset));
        auto base = rnd({n + offset + 16}, kind.st, 3.0);
        auto x = base.narrow(0, offset, n);
        auto before = base.clone();
        auto want = (x.to(torch::kFloat32) * 0.3125f).to(kind.st);
        auto s = torch::full({1}, 0.3125, torch::TensorOptions().dtype(torch::kFloat32).device(kCuda));
        k::ce_scale(kind.dt, x.data_ptr(), n, s.data_ptr<float>(), stream());
        EXPECT_TRUE(torch::equal(x, want));
        // Nothing outside x is written: the elements before it and the 16 after it.
        EXPECT_TRUE(torch::equal(base.narrow(0, 0, offset), before.narrow(0, 0, offset)));
        EXPECT_TRUE(torch::equal(base.narrow(0, offset + n, 16), before.narrow(0, offset + n, 16)));
      }
    }
  }
}

TEST(Int8GemvKernel, MatchesReference) {
  torch::manual_seed(10);
  const int64_t N = 300, K = 2048;
  auto q = torch::randint(-127, 128, {N, K}, torch::kInt8);
  auto q_d = q.to(kCuda);
  for (const auto& kind : kKinds) {
    auto scale = (torch::rand({N}) * 0.01 + 0.001).to(kCuda, kind.st);
    for (int64_t B = 1; B <= 8; ++B) {
      SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " B " + std::to_string(B));
      auto x = rnd({B, K}, kind.st);
      auto y = torch::empty({B, N}, x.options());
      k::int8_gemv(kind.dt, x.data_ptr(), q_d.data_ptr<int8_t>(), scale.data_ptr(), y.data_ptr(), B, N, K, stream());
      auto xs = host(x), ss = host(scale);
      std::vector<float> yr(B * N);
      k::ref::int8_gemv(xs.data(), q.data_ptr<int8_t>(), ss.data(), yr.data(), B, N, K);
      EXPECT_LT(max_rel(y, tens(yr, {B, N})), kind.tol);
    }
  }
}

TEST(DecodeGemvKernel, MatchesReference) {
  torch::manual_seed(12);
  // K = 1040: not a multiple of a warp's 32 × 16-byte stride (tails); rows 300/64/64: a partial block.
  const std::vector<int64_t> rows = {300, 64, 64};
  for (int64_t K : {int64_t{2048}, int64_t{1040}}) {
    for (bool int8 : {false, true}) {
      for (bool swiglu : {false, true}) {
        const int segments = swiglu ? 2 : 3;
        for (const auto& kind : kKinds) {
          std::vector<torch::Tensor> w(3), wh(3), sc(3), bias(3);
          for (int i = 0; i < segments; ++i) {
            const int64_t n = swiglu ? rows[0] : rows[i];
            wh[i] = int8 ? torch::randint(-127, 128, {n, K}, torch::kInt8) : (torch::randn({n, K}) * 0.05).to(kind.st);
            w[i] = wh[i].to(kCuda);
            if (int8) sc[i] = (torch::rand({n}) * 0.002 + 0.0005).to(kCuda, kind.st);
            bias[i] = rnd({n}, kind.st, 0.1);
          }
          for (int64_t B : {1, 2, 3, 5, 8}) {
            SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " K " + std::to_string(K) + (int8 ? " int8" : "") +
                         (swiglu ? " swiglu" : " 3 segments") + " B " + std::to_string(B));
            auto x = rnd({B, K}, kind.st);
            k::GemvArgs a;
            a.x = x.data_ptr();
            a.B = B;
            a.K = K;
            a.segments = segments;
            a.int8 = int8;
            a.swiglu = swiglu;
            int64_t total = 0;
            for (int i = 0; i < segments; ++i) {
              a.seg[i] = k::GemvSegment{w[i].data_ptr(), int8 ? sc[i].data_ptr() : nullptr, bias[i].data_ptr(), w[i].size(0)};
              total += w[i].size(0);
            }
            const int64_t cols = swiglu ? rows[0] : total;
            auto y = torch::empty({B, cols}, x.options());
            a.y = y.data_ptr();
            // The residual epilogue (down_proj's h + x·Wᵀ), on odd row counts.
            const bool with_residual = !swiglu && B % 2 == 1;
            auto res = rnd({B, cols}, kind.st);
            if (with_residual) a.residual = res.data_ptr();
            ASSERT_TRUE(k::gemv_supported(kind.dt, a));
            k::gemv(kind.dt, a, stream());
            // The reference on fp32 host copies (int8 weights as they are).
            auto xs = host(x);
            std::vector<std::vector<float>> ws(3), ss(3), bs(3);
            k::GemvArgs r = a;
            r.x = xs.data();
            auto res_h = host(res);
            r.residual = with_residual ? res_h.data() : nullptr;
            std::vector<float> yr(B * cols);
            r.y = yr.data();
            for (int i = 0; i < segments; ++i) {
              if (!int8) ws[i] = host(wh[i]);
              else ss[i] = host(sc[i]);
              bs[i] = host(bias[i]);
              r.seg[i] = k::GemvSegment{int8 ? static_cast<const void*>(wh[i].data_ptr<int8_t>()) : ws[i].data(),
                                        int8 ? ss[i].data() : nullptr, bs[i].data(), w[i].size(0)};
            }
            k::ref::gemv(r);
            EXPECT_LT(max_rel(y, tens(yr, {B, cols})), kind.tol);
          }
        }
      }
    }
  }
}

TEST(DecodeAttentionKernels, MatchReference) {
  torch::manual_seed(13);
  const int64_t Bc = 4, Hq = 8, Hkv = 2, S = 300, Tmax = 512;
  for (const auto& kind : kKinds) {
    for (int64_t hd : {int64_t{64}, int64_t{128}}) {
      // Positions 0 (one key), 127/128 (chunk edges) and 299 (three chunks, the cache's last slot).
      for (auto pv : {std::vector<int64_t>{0}, std::vector<int64_t>{127, 128, 5}, std::vector<int64_t>{299, 1, 200, 64}}) {
        const int64_t B = static_cast<int64_t>(pv.size());
        SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " hd " + std::to_string(hd) + " B " + std::to_string(B) + " pos0 " +
                     std::to_string(pv[0]));
        auto tables = fathom::model::rope_tables(Tmax, hd, 10000.0);
        auto cos = tables.cos.to(kCuda), sin = tables.sin.to(kCuda);
        auto kc = rnd({Bc, Hkv, S, hd}, kind.st), vc = rnd({Bc, Hkv, S, hd}, kind.st);
        auto qkv = rnd({B, (Hq + 2 * Hkv) * hd}, kind.st);
        auto positions = torch::tensor(pv, torch::kInt64);
        auto pos_d = positions.to(kCuda);
        // Host copies before the kernels change them.
        auto qkv_h = host(qkv), kc_h = host(kc), vc_h = host(vc), cs = host(tables.cos), ss = host(tables.sin);
        const k::KvCacheView view{kc.data_ptr(), vc.data_ptr(), kc.stride(0), kc.stride(1), kc.stride(2)};
        k::DecodeRopeAppendArgs r;
        r.qkv = qkv.data_ptr();
        r.row_stride = qkv.stride(0);
        r.B = B; r.Hq = Hq; r.Hkv = Hkv; r.hd = hd;
        r.cos = cos.data_ptr<float>();
        r.sin = sin.data_ptr<float>();
        r.positions = pos_d.data_ptr<int64_t>();
        r.cache = view;
        k::decode_rope_append(kind.dt, r, stream());
        auto y = torch::empty({B, Hq * hd}, qkv.options());
        k::DecodeAttentionArgs a;
        a.q = qkv.data_ptr();
        a.q_stride = qkv.stride(0);
        a.cache = view;
        a.positions = pos_d.data_ptr<int64_t>();
        a.y = y.data_ptr();
        a.B = B; a.Hq = Hq; a.Hkv = Hkv; a.hd = hd;
        a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
        k::decode_attention(kind.dt, a, stream());
        // The flash-decoding split: max_keys = S (300) cuts the keys into stretches of ≥ 64 and merges.
        auto y_split = torch::empty_like(y);
        k::DecodeAttentionArgs as = a;
        as.y = y_split.data_ptr();
        as.max_keys = S;
        ASSERT_GT(k::decode_attention_workspace(as), 0);
        auto ws = torch::empty({k::decode_attention_workspace(as)}, torch::TensorOptions().dtype(torch::kFloat32).device(kCuda));
        as.workspace = ws.data_ptr<float>();
        k::decode_attention(kind.dt, as, stream());

        const k::KvCacheView hview{kc_h.data(), vc_h.data(), kc.stride(0), kc.stride(1), kc.stride(2)};
        k::DecodeRopeAppendArgs rr = r;
        rr.qkv = qkv_h.data();
        rr.cos = cs.data();
        rr.sin = ss.data();
        rr.positions = positions.data_ptr<int64_t>();
        rr.cache = hview;
        k::ref::decode_rope_append(rr);
        // The reference attends with the kernel's rounded q and cache (what a later step reads), so
        // the comparison isolates the attention arithmetic.
        auto qkv_k = host(qkv), kc_k = host(kc), vc_k = host(vc);
        EXPECT_LT(max_rel(qkv, tens(qkv_h, {B, (Hq + 2 * Hkv) * hd})), kind.tol) << "rotated q";
        EXPECT_LT(max_rel(kc, tens(kc_h, {Bc, Hkv, S, hd})), kind.tol) << "k cache";
        EXPECT_LT(max_rel(vc, tens(vc_h, {Bc, Hkv, S, hd})), 1e-7) << "v cache";
        std::vector<float> yr(B * Hq * hd);
        k::DecodeAttentionArgs ar = a;
        ar.q = qkv_k.data();
        ar.cache = k::KvCacheView{kc_k.data(), vc_k.data(), kc.stride(0), kc.stride(1), kc.stride(2)};
        ar.positions = positions.data_ptr<int64_t>();
        ar.y = yr.data();
        k::ref::decode_attention(ar);
        EXPECT_LT(max_rel(y, tens(yr, {B, Hq * hd})), kind.tol) << "attention";
        EXPECT_LT(max_rel(y_split, tens(yr, {B, Hq * hd})), kind.tol) << "attention, keys split";
      }
    }
  }
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
// FP8 quantisation: the kernels' bytes equal LibTorch's composite (same arithmetic, same rounding),
// and the values they stand for equal the reference's rounding from the formats' definitions.
TEST(Fp8CastKernel, MatchesCompositeAndReference) {
  torch::manual_seed(15);
  for (const auto& kind : kKinds) {
    for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{4096}, int64_t{2048 * 2048 + 3}}) {
      for (bool e4m3 : {true, false}) {
        SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " n " + std::to_string(n) + (e4m3 ? " e4m3" : " e5m2"));
        // Magnitudes over ten binades, so the subnormals and the top of the range both occur.
        auto x = (torch::randn({n}) * torch::pow(2.0, torch::randint(-10, 1, {n}).to(torch::kFloat32))).to(kCuda, kind.st);
        ops::set_kernels_enabled(true);
        const auto got = ops::fp8_quantize(x, e4m3);
        const auto want = ops::composite::fp8_quantize(x, e4m3);
        ops::set_kernels_enabled(std::nullopt);
        EXPECT_EQ(got.inv.item<float>(), want.inv.item<float>());
        EXPECT_TRUE(torch::equal(got.q.view(torch::kUInt8).cpu(), want.q.view(torch::kUInt8).cpu()));
        auto xs = host(x);
        std::vector<float> q(n);
        const float inv = k::ref::fp8_quantize(xs.data(), n, e4m3 ? k::Fp8Format::e4m3 : k::Fp8Format::e5m2, q.data());
        EXPECT_EQ(inv, got.inv.item<float>());
        EXPECT_TRUE(torch::equal(got.q.to(torch::kFloat32).cpu(), tens(q, {n})));
      }
    }
  }
  // A NaN makes the scale and every value NaN (the trainer's non-finite guard then skips the step).
  auto x = torch::randn({1000}, kCuda).to(torch::kBFloat16);
  x[17] = std::nanf("");
  ops::set_kernels_enabled(true);
  const auto s = ops::fp8_quantize(x, true);
  ops::set_kernels_enabled(std::nullopt);
  EXPECT_TRUE(std::isnan(s.inv.item<float>()));
  EXPECT_TRUE(s.q.to(torch::kFloat32).isnan().all().item<bool>());
}
#endif

TEST(AdamWKernel, MatchesReference) {
  // Sizes that take every path: 1 element, a float4 tail (4097), several chunks (70,001), a
  // misaligned view (offset 1: the scalar path), an empty tensor (skipped without a slot: the
  // tensor after the first launch's last must not be updated twice), and more than 48 tensors
  // (two launches).
  torch::manual_seed(14);
  std::vector<int64_t> sizes = {1, 4097, 70001, 333, 0};
  for (int i = 0; i < 70; ++i) sizes.push_back(17 + i);
  std::vector<torch::Tensor> p, g, m, v;
  for (auto n : sizes) {
    p.push_back(torch::randn({n}));
    g.push_back(torch::randn({n}));
    m.push_back(torch::randn({n}) * 0.1);
    v.push_back(torch::rand({n}) * 0.01);
  }
  std::vector<torch::Tensor> pd, gd, md, vd;
  for (size_t i = 0; i < sizes.size(); ++i) {
    pd.push_back(p[i].to(kCuda));
    gd.push_back(g[i].to(kCuda));
    md.push_back(m[i].to(kCuda));
    vd.push_back(v[i].to(kCuda));
  }
  auto big = torch::zeros({334}, torch::TensorOptions().device(kCuda));
  big.narrow(0, 1, 333).copy_(pd[3]);
  pd[3] = big.narrow(0, 1, 333);  // 4-byte offset: not 16-byte aligned
  k::AdamWHyper h;
  h.lr = 1e-3f; h.beta1 = 0.9f; h.beta2 = 0.95f; h.eps = 1e-8f; h.weight_decay = 0.1f;
  h.step_size = 1e-3f / (1.f - 0.9f);
  h.bias_correction2_sqrt = std::sqrt(1.f - 0.95f);
  h.grad_scale = 0.7f;  // a clip coefficient, applied as the gradients are read
  std::vector<k::AdamWTensor> ts, tr;
  std::vector<std::vector<float>> hp, hg, hm, hv;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ts.push_back({pd[i].data_ptr<float>(), gd[i].data_ptr<float>(), md[i].data_ptr<float>(), vd[i].data_ptr<float>(), sizes[i],
                  i % 2 == 0});
    hp.push_back(host(p[i]));
    hg.push_back(host(g[i]));
    hm.push_back(host(m[i]));
    hv.push_back(host(v[i]));
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    tr.push_back({hp[i].data(), hg[i].data(), hm[i].data(), hv[i].data(), sizes[i], i % 2 == 0});
  k::adamw_step(ts.data(), static_cast<int>(ts.size()), h, stream());
  k::ref::adamw_step(tr.data(), static_cast<int>(tr.size()), h);
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == 0) continue;
    SCOPED_TRACE("tensor " + std::to_string(i) + " of " + std::to_string(sizes[i]));
    EXPECT_LT(max_rel(pd[i], tens(hp[i], {sizes[i]})), 1e-6);
    EXPECT_LT(max_rel(md[i], tens(hm[i], {sizes[i]})), 1e-6);
    EXPECT_LT(max_rel(vd[i], tens(hv[i], {sizes[i]})), 1e-6);
  }
  EXPECT_EQ(big[0].item<float>(), 0.f) << "the element before the misaligned view";
}

// AdamWHyper::streaming only changes cache hints: from one state, both variants write the same bits,
// fp32 and mixed-precision tensors alike (16-byte path and tail).
TEST(AdamWKernel, StreamingHintsGiveTheSameBits) {
  torch::manual_seed(19);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(kCuda);
  const std::vector<int64_t> sizes = {4099, 70001, 13};
  struct State { std::vector<torch::Tensor> p, g, m, v, gb, wb; };
  State init;
  for (int64_t n : sizes) {
    init.p.push_back(torch::randn({n}, f32));
    init.g.push_back(torch::randn({n}, f32) * 0.1);
    init.m.push_back(torch::randn({n}, f32) * 0.01);
    init.v.push_back(torch::rand({n}, f32) * 0.01);
    init.gb.push_back(init.g.back().to(torch::kBFloat16));
    init.wb.push_back(init.p.back().to(torch::kBFloat16));
  }
  auto clones = [](const std::vector<torch::Tensor>& ts) {
    std::vector<torch::Tensor> out;
    for (const auto& t : ts) out.push_back(t.clone());
    return out;
  };
  auto run = [&](bool streaming) {
    State s{clones(init.p), clones(init.g), clones(init.m), clones(init.v), clones(init.gb), clones(init.wb)};
    std::vector<k::AdamWTensor> ts;
    for (size_t i = 0; i < sizes.size(); ++i) {
      k::AdamWTensor t{s.p[i].data_ptr<float>(), s.g[i].data_ptr<float>(), s.m[i].data_ptr<float>(), s.v[i].data_ptr<float>(),
                       sizes[i], i % 2 == 0};
      if (i == 1) {  // mixed precision: bf16 gradient in, bf16 model copy out
        t.g_bf16 = static_cast<const uint16_t*>(s.gb[i].data_ptr());
        t.model_bf16 = static_cast<uint16_t*>(s.wb[i].data_ptr());
      }
      ts.push_back(t);
    }
    k::AdamWHyper h;
    h.lr = 1e-3f; h.weight_decay = 0.1f; h.step_size = 1e-2f; h.bias_correction2_sqrt = 0.2f; h.grad_scale = 0.5f;
    h.streaming = streaming;
    k::adamw_step(ts.data(), static_cast<int>(ts.size()), h, stream());
    return s;
  };
  const auto plain = run(false), streamed = run(true);
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_FALSE(torch::equal(plain.p[i], init.p[i]));  // (the update ran)
    EXPECT_TRUE(torch::equal(plain.p[i], streamed.p[i]));
    EXPECT_TRUE(torch::equal(plain.m[i], streamed.m[i]));
    EXPECT_TRUE(torch::equal(plain.v[i], streamed.v[i]));
    EXPECT_TRUE(torch::equal(plain.wb[i], streamed.wb[i]));
  }
}

// The gradient norm and clip coefficient on the device (kernels::grad_norm_clip) against the naive
// reference: fp32 and bf16 tensors, every load path (16-byte, tail, a misaligned view), an empty
// tensor and more than 48 tensors (several launches); then the coefficient's rules: max_norm ≤ 0
// gives 1, a non-finite loss or gradient gives NaN, and the AdamW kernel reading a NaN coefficient
// writes nothing.
TEST(AdamWKernel, GradNormClipMatchesReference) {
  torch::manual_seed(15);
  std::vector<int64_t> sizes = {1, 4097, 70001, 333, 0, 9};
  for (int i = 0; i < 60; ++i) sizes.push_back(5 + 3 * i);
  std::vector<torch::Tensor> dev;
  std::vector<std::vector<uint16_t>> hb;
  std::vector<std::vector<float>> hf;
  std::vector<k::NormTensor> td, tr;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const bool bf = i % 2 == 1;
    auto t = (torch::randn({sizes[i] + 1}) * 0.3).to(kCuda).to(bf ? torch::kBFloat16 : torch::kFloat32);
    t = i == 3 ? t.narrow(0, 1, sizes[i]) : t.narrow(0, 0, sizes[i]);  // tensor 3: not 16-byte aligned
    dev.push_back(t);
    auto c = t.to(torch::kCPU).contiguous();
    if (bf) {
      hb.emplace_back(static_cast<const uint16_t*>(c.data_ptr()), static_cast<const uint16_t*>(c.data_ptr()) + sizes[i]);
      hf.emplace_back();
    } else {
      hf.emplace_back(c.data_ptr<float>(), c.data_ptr<float>() + sizes[i]);
      hb.emplace_back();
    }
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const bool bf = i % 2 == 1;
    td.push_back({dev[i].data_ptr(), sizes[i], bf});
    tr.push_back({bf ? static_cast<const void*>(hb[i].data()) : static_cast<const void*>(hf[i].data()), sizes[i], bf});
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(kCuda);
  auto ws = torch::empty({k::grad_norm_clip_workspace(static_cast<int>(td.size()))}, f32);
  auto run = [&](float max_norm, float loss_value) {
    auto loss = torch::full({1}, loss_value, f32);
    auto out = torch::empty({2}, f32);
    k::grad_norm_clip(td.data(), static_cast<int>(td.size()), ws.data_ptr<float>(), max_norm, loss.data_ptr<float>(),
                      out.data_ptr<float>(), stream());
    float want[2];
    k::ref::grad_norm_clip(tr.data(), static_cast<int>(tr.size()), max_norm, &loss_value, want);
    return std::make_pair(host(out), std::vector<float>{want[0], want[1]});
  };
  {
    auto [got, want] = run(1.0f, 2.5f);
    EXPECT_NEAR(got[0], want[0], 1e-5 * want[0]);
    EXPECT_NEAR(got[1], want[1], 1e-5);
    EXPECT_GT(want[0], 1.0f) << "the test's norm must exceed max_norm for the coefficient to clip";
    EXPECT_LT(got[1], 1.0f);
  }
  {
    auto [got, want] = run(0.f, 2.5f);  // max_norm ≤ 0: only measures
    EXPECT_NEAR(got[0], want[0], 1e-5 * want[0]);
    EXPECT_EQ(got[1], 1.0f);
  }
  {
    auto [got, want] = run(1.0f, std::numeric_limits<float>::infinity());  // a non-finite loss
    EXPECT_TRUE(std::isnan(got[1])) << got[1];
    EXPECT_TRUE(std::isnan(want[1]));
  }
  dev[2].view(-1)[17] = std::numeric_limits<float>::quiet_NaN();  // a non-finite gradient
  td[2].p = dev[2].data_ptr();
  auto loss = torch::full({1}, 2.5f, f32);
  auto out = torch::empty({2}, f32);
  k::grad_norm_clip(td.data(), static_cast<int>(td.size()), ws.data_ptr<float>(), 1.0f, loss.data_ptr<float>(), out.data_ptr<float>(),
                    stream());
  EXPECT_TRUE(std::isnan(host(out)[1]));
  // AdamW reading that coefficient from the device skips: parameter and moments untouched.
  auto p = torch::randn({5000}, f32), g = torch::randn({5000}, f32), m = torch::randn({5000}, f32), v = torch::rand({5000}, f32);
  auto p0 = p.clone(), m0 = m.clone(), v0 = v.clone();
  k::AdamWTensor t{p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), 5000, true};
  k::AdamWHyper h;
  h.lr = 1e-3f; h.weight_decay = 0.1f; h.step_size = 1e-2f;
  h.grad_scale_dev = out.data_ptr<float>() + 1;
  k::adamw_step(&t, 1, h, stream());
  EXPECT_TRUE(torch::equal(p, p0) && torch::equal(m, m0) && torch::equal(v, v0)) << "a NaN coefficient must skip the update";
  // A finite device coefficient is the same as the host one.
  auto coef = torch::full({1}, 0.37f, f32);
  h.grad_scale_dev = coef.data_ptr<float>();
  k::adamw_step(&t, 1, h, stream());
  auto pa = p.clone(), ma = m.clone(), va = v.clone();
  p.copy_(p0); m.copy_(m0); v.copy_(v0);
  h.grad_scale_dev = nullptr;
  h.grad_scale = 0.37f;
  k::adamw_step(&t, 1, h, stream());
  EXPECT_TRUE(torch::equal(p, pa) && torch::equal(m, ma) && torch::equal(v, va));
}

// ---- 2. engine ops: fused path against the composite -----------------------------------------

// Routing of N tokens to k of E experts each with a capacity that drops some assignments.
namespace {
ops::MoeRouting moe_routing(int64_t N, int64_t k, int64_t E, int64_t capacity) {
  std::vector<torch::Tensor> picks;
  for (int64_t t = 0; t < N; ++t) picks.push_back(torch::randperm(E).narrow(0, 0, k));
  return ops::moe_route(torch::stack(picks, 0).to(kCuda), E, capacity);
}
}  // namespace

TEST(MoeKernels, MatchReference) {
  torch::manual_seed(12);
  for (const auto& kind : kKinds) {
    // 2048 and 7168: whole packs (llama-1b's and DeepSeek-V3's widths); 36: the scalar kernel for 16-bit types.
    for (int64_t C : {int64_t{2048}, int64_t{7168}, int64_t{36}}) {
      const int64_t N = 257, k = 4, E = 16, capacity = 60;  // even share 64.25: a few experts overflow
      SCOPED_TRACE(std::string(k::dtype_name(kind.dt)) + " C " + std::to_string(C));
      const auto r = moe_routing(N, k, E, capacity);
      const int64_t P = r.kept();
      auto x = rnd({N, C}, kind.st), y = rnd({P, C}, kind.st), dout = rnd({N, C}, kind.st);
      auto w = torch::rand({N, k}, torch::TensorOptions(kCuda));
      auto scale = w.reshape({-1}).index_select(0, r.assign).contiguous();
      auto xp = torch::empty({P, C}, x.options()), dy = torch::empty({P, C}, x.options());
      auto out = torch::empty({N, C}, x.options()), dx = torch::empty({N, C}, x.options());
      auto dw = torch::empty({N, k}, w.options());
      auto src = r.src.contiguous(), pos = r.pos.contiguous();
      k::moe_gather_rows(kind.dt, x.data_ptr(), src.data_ptr<int64_t>(), nullptr, xp.data_ptr(), P, C, stream());
      k::moe_combine_rows(kind.dt, y.data_ptr(), pos.data_ptr<int64_t>(), w.data_ptr<float>(), out.data_ptr(), N, k, C,
                          stream());
      k::moe_combine_rows(kind.dt, xp.data_ptr(), pos.data_ptr<int64_t>(), nullptr, dx.data_ptr(), N, k, C, stream());
      k::moe_gather_rows(kind.dt, dout.data_ptr(), src.data_ptr<int64_t>(), scale.data_ptr<float>(), dy.data_ptr(), P, C,
                         stream());
      k::moe_combine_weight_grad(kind.dt, dout.data_ptr(), y.data_ptr(), pos.data_ptr<int64_t>(), dw.data_ptr<float>(), N, k,
                                 C, stream());
      auto xs = host(x), ys = host(y), ds = host(dout), ws = host(w), ss = host(scale);
      auto src_h = src.cpu(), pos_h = pos.cpu();
      const int64_t* sp = src_h.data_ptr<int64_t>();
      const int64_t* pp = pos_h.data_ptr<int64_t>();
      std::vector<float> xp_r(P * C), out_r(N * C), dx_r(N * C), dy_r(P * C), dw_r(N * k);
      k::ref::moe_gather_rows(xs.data(), sp, nullptr, xp_r.data(), P, C);
      k::ref::moe_combine_rows(ys.data(), pp, ws.data(), out_r.data(), N, k, C);
      k::ref::moe_combine_rows(xp_r.data(), pp, nullptr, dx_r.data(), N, k, C);
      k::ref::moe_gather_rows(ds.data(), sp, ss.data(), dy_r.data(), P, C);
      k::ref::moe_combine_weight_grad(ds.data(), ys.data(), pp, dw_r.data(), N, k, C);
      EXPECT_EQ(max_rel(xp, tens(xp_r, {P, C})), 0.0) << "the dispatch is a copy";
      EXPECT_LT(max_rel(out, tens(out_r, {N, C})), kind.tol);
      EXPECT_LT(max_rel(dx, tens(dx_r, {N, C})), kind.tol);
      EXPECT_LT(max_rel(dy, tens(dy_r, {P, C})), kind.tol);
      EXPECT_LT(max_rel(dw, tens(dw_r, {N, k})), 1e-4);
      EXPECT_EQ(dw.masked_select(pos < 0).abs().sum().item<double>(), 0.0);
    }
  }
}

namespace {
struct Grads {
  std::vector<torch::Tensor> outs, grads;
};
// Runs f on fresh leaf copies of inputs, backpropagates sum(out_i · seed_i), returns outputs and grads.
template <typename F>
Grads run_with_grads(const std::vector<torch::Tensor>& inputs, const std::vector<torch::Tensor>& seeds, F f) {
  std::vector<torch::Tensor> leaves;
  for (const auto& t : inputs) leaves.push_back(t.detach().clone().requires_grad_(true));
  auto outs = f(leaves);
  torch::Tensor loss;
  for (size_t i = 0; i < outs.size(); ++i) {
    auto term = (outs[i].to(torch::kFloat32) * seeds[i]).sum();
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  Grads g;
  for (auto& o : outs) g.outs.push_back(o.detach());
  for (auto& l : leaves) g.grads.push_back(l.grad());
  return g;
}
void expect_close(const Grads& fused, const Grads& comp, double tol, const std::string& what) {
  for (size_t i = 0; i < comp.outs.size(); ++i) EXPECT_LT(max_rel(fused.outs[i], comp.outs[i]), tol) << what << " output " << i;
  for (size_t i = 0; i < comp.grads.size(); ++i) {
    ASSERT_TRUE(fused.grads[i].defined()) << what << " grad " << i;
    EXPECT_EQ(fused.grads[i].scalar_type(), comp.grads[i].scalar_type()) << what << " grad " << i;
    EXPECT_LT(max_rel(fused.grads[i], comp.grads[i]), tol) << what << " grad " << i;
  }
}
}  // namespace

TEST(EngineOps, AddRmsNormFusedMatchesComposite) {
  torch::manual_seed(4);
  ops::set_kernels_enabled(true);
  for (const auto& kind : kKinds) {
    for (int64_t C : {int64_t{768}, int64_t{2048}}) {
      const std::string what = std::string(k::dtype_name(kind.dt)) + " C " + std::to_string(C);
      auto x = rnd({2, 50, C}, kind.st), r = rnd({2, 50, C}, kind.st), w = rnd({C}, kind.st, 0.2, 1.0);
      auto sy = torch::randn({2, 50, C}, kCuda), sh = torch::randn({2, 50, C}, kCuda);
      auto fused = run_with_grads({x, r, w}, {sy, sh}, [](auto& in) {
        auto [y, h] = ops::add_rmsnorm(in[0], in[1], in[2], 1e-5);
        return std::vector<torch::Tensor>{y, h};
      });
      auto comp = run_with_grads({x, r, w}, {sy, sh}, [](auto& in) {
        auto [y, h] = ops::composite::add_rmsnorm(in[0], in[1], in[2], 1e-5);
        return std::vector<torch::Tensor>{y, h};
      });
      expect_close(fused, comp, kind.tol, "add_rmsnorm " + what);
      // A gradient through y alone (h unused: the final norm) and through h alone (y unused).
      auto fused_y = run_with_grads({x, r, w}, {sy}, [](auto& in) { return std::vector<torch::Tensor>{ops::add_rmsnorm(in[0], in[1], in[2], 1e-5).first}; });
      auto comp_y = run_with_grads({x, r, w}, {sy}, [](auto& in) {
        return std::vector<torch::Tensor>{ops::composite::add_rmsnorm(in[0], in[1], in[2], 1e-5).first};
      });
      expect_close(fused_y, comp_y, kind.tol, "add_rmsnorm, y alone " + what);
      auto fused_h = run_with_grads({x, r, w}, {sh}, [](auto& in) {
        return std::vector<torch::Tensor>{ops::add_rmsnorm(in[0], in[1], in[2], 1e-5).second};
      });
      auto comp_h = run_with_grads({x, r, w}, {sh}, [](auto& in) {
        return std::vector<torch::Tensor>{ops::composite::add_rmsnorm(in[0], in[1], in[2], 1e-5).second};
      });
      // (w takes no part in h: the composite leaves its gradient undefined, the fused node zero.)
      ASSERT_FALSE(comp_h.grads[2].defined());
      if (fused_h.grads[2].defined()) EXPECT_EQ(fused_h.grads[2].abs().max().item<double>(), 0.0) << what;
      fused_h.grads.pop_back();
      comp_h.grads.pop_back();
      expect_close(fused_h, comp_h, kind.tol, "add_rmsnorm, h alone " + what);
      auto fused1 = run_with_grads({x, w}, {sy}, [](auto& in) { return std::vector<torch::Tensor>{ops::rmsnorm(in[0], in[1], 1e-5)}; });
      auto comp1 = run_with_grads({x, w}, {sy},
                                  [](auto& in) { return std::vector<torch::Tensor>{ops::composite::rmsnorm(in[0], in[1], 1e-5)}; });
      expect_close(fused1, comp1, kind.tol, "rmsnorm " + what);
    }
  }
  // A non-contiguous input (a transposed view) and inference mode take the fused path too.
  auto x = rnd({64, 8, 768}, torch::kBFloat16).transpose(0, 1);
  auto w = rnd({768}, torch::kBFloat16, 0.2, 1.0);
  torch::NoGradGuard ng;
  EXPECT_LT(max_rel(ops::rmsnorm(x, w, 1e-6), ops::composite::rmsnorm(x, w, 1e-6)), 2e-2);
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, SwiGluFusedMatchesComposite) {
  torch::manual_seed(5);
  ops::set_kernels_enabled(true);
  for (const auto& kind : kKinds) {
    auto g = rnd({3, 40, 2048}, kind.st, 3.0), u = rnd({3, 40, 2048}, kind.st);
    auto s = torch::randn({3, 40, 2048}, kCuda);
    auto fused = run_with_grads({g, u}, {s}, [](auto& in) { return std::vector<torch::Tensor>{ops::swiglu(in[0], in[1])}; });
    auto comp = run_with_grads({g, u}, {s}, [](auto& in) { return std::vector<torch::Tensor>{ops::composite::swiglu(in[0], in[1])}; });
    // The composite rounds silu(g) before the product (and in the backward): one more rounding.
    expect_close(fused, comp, 2 * kind.tol, std::string("swiglu ") + k::dtype_name(kind.dt));
  }
  // An unaligned view (offset of one element) is copied, not misread.
  auto big = rnd({4097}, torch::kBFloat16), u = rnd({4096}, torch::kBFloat16);
  auto g = big.narrow(0, 1, 4096);
  torch::NoGradGuard ng;
  EXPECT_LT(max_rel(ops::swiglu(g, u), ops::composite::swiglu(g, u)), 4e-2);
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, RopeFusedMatchesComposite) {
  torch::manual_seed(6);
  ops::set_kernels_enabled(true);
  const int64_t B = 2, H = 4, T = 48, hd = 64, Tmax = 128;
  auto tables = fathom::model::rope_tables(Tmax, hd, 500000.0);
  auto cos = tables.cos.to(kCuda), sin = tables.sin.to(kCuda);
  auto positions = torch::randint(0, Tmax, {B, T}, torch::kInt64).to(kCuda);
  for (const auto& kind : kKinds) {
    auto base = rnd({B, T, H, hd}, kind.st);
    auto s = torch::randn({B, H, T, hd}, kCuda);
    for (bool at : {false, true}) {
      auto f = [&](bool fused) {
        return [&, fused](auto& in) {
          auto x = in[0].transpose(1, 2);
          torch::Tensor y;
          if (at) y = fused ? ops::rope_apply_at(x, cos, sin, positions) : ops::composite::rope_apply_at(x, cos, sin, positions);
          else y = fused ? ops::rope_apply(x, cos, sin, 7) : ops::composite::rope_apply(x, cos, sin, 7);
          return std::vector<torch::Tensor>{y};
        };
      };
      auto fused = run_with_grads({base}, {s}, f(true));
      auto comp = run_with_grads({base}, {s}, f(false));
      // The composite rounds the tables and each product to the element type; the kernel does not.
      expect_close(fused, comp, 2 * kind.tol, std::string("rope ") + k::dtype_name(kind.dt) + (at ? " at" : ""));
    }
  }
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, LinearCrossEntropyFusedMatchesComposite) {
  torch::manual_seed(9);
  ops::set_kernels_enabled(true);
  struct Case { int64_t N, C, V, chunk; };
  for (const auto& c : std::vector<Case>{{300, 128, 5000, 1024}, {64, 64, 50304, 0}}) {
    for (const auto& kind : kKinds) {
      const std::string what = std::string("linear_ce ") + k::dtype_name(kind.dt) + " V " + std::to_string(c.V);
      auto h = rnd({c.N, c.C}, kind.st), w = rnd({c.V, c.C}, kind.st, 0.1);
      auto t = torch::randint(0, c.V, {c.N}, torch::kInt64);
      t.index_put_({torch::arange(0, c.N, 7)}, -100);
      t = t.to(kCuda);
      ASSERT_TRUE(ops::linear_cross_entropy_fusable(h, w, t)) << what;
      auto one = torch::ones({}, kCuda);
      auto comp = run_with_grads({h, w}, {one}, [&](auto& in) {
        return std::vector<torch::Tensor>{ops::composite::linear_cross_entropy_sum(in[0], in[1], t, -100)};
      });
      auto fused = run_with_grads({h, w}, {one}, [&](auto& in) {
        return std::vector<torch::Tensor>{ops::linear_cross_entropy_sum(in[0], in[1], t, -100, c.chunk, ops::LinearCeMode::vocab)};
      });
      expect_close(fused, comp, 2 * kind.tol, what + " vocab");
      // Row chunks (128 rows: several chunks), gradients made in the forward; a loss gradient of 0.5.
      auto half = torch::full({}, 0.5, kCuda);
      auto comp2 = run_with_grads({h, w}, {half}, [&](auto& in) {
        return std::vector<torch::Tensor>{ops::composite::linear_cross_entropy_sum(in[0], in[1], t, -100)};
      });
      auto rows = run_with_grads({h, w}, {half}, [&](auto& in) {
        return std::vector<torch::Tensor>{ops::linear_cross_entropy_sum(in[0], in[1], t, -100, 128, ops::LinearCeMode::rows)};
      });
      expect_close(rows, comp2, 2 * kind.tol, what + " rows");
    }
  }
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, Int8LinearFusedMatchesComposite) {
  torch::manual_seed(11);
  ops::set_kernels_enabled(true);
  fathom::model::Linear lin(2048, 512, /*bias=*/true);
  lin->to(kCuda, torch::kBFloat16);
  {
    torch::NoGradGuard ng;
    lin->bias.normal_();
  }
  lin->quantize_int8();
  torch::NoGradGuard ng;
  for (int64_t B : {1, 3, 8}) {
    auto x = rnd({B, 1, 2048}, torch::kBFloat16);
    ASSERT_TRUE(ops::int8_linear_fusable(x, lin->weight_int8, lin->weight_scale));
    auto fused = lin->forward(x);
    ops::set_kernels_enabled(false);
    auto comp = lin->forward(x);
    ops::set_kernels_enabled(true);
    EXPECT_EQ(fused.sizes(), comp.sizes());
    // The composite rounds every dequantised weight to bf16 first; the kernel applies the scale once.
    EXPECT_LT(max_rel(fused, comp), 2e-2) << "B " << B;
  }
  // More than 8 rows (prefill): the composite.
  EXPECT_FALSE(ops::int8_linear_fusable(rnd({9, 2048}, torch::kBFloat16), lin->weight_int8, lin->weight_scale));
  ops::set_kernels_enabled(std::nullopt);
}

// The decode fast path (q/k/v in one gemv, rotary + cache append, attention over the cache, gate/up +
// SwiGLU in one gemv, every other linear through the gemv) against the composite decode, step by
// step, rows at different positions as the continuous batcher feeds them; bf16 and int8 weights.
TEST(EngineOps, DecodeFastPathMatchesComposite) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 256; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 704; a.max_seq_len = 512;
  for (auto [int8_, B_] : {std::pair<bool, int64_t>{false, 1}, {false, 3}, {true, 1}, {true, 3}}) {
    const bool int8 = int8_;  // (a lambda below captures these: structured bindings cannot be captured in C++17)
    const int64_t B = B_;
    SCOPED_TRACE(std::string(int8 ? "int8" : "bf16") + " B " + std::to_string(B));
    torch::manual_seed(21);
    fathom::model::Transformer net(a);
    net->to(torch::kBFloat16);
    net->to_device(kCuda);
    if (int8) {
      for (const auto& m : net->modules(false))
        if (auto lin = std::dynamic_pointer_cast<fathom::model::LinearImpl>(m)) lin->quantize_int8();
      // The int8 copy of the (tied) LM head, read by the fused path only: the composite keeps bf16.
      EXPECT_EQ(net->quantize_head_for_decode(), 512 * 256 + 512 * 2);
      EXPECT_TRUE(net->head_quantized_for_decode());
    }
    net->eval();
    torch::NoGradGuard ng;
    const int64_t steps = 150;
    auto tokens = torch::randint(0, 512, {B, steps}, torch::kInt64).to(kCuda);
    // Rows start at different positions (0, 40, 200), so one step mixes short and long rows; past
    // 64 keys the attention splits them over more blocks (flash-decoding) and merges.
    const std::vector<int64_t> start = {0, 40, 200};
    auto run = [&](bool fused) {
      ops::set_kernels_enabled(fused);
      auto cache = net->new_cache(B, 512);
      std::vector<torch::Tensor> out;
      for (int64_t t = 0; t < steps; ++t) {
        std::vector<int64_t> pos;
        for (int64_t b = 0; b < B; ++b) pos.push_back(start[b] + t);
        auto step = fathom::model::DecodeStep::make(pos, kCuda);
        out.push_back(net->forward_decode(tokens.narrow(1, t, 1), cache, step).to(torch::kFloat32));
      }
      return std::make_pair(torch::stack(out), cache);
    };
    auto [fused, cache_f] = run(true);
    auto [comp, cache_c] = run(false);
    ops::set_kernels_enabled(std::nullopt);
    // bf16 rounding differs (fp32 sums and one rounding in the kernels), and drifts a little over the
    // steps through the cache: compare logits relative to their scale, and the argmax.
    EXPECT_LT(max_rel(fused, comp), 5e-2);
    const double agree = fused.argmax(-1).eq(comp.argmax(-1)).to(torch::kFloat32).mean().item<double>();
    EXPECT_GT(agree, 0.95) << "argmax agreement";
    EXPECT_LT(max_rel(cache_f.layers[1].first, cache_c.layers[1].first), 5e-2) << "k cache";
    EXPECT_LT(max_rel(cache_f.layers[1].second, cache_c.layers[1].second), 5e-2) << "v cache";
    std::cout << (int8 ? "int8" : "bf16") << " B " << B << " decode fused vs composite: max rel " << max_rel(fused, comp) << ", argmax agree "
              << agree << "\n";
  }
  // Which row counts take the gemv: bf16 weights 1-2 rows (q/k/v together up to 8), int8 up to 8.
  auto x9 = rnd({9, 256}, torch::kBFloat16);
  auto w = rnd({64, 256}, torch::kBFloat16);
  const ops::DecodeWeight d{w, {}, {}};
  ops::set_kernels_enabled(true);
  EXPECT_TRUE(ops::decode_linear_fusable(x9.narrow(0, 0, 2), {d}));
  EXPECT_FALSE(ops::decode_linear_fusable(x9.narrow(0, 0, 3), {d}));
  EXPECT_TRUE(ops::decode_linear_fusable(x9.narrow(0, 0, 8), {d, d, d}));
  EXPECT_FALSE(ops::decode_linear_fusable(x9, {d, d, d}));
  ops::set_kernels_enabled(std::nullopt);
}

// engine/train's AdamW on CUDA: the fused kernel (kernels on) against the path it replaced
// (LibTorch's at::_fused_adamw_ on LibTorch ≥ 2.1, else _foreach_), five steps, some clipped.
TEST(EngineOps, FusedAdamWMatchesTheOptimizersOtherPath) {
  torch::manual_seed(15);
  auto make = [] {
    std::vector<std::pair<std::string, torch::Tensor>> ps;
    torch::manual_seed(16);
    ps.emplace_back("w", torch::randn({256, 300}).to(kCuda));
    ps.emplace_back("b", torch::randn({300}).to(kCuda));
    ps.emplace_back("e", torch::randn({1000, 64}).to(kCuda));
    return ps;
  };
  auto run = [&](bool fused) {
    auto ps = make();
    fathom::train::AdamW opt(ps, fathom::train::AdamWOptions{});
    ops::set_kernels_enabled(fused);
    std::vector<torch::Tensor> p, g, m, v;
    for (auto& [n, t] : ps) {
      p.push_back(t);
      g.push_back(torch::zeros_like(t));
      m.push_back(torch::zeros_like(t));
      v.push_back(torch::zeros_like(t));
    }
    EXPECT_EQ(ops::fused_adamw_applicable(p, g, m, v), fused);
    torch::manual_seed(17);
    for (int s = 0; s < 5; ++s) {
      for (auto& [n, t] : ps) t.mutable_grad() = torch::randn(t.sizes()).to(kCuda);
      opt.step(1e-3, s % 2 ? 0.6 : 1.0);  // a clip coefficient on odd steps: in the kernel vs a _foreach_mul_
    }
    ops::set_kernels_enabled(std::nullopt);
    return ps;
  };
  auto a = run(true), b = run(false);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(max_rel(a[i].second, b[i].second), 1e-5) << a[i].first;
}

// bf16 training's AdamW in one pass (AdamW::step_mixed, FATHOM_ADAMW_MIXED=1 in the trainer) against
// the trainer's other path: gradients → fp32 times the clip coefficient, the fused fp32 step, masters
// → bf16 weights. Five steps; a matrix, an odd-sized vector (the kernel's tail) and a master offset
// by one element; bf16 weights aligned (the vectorised path) and offset by one element (the scalar
// path). Masters within fp32 rounding, bf16 weights bit-equal.
TEST(EngineOps, FusedAdamWMixedMatchesTheFp32Path) {
  auto make = [] {
    torch::manual_seed(19);
    std::vector<std::pair<std::string, torch::Tensor>> ps;
    ps.emplace_back("w", torch::randn({256, 300}).to(kCuda));
    ps.emplace_back("b", torch::randn({1001}).to(kCuda));
    ps.emplace_back("u", torch::randn({4097}).to(kCuda).narrow(0, 1, 4096));  // 4-byte offset
    return ps;
  };
  // The fp32 path must be Fathom's fused kernel (the same update() arithmetic) for bit-equal weights.
  if (const char* e = std::getenv("FATHOM_FUSED_ADAMW"); e && std::string(e) == "0")
    GTEST_SKIP() << "FATHOM_FUSED_ADAMW=0: the fp32 path is LibTorch's, which rounds differently";
  const double clip = 0.43;
  int64_t offset = 0;  // of the bf16 weights, in elements: 0 the vectorised path, 1 (2 bytes) the scalar one
  auto run = [&](bool mixed) {
    auto masters = make();
    std::vector<torch::Tensor> model;
    for (auto& [n, t] : masters) {
      auto w = torch::empty({t.numel() + offset}, t.options().dtype(torch::kBFloat16)).narrow(0, offset, t.numel()).view(t.sizes());
      w.copy_(t);
      model.push_back(w);
    }
    fathom::train::AdamWOptions o;
    o.weight_decay = 0.1;
    fathom::train::AdamW opt(masters, o);
    torch::manual_seed(20);
    for (int s = 0; s < 5; ++s) {
      std::vector<torch::Tensor> grads;
      for (auto& [n, t] : masters) grads.push_back(torch::randn(t.sizes()).to(kCuda).to(torch::kBFloat16));
      if (mixed) {
        EXPECT_TRUE(opt.can_step_mixed(grads, model));
        opt.step_mixed(1e-3, grads, model, clip);
      } else {
        for (size_t i = 0; i < masters.size(); ++i) masters[i].second.mutable_grad() = grads[i].to(torch::kFloat32) * clip;
        opt.step(1e-3);
        torch::NoGradGuard ng;
        for (size_t i = 0; i < masters.size(); ++i) model[i].copy_(masters[i].second);
      }
    }
    return std::make_pair(masters, model);
  };
  for (int64_t off : {1, 0}) {
    offset = off;
    auto [ma, wa] = run(true);
    auto [mb, wb] = run(false);
    for (size_t i = 0; i < ma.size(); ++i) {
      EXPECT_LT(max_rel(ma[i].second, mb[i].second), 1e-6) << ma[i].first << " (weights offset " << off << ")";
      EXPECT_TRUE(torch::equal(wa[i], wb[i])) << ma[i].first << ": the bf16 weights differ (offset " << off << ")";
    }
  }
  auto [ma, wa] = run(true);  // (offset 0)
  // One more step from there, unit gradients: the bf16 weights are the rounded masters.
  std::vector<torch::Tensor> aligned, grads;
  for (auto& w : wa) aligned.push_back(w.clone());
  for (auto& [n, t] : ma) grads.push_back(torch::ones(t.sizes(), t.options().dtype(torch::kBFloat16)));
  fathom::train::AdamW opt2(ma, fathom::train::AdamWOptions{});
  opt2.step_mixed(1e-3, grads, aligned, 1.0);
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_TRUE(torch::equal(aligned[i], ma[i].second.to(torch::kBFloat16))) << ma[i].first << ": bf16 copy of the masters";
  // The kernels off: the fused path does not apply, and says so.
  ops::set_kernels_enabled(false);
  EXPECT_FALSE(opt2.can_step_mixed(grads, aligned));
  ops::set_kernels_enabled(std::nullopt);
}

// The trainer's single-rank bf16 step without a host round trip (ops::grad_norm_clip, the AdamW
// kernel reading its coefficient) against the host path it replaces (train::grad_norm, then
// clip_coefficient as step_mixed's host scale): the same norm, and the same masters and bf16 weights
// after three clipped steps; then a step with a non-finite loss changes nothing.
TEST(EngineOps, DeviceClipMatchesTheHostClip) {
  auto make = [] {
    torch::manual_seed(21);
    std::vector<std::pair<std::string, torch::Tensor>> ps;
    ps.emplace_back("w", torch::randn({300, 257}).to(kCuda));
    ps.emplace_back("b", torch::randn({1001}).to(kCuda));
    return ps;
  };
  const double max_norm = 5.0;
  auto run = [&](bool device) {
    auto masters = make();
    std::vector<torch::Tensor> model;
    for (auto& [n, t] : masters) model.push_back(t.to(torch::kBFloat16));
    fathom::train::AdamW opt(masters, fathom::train::AdamWOptions{});
    torch::manual_seed(22);
    std::vector<double> norms;
    for (int s = 0; s < 3; ++s) {
      std::vector<torch::Tensor> grads;
      for (auto& [n, t] : masters) grads.push_back((torch::randn(t.sizes()) * 0.2).to(kCuda).to(torch::kBFloat16));
      auto loss = torch::full({}, 3.0f, torch::TensorOptions().device(kCuda));
      if (device) {
        EXPECT_TRUE(ops::grad_norm_clip_applicable(grads));
        auto nc = ops::grad_norm_clip(grads, max_norm, loss);
        ops::HostRead read(nc);
        opt.step_mixed(1e-3, grads, model, 1.0, nc.narrow(0, 1, 1));
        norms.push_back(read.get()[0].item<double>());
      } else {
        const double norm = fathom::train::grad_norm(grads);
        opt.step_mixed(1e-3, grads, model, fathom::train::clip_coefficient(norm, max_norm));
        norms.push_back(norm);
      }
    }
    return std::make_tuple(masters, model, norms, opt.steps_taken());
  };
  auto [ma, wa, na, sa] = run(true);
  auto [mb, wb, nb, sb] = run(false);
  EXPECT_EQ(sa, sb);
  for (size_t s = 0; s < na.size(); ++s) {
    EXPECT_NEAR(na[s], nb[s], 1e-5 * nb[s]) << "step " << s;
    EXPECT_GT(na[s], max_norm) << "the test's gradients must be clipped";
  }
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_LT(max_rel(ma[i].second, mb[i].second), 1e-5) << ma[i].first;
    EXPECT_LT(max_rel(wa[i].to(torch::kFloat32), wb[i].to(torch::kFloat32)), 1e-2) << ma[i].first;
  }
  // A non-finite loss: NaN coefficient, and the kernel leaves masters, moments and weights alone.
  fathom::train::AdamW opt(ma, fathom::train::AdamWOptions{});
  std::vector<torch::Tensor> grads;
  for (auto& [n, t] : ma) grads.push_back(torch::ones(t.sizes(), t.options().dtype(torch::kBFloat16)));
  std::vector<torch::Tensor> before, wbefore;
  for (auto& [n, t] : ma) before.push_back(t.clone());
  for (auto& w : wa) wbefore.push_back(w.clone());
  auto nan_loss = torch::full({1}, std::numeric_limits<float>::quiet_NaN(), torch::TensorOptions().device(kCuda));
  auto nc = ops::grad_norm_clip(grads, max_norm, nan_loss);
  opt.step_mixed(1e-3, grads, wa, 1.0, nc.narrow(0, 1, 1));
  EXPECT_TRUE(std::isnan(ops::HostRead(nc).get()[1].item<float>()));
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_TRUE(torch::equal(ma[i].second, before[i])) << ma[i].first;
    EXPECT_TRUE(torch::equal(wa[i], wbefore[i])) << ma[i].first;
  }
  for (const auto& m : opt.exp_avg()) EXPECT_EQ(m.abs().max().item<float>(), 0.f);
}

// The grouped GEMM (one cuBLAS call a pass for every expert) against a matmul per expert: output,
// input gradient and each expert's weight gradient, groups of 1 to 256 rows.
TEST(EngineOps, GroupedLinearFusedMatchesComposite) {
  torch::manual_seed(14);
  ops::set_kernels_enabled(true);
  const std::vector<int64_t> rows{1, 3, 64, 100, 7, 256, 2, 33};
  const int64_t P = 466, in = 256, out = 384;
  for (const auto& kind : kKinds) {
    std::vector<torch::Tensor> inputs{rnd({P, in}, kind.st)};
    for (size_t g = 0; g < rows.size(); ++g) inputs.push_back(rnd({out, in}, kind.st, 0.05));
    ASSERT_TRUE(ops::grouped_linear_fusable(inputs[0], {inputs.begin() + 1, inputs.end()})) << "cuBLAS lacks the grouped GEMM";
    auto seed = torch::randn({P, out}, kCuda);
    auto run = [&](bool fused) {
      return run_with_grads(inputs, {seed}, [&](auto& in_) {
        std::vector<torch::Tensor> w(in_.begin() + 1, in_.end());
        return std::vector<torch::Tensor>{fused ? ops::grouped_linear(in_[0], w, rows) : ops::composite::grouped_linear(in_[0], w, rows)};
      });
    };
    // Both ways of running the forward products (one grouped call, one GEMM per expert).
    for (auto mode : {ops::GroupedGemmMode::grouped, ops::GroupedGemmMode::loop}) {
      ops::set_grouped_gemm_mode(mode);
      expect_close(run(true), run(false), 2 * kind.tol,
                   std::string("grouped_linear ") + k::dtype_name(kind.dt) + (mode == ops::GroupedGemmMode::loop ? " loop" : " grouped"));
    }
    ops::set_grouped_gemm_mode(std::nullopt);
  }
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, MoeDispatchFusedMatchesComposite) {
  torch::manual_seed(13);
  ops::set_kernels_enabled(true);
  for (const auto& kind : kKinds) {
    const int64_t N = 300, k = 6, E = 32, C = 2048, capacity = 50;
    const auto r = moe_routing(N, k, E, capacity);
    const int64_t P = r.kept();
    auto x = rnd({N, C}, kind.st), y = rnd({P, C}, kind.st);
    auto w = torch::rand({N, k}, torch::TensorOptions(kCuda));
    auto s1 = torch::randn({P, C}, kCuda), s2 = torch::randn({N, C}, kCuda);
    auto run = [&](bool fused) {
      return run_with_grads({x, y, w}, {s1, s2}, [&](auto& in) {
        return fused ? std::vector<torch::Tensor>{ops::moe_permute(in[0], r), ops::moe_unpermute(in[1], in[2], r)}
                     : std::vector<torch::Tensor>{ops::composite::moe_permute(in[0], r),
                                                  ops::composite::moe_unpermute(in[1], in[2], r)};
      });
    };
    expect_close(run(true), run(false), kind.tol, std::string("moe ") + k::dtype_name(kind.dt));
  }
  // A DeepSeekMoE layer in bf16, capacity-limited: output and every gradient, kernels on vs off.
  fathom::model::ModelArgs a;
  a.d_model = 256;
  a.moe.n_routed_experts = 16;
  a.moe.n_shared_experts = 1;
  a.moe.top_k = 4;
  a.moe.d_expert = 128;
  a.moe.capacity_factor = 1.0;
  a.moe.balance = "none";
  fathom::model::MoeImpl layer(a);
  layer.to(kCuda, torch::kBFloat16);
  layer.gate->e_score_correction_bias.copy_(torch::zeros({16}));
  auto x = rnd({4, 64, 256}, torch::kBFloat16);
  auto grads = [&](bool on) {
    ops::set_kernels_enabled(on);
    layer.zero_grad();
    auto xi = x.clone().requires_grad_(true);
    auto out = layer.forward(xi);
    (out.to(torch::kFloat32) * x.to(torch::kFloat32)).sum().backward();
    std::vector<torch::Tensor> g{out.detach(), xi.grad()};
    for (auto& p : layer.parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    return g;
  };
  auto on = grads(true), off = grads(false);
  for (size_t i = 0; i < on.size(); ++i) EXPECT_LT(max_rel(on[i], off[i]), 3e-2) << "moe layer tensor " << i;
  ops::set_kernels_enabled(std::nullopt);
}

TEST(EngineOps, SwitchOffGivesTheComposite) {
  ops::set_kernels_enabled(false);
  auto x = rnd({16, 768}, torch::kBFloat16), r = rnd({16, 768}, torch::kBFloat16), w = rnd({768}, torch::kBFloat16);
  EXPECT_TRUE(torch::equal(ops::rmsnorm(x, w, 1e-5), ops::composite::rmsnorm(x, w, 1e-5)));
  EXPECT_TRUE(torch::equal(ops::swiglu(x, r), ops::composite::swiglu(x, r)));
  ops::set_kernels_enabled(std::nullopt);
}

// ---- 3. the model with the kernels on and off -------------------------------------------------

TEST(EngineOps, TransformerLossAndGradsMatchComposite) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 256; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 704; a.max_seq_len = 128;
  torch::manual_seed(7);
  fathom::model::Transformer net(a);
  net->to(torch::kBFloat16);
  net->to_device(kCuda);
  auto idx = torch::randint(0, 512, {4, 128}, torch::kInt64).to(kCuda);
  auto tgt = torch::randint(0, 512, {4, 128}, torch::kInt64).to(kCuda);
  auto run = [&](bool on) {
    ops::set_kernels_enabled(on);
    net->zero_grad();
    auto loss = net->loss(idx, tgt);
    loss.backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad().to(torch::kFloat32).clone());
    return std::make_pair(loss.item<double>(), g);
  };
  auto [l_on, g_on] = run(true);
  auto [l_off, g_off] = run(false);
  ops::set_kernels_enabled(std::nullopt);
  std::cout << "loss fused " << l_on << " composite " << l_off << "\n";
  EXPECT_NEAR(l_on, l_off, 2e-2 * std::abs(l_off));
  ASSERT_EQ(g_on.size(), g_off.size());
  for (size_t i = 0; i < g_on.size(); ++i) {
    const double rel = ((g_on[i] - g_off[i]).norm() / (g_off[i].norm() + 1e-12)).item<double>();
    EXPECT_LT(rel, 5e-2) << "parameter " << i;
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device visible (gpu tests run on the GPU machine: tools/gpu/check_kernels.sh)\n";
    return 77;
  }
  return RUN_ALL_TESTS();
}
