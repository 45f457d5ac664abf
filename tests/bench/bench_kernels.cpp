// Fused kernels (kernels/, through engine/ops) against the LibTorch composites they replace, at the
// shapes of gpt2-124m (micro batch 16 × 1024, C 768, d_ff 2048, 12 heads of 64) and llama-1b
// (4 × 2048, C 2048, d_ff 8192, 32/8 heads of 64), bf16 on CUDA. Each case: forward alone (no
// grad) and forward + backward (autograd.grad: no accumulation into .grad); the LM head + loss
// with the peak memory of one call; weight-only int8 decode products against the dequantising
// composite and against bf16; the decode-step ops (engine/ops/decode.h: one-row products,
// q/k/v and gate/up+SwiGLU in one pass, rotary + cache append + attention) against the path the
// model took before, both replayed from CUDA graphs; the multi-tensor fused AdamW against the
// _foreach_ composite and LibTorch's _fused_adamw_; the MoE dispatch/combine gathers against the
// per-expert loop, and a whole DeepSeekMoE layer (grouped GEMMs) against a product per expert.
// Timing: CUDA events around `iters` calls after a warm-up, the median of `repeats` such samples. Prints a table, then one JSON line
// per case ({"bench":"kernels",...}). Exits 77 without a CUDA device.
// --ops PREFIX measures only the cases whose op name starts with PREFIX (set-up still runs); with
// --profile TRACE each of them is then run 3 more times (fused path) under the step profiler
// (engine/train/profile.h): its kernels by category and the top ones go to stderr, the Chrome trace
// to TRACE.<op>.<pass>.json.
// Usage: bench_kernels [--repeats N] [--iters N] [--model gpt2-124m|llama-1b] [--ops PREFIX] [--profile TRACE]
#include <torch/torch.h>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "engine/infer/graph_decode.h"
#include "engine/model/moe.h"
#include "engine/model/transformer.h"
#include "engine/ops/decode.h"
#include "engine/ops/fp8_cast.h"
#include "engine/ops/adamw.h"
#include "engine/ops/cross_entropy.h"
#include "engine/ops/int8_linear.h"
#include "engine/ops/kernels.h"
#include "engine/ops/grouped_linear.h"
#include "engine/ops/moe.h"
#include "engine/ops/rmsnorm.h"
#include "engine/train/profile.h"
#include "engine/ops/rope.h"
#include "engine/ops/swiglu.h"
#include "engine/train/optimizer.h"

namespace ops = fathom::ops;

namespace {
int g_repeats = 15, g_iters = 10;
std::string g_ops, g_profile;  // --ops PREFIX, --profile TRACE

bool selected(const std::string& op) { return g_ops.empty() || op.rfind(g_ops, 0) == 0; }

// --profile: the fused path of one case, 3 calls under the step profiler, summary to stderr.
void profile_case(const std::string& model, const std::string& op, const std::string& pass, const std::function<void()>& f) {
  if (g_profile.empty()) return;
  f();
  torch::cuda::synchronize();
  fathom::train::StepProfiler prof(/*cuda=*/true);
  for (int i = 0; i < 3; ++i) f();
  torch::cuda::synchronize();
  std::string tag = model + "." + op + "." + pass;
  std::replace(tag.begin(), tag.end(), '+', '_');
  const auto summary = prof.stop(g_profile + "." + tag + ".json", 3);
  std::cerr << "profile of " << model << " " << op << " " << pass << " (per call):\n" << fathom::train::format_profile(summary);
}

// Median over repeats of the mean time of one call, in microseconds.
double time_us(const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  cudaDeviceSynchronize();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> samples;
  for (int r = 0; r < g_repeats; ++r) {
    cudaEventRecord(a, at::cuda::getCurrentCUDAStream().stream());
    for (int i = 0; i < g_iters; ++i) f();
    cudaEventRecord(b, at::cuda::getCurrentCUDAStream().stream());
    cudaEventSynchronize(b);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, a, b);
    samples.push_back(1000.0 * ms / g_iters);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

struct Shape {
  std::string model;
  int64_t B, T, C, d_ff, H, Hkv, hd, V;
};

struct Result {
  std::string model, op, pass, shape;
  double fused_us, composite_us, bytes;  // bytes: the fused kernel's minimum traffic
  double fused_peak = 0, composite_peak = 0;  // bytes allocated at the peak of one call, above what was there before
};

// Peak of the caching allocator during one call of f, above the allocation before it.
double peak_bytes(const std::function<void()>& f) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  cudaDeviceSynchronize();
  const auto dev = static_cast<c10::DeviceIndex>(0);
  alloc::resetPeakStats(dev);
  const auto before = alloc::getDeviceStats(dev).allocated_bytes[0].current;
  f();
  cudaDeviceSynchronize();
  return static_cast<double>(alloc::getDeviceStats(dev).allocated_bytes[0].peak - before);
}
std::vector<Result> g_results;

// As measure(), for decode-step ops: each path captured in a CUDA graph and replayed (device time
// without host launch cost, as the decoder runs them), median of repeats of `iters` replays.
void measure_graph(const Shape& s, const std::string& op, const std::string& shape, double bytes,
                   const std::function<std::function<void()>(bool fused)>& make) {
  if (!selected(op)) return;
  double us[2];
  for (int fused = 1; fused >= 0; --fused) {
    ops::set_kernels_enabled(fused == 1);
    auto f = make(fused == 1);
    us[fused] = 1000.0 * fathom::infer::time_in_graph(f, g_iters, g_repeats);
  }
  ops::set_kernels_enabled(std::nullopt);
  g_results.push_back({s.model, op, "decode", shape, us[1], us[0], bytes, 0, 0});
}

// The decode step's products and attention (engine/ops/decode.h) against what the model ran before:
// cuBLAS one-row products, the SwiGLU kernel, and rotary + index_put + SDPA over a masked span.
void bench_decode(const Shape& s) {
  const auto bf = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  namespace F = torch::nn::functional;
  const double e = 2.0;
  const int64_t nq = s.H * s.hd, nkv = s.Hkv * s.hd;
  auto W = [&](int64_t n, int64_t k) { return torch::randn({n, k}, bf) * 0.02; };
  auto wq = W(nq, s.C), wk = W(nkv, s.C), wv = W(nkv, s.C), wo = W(s.C, nq), wg = W(s.d_ff, s.C), wu = W(s.d_ff, s.C),
       wd = W(s.C, s.d_ff), wl = W(s.V, s.C);
  // (Rows 1 and 2: with bf16 weights the gemv takes at most 2, engine/ops/decode.h.)
  for (int64_t Bd : {int64_t{1}, int64_t{2}}) {
    const std::string b = std::to_string(Bd) + "x";
    auto x = torch::randn({Bd, s.C}, bf), xf = torch::randn({Bd, s.d_ff}, bf);
    auto one = [&](const std::string& name, const torch::Tensor& xx, const torch::Tensor& w) {
      measure_graph(s, "gemv", name + " " + b + std::to_string(w.size(1)) + "x" + std::to_string(w.size(0)),
                    e * w.numel(), [&](bool fused) {
                      return [&, fused] {
                        torch::NoGradGuard ng;
                        auto y = fused ? ops::decode_linear(xx, {ops::DecodeWeight{w, {}, {}}}) : F::linear(xx, w);
                      };
                    });
    };
    one("o_proj", x, wo);
    one("down_proj", xf, wd);
    one("lm_head", x, wl);
    measure_graph(s, "gemv_qkv", "q,k,v " + b + std::to_string(s.C) + "x" + std::to_string(nq + 2 * nkv),
                  e * (wq.numel() + wk.numel() + wv.numel()), [&](bool fused) {
                    return [&, fused] {
                      torch::NoGradGuard ng;
                      if (fused) {
                        auto y = ops::decode_linear(x, {{wq, {}, {}}, {wk, {}, {}}, {wv, {}, {}}});
                      } else {
                        auto a = F::linear(x, wq), c = F::linear(x, wk), d = F::linear(x, wv);
                      }
                    };
                  });
    measure_graph(s, "gemv_swiglu", "gate,up " + b + std::to_string(s.C) + "x" + std::to_string(s.d_ff),
                  e * (wg.numel() + wu.numel()), [&](bool fused) {
                    return [&, fused] {
                      torch::NoGradGuard ng;
                      auto y = fused ? ops::decode_linear(x, {{wg, {}, {}}, {wu, {}, {}}}, true)
                                     : ops::swiglu(F::linear(x, wg), F::linear(x, wu));
                    };
                  });
  }
  // Attention at one new token over `pos` cached positions, batch 1: rotary, cache append, attention.
  const int64_t S = 2048;
  auto kc = torch::randn({1, s.Hkv, S, s.hd}, bf), vc = torch::randn({1, s.Hkv, S, s.hd}, bf);
  auto tables = fathom::model::rope_tables(S, s.hd, 10000.0);
  auto cos = tables.cos.to(torch::kCUDA), sin = tables.sin.to(torch::kCUDA);
  for (int64_t pos : {int64_t{255}, int64_t{2000}}) {
    auto qkv = torch::randn({1, nq + 2 * nkv}, bf);
    auto positions = torch::full({1}, pos, torch::TensorOptions().dtype(torch::kInt64).device(torch::kCUDA));
    const int64_t span = pos < 256 ? 256 : S;  // the graph decoder's power-of-two bucket
    auto arange = torch::arange(S, positions.options());
    measure_graph(s, "decode_attn", "pos " + std::to_string(pos) + " span " + std::to_string(span),
                  e * 2 * (pos + 1) * nkv, [&](bool fused) {
                    return [&, fused] {
                      torch::NoGradGuard ng;
                      if (fused) {
                        auto y = ops::decode_attend(qkv, cos, sin, positions, kc, vc, s.H, s.Hkv, s.hd, span);
                        return;
                      }
                      using torch::indexing::Slice;
                      auto p2 = positions.view({1, 1});
                      auto q = ops::rope_apply_at(qkv.narrow(1, 0, nq).reshape({1, 1, s.H, s.hd}).transpose(1, 2), cos, sin, p2);
                      auto k = ops::rope_apply_at(qkv.narrow(1, nq, nkv).reshape({1, 1, s.Hkv, s.hd}).transpose(1, 2), cos, sin, p2);
                      auto v = qkv.narrow(1, nq + nkv, nkv).reshape({1, 1, s.Hkv, s.hd}).transpose(1, 2);
                      auto rows = torch::arange(1, positions.options());
                      kc.index_put_({rows, Slice(), positions}, k.squeeze(2));
                      vc.index_put_({rows, Slice(), positions}, v.squeeze(2));
                      auto mask = (arange.narrow(0, 0, span).view({1, span}) <= positions.view({1, 1})).view({1, 1, 1, span});
                      auto y = fathom::model::causal_attention(q, kc.narrow(2, 0, span), vc.narrow(2, 0, span), 0, mask)
                                   .transpose(1, 2)
                                   .reshape({1, nq});
                    };
                  });
  }
}

// Runs `make` (which builds the op's call for the given path) with the kernels on and off.
void measure(const Shape& s, const std::string& op, const std::string& pass, const std::string& shape, double bytes,
             const std::function<std::function<void()>(bool fused)>& make, bool with_memory = false) {
  if (!selected(op)) return;
  ops::set_kernels_enabled(true);
  auto f = make(true);
  const double fused = time_us(f);
  const double fused_peak = with_memory ? peak_bytes(f) : 0;
  profile_case(s.model, op, pass, f);
  ops::set_kernels_enabled(false);
  auto c = make(false);
  const double comp = time_us(c);
  const double comp_peak = with_memory ? peak_bytes(c) : 0;
  ops::set_kernels_enabled(std::nullopt);
  g_results.push_back({s.model, op, pass, shape, fused, comp, bytes, fused_peak, comp_peak});
}

void bench_model(const Shape& s) {
  const auto bf = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  const int64_t rows = s.B * s.T;
  const double e = 2.0;  // bytes per bf16 element
  const std::string sh_rows = std::to_string(rows) + "x" + std::to_string(s.C);

  // ---- residual add + RMSNorm (the block's post-attention norm) ----
  auto x = torch::randn({s.B, s.T, s.C}, bf), r = torch::randn({s.B, s.T, s.C}, bf), w = torch::rand({s.C}, bf) + 0.5;
  measure(s, "add_rmsnorm", "fwd", sh_rows, e * rows * s.C * 4, [&](bool) {
    return [&] {
      torch::NoGradGuard ng;
      auto out = ops::add_rmsnorm(x, r, w, 1e-5);
    };
  });
  auto xg = x.detach().clone().requires_grad_(true), rg = r.detach().clone().requires_grad_(true);
  auto wg = w.detach().clone().requires_grad_(true);
  auto dy = torch::randn_like(x), dh = torch::randn_like(x);
  measure(s, "add_rmsnorm", "fwd+bwd", sh_rows, e * rows * s.C * (4 + 4), [&](bool) {
    return [&] {
      auto [y, h] = ops::add_rmsnorm(xg, rg, wg, 1e-5);
      auto grads = torch::autograd::grad({y, h}, {xg, rg, wg}, {dy, dh});
    };
  });
  measure(s, "rmsnorm", "fwd", sh_rows, e * rows * s.C * 2, [&](bool) {
    return [&] {
      torch::NoGradGuard ng;
      auto out = ops::rmsnorm(x, w, 1e-5);
    };
  });

  // ---- SwiGLU gate: silu(gate(x)) * up(x) on (B, T, d_ff) ----
  const std::string sh_ff = std::to_string(rows) + "x" + std::to_string(s.d_ff);
  auto g = torch::randn({s.B, s.T, s.d_ff}, bf), u = torch::randn({s.B, s.T, s.d_ff}, bf);
  measure(s, "swiglu", "fwd", sh_ff, e * rows * s.d_ff * 3, [&](bool) {
    return [&] {
      torch::NoGradGuard ng;
      auto out = ops::swiglu(g, u);
    };
  });
  auto gg = g.detach().clone().requires_grad_(true), ug = u.detach().clone().requires_grad_(true);
  auto dout = torch::randn_like(g);
  measure(s, "swiglu", "fwd+bwd", sh_ff, e * rows * s.d_ff * (3 + 5), [&](bool) {
    return [&] {
      auto out = ops::swiglu(gg, ug);
      auto grads = torch::autograd::grad({out}, {gg, ug}, {dout});
    };
  });

  // ---- LM head + cross-entropy: (B·T, C) · (V, C)ᵀ, summed loss, gradients of h and W ----
  {
    auto hh = (torch::randn({rows, s.C}, bf)).requires_grad_(true);
    auto W = (torch::randn({s.V, s.C}, bf) * 0.02).requires_grad_(true);
    auto t = torch::randint(0, s.V, {rows}, torch::TensorOptions().dtype(torch::kInt64).device(torch::kCUDA));
    const std::string sh_ce = std::to_string(rows) + "x" + std::to_string(s.C) + "x" + std::to_string(s.V);
    // (Matmul-bound: the fused path does 4 products of 2·N·C·V flops, the composite 3; no GB/s figure.)
    for (auto mode : {ops::LinearCeMode::vocab, ops::LinearCeMode::rows}) {
      measure(s, mode == ops::LinearCeMode::vocab ? "linear_ce" : "linear_ce_rows", "fwd+bwd", sh_ce, 0, [&, mode](bool fused) {
        return [&, fused, mode] {
          auto loss = fused ? ops::linear_cross_entropy_sum(hh, W, t, -100, 0, mode) : ops::composite::linear_cross_entropy_sum(hh, W, t);
          auto grads = torch::autograd::grad({loss}, {hh, W});
        };
      }, /*with_memory=*/true);
    }
    // Row chunks of other sizes than the default (at most 2^29 logits a chunk, equal chunks): more
    // rows mean fewer passes over dW (accumulated in each chunk's product) and larger products, for a
    // larger logits buffer.
    for (int64_t chunk_rows : {int64_t{2048}, int64_t{4096}, int64_t{8192}}) {
      if (chunk_rows > rows) continue;
      measure(s, "linear_ce_rows_" + std::to_string(chunk_rows), "fwd+bwd", sh_ce, 0, [&, chunk_rows](bool fused) {
        return [&, fused, chunk_rows] {
          auto loss = fused ? ops::linear_cross_entropy_sum(hh, W, t, -100, chunk_rows, ops::LinearCeMode::rows)
                            : ops::composite::linear_cross_entropy_sum(hh, W, t);
          auto grads = torch::autograd::grad({loss}, {hh, W});
        };
      }, /*with_memory=*/true);
    }
  }

  // ---- decode: weight-only int8 products, batch 1 and 8, the layer's three widths ----
  for (auto [N, K, name] : {std::tuple<int64_t, int64_t, const char*>{s.C, s.C, "o_proj"}, {s.d_ff, s.C, "gate_proj"},
                            {s.C, s.d_ff, "down_proj"}}) {
    auto wf = torch::randn({N, K}, bf) * 0.02;
    auto scale = (wf.to(torch::kFloat32).abs().amax(1) / 127.0).clamp_min(1e-12);
    auto q = torch::round(wf.to(torch::kFloat32) / scale.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8);
    auto sc = scale.to(torch::kBFloat16);
    for (int64_t Bd : {int64_t{1}, int64_t{8}}) {
      auto xd = torch::randn({Bd, K}, bf);
      const std::string shd = std::string(name) + " " + std::to_string(Bd) + "x" + std::to_string(K) + "x" + std::to_string(N);
      const double wbytes = static_cast<double>(N * K) + e * Bd * (K + N);
      measure(s, "int8_gemv", "decode", shd, wbytes, [&](bool fused) {
        return [&, fused] {
          torch::NoGradGuard ng;
          auto y = fused ? ops::int8_linear(xd, q, sc) : ops::composite::int8_linear(xd, q, sc);
        };
      });
      // The same product in bf16 (what int8 weights must beat for decode tokens/s): "composite" = bf16 linear.
      measure(s, "int8_vs_bf16", "decode", shd, wbytes, [&](bool fused) {
        return [&, fused] {
          torch::NoGradGuard ng;
          auto y = fused ? ops::int8_linear(xd, q, sc) : torch::nn::functional::linear(xd, wf);
        };
      });
    }
  }

  // ---- rotary embedding on q (B, H, T, hd) and k (B, Hkv, T, hd), transposed views ----
  auto tables = fathom::model::rope_tables(s.T, s.hd, 10000.0);
  auto cos = tables.cos.to(torch::kCUDA), sin = tables.sin.to(torch::kCUDA);
  auto q = torch::randn({s.B, s.T, s.H, s.hd}, bf), kk = torch::randn({s.B, s.T, s.Hkv, s.hd}, bf);
  const std::string sh_q = std::to_string(s.B) + "x" + std::to_string(s.H) + "+" + std::to_string(s.Hkv) + "x" +
                           std::to_string(s.T) + "x" + std::to_string(s.hd);
  const double qk = static_cast<double>(s.B * s.T * (s.H + s.Hkv) * s.hd);
  measure(s, "rope", "fwd", sh_q, e * qk * 2, [&](bool) {
    return [&] {
      torch::NoGradGuard ng;
      auto a = ops::rope_apply(q.transpose(1, 2), cos, sin, 0);
      auto b = ops::rope_apply(kk.transpose(1, 2), cos, sin, 0);
    };
  });
  auto qg = q.detach().clone().requires_grad_(true), kg = kk.detach().clone().requires_grad_(true);
  auto dq = torch::randn({s.B, s.H, s.T, s.hd}, bf), dk = torch::randn({s.B, s.Hkv, s.T, s.hd}, bf);
  measure(s, "rope", "fwd+bwd", sh_q, e * qk * 4, [&](bool) {
    return [&] {
      auto a = ops::rope_apply(qg.transpose(1, 2), cos, sin, 0);
      auto b = ops::rope_apply(kg.transpose(1, 2), cos, sin, 0);
      auto grads = torch::autograd::grad({a, b}, {qg, kg}, {dq, dk});
    };
  });
}
// FP8 per-tensor quantisation (what each FP8 linear does to its input, weight and output gradient):
// the two-pass kernel against the composite (abs, amax, fp32 copy, scale, clamp, cast), on the
// layer's input (rows × C) and the MLP's hidden activation (rows × d_ff).
void bench_fp8_cast(const Shape& s) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  const auto bf = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  const int64_t rows = s.B * s.T;
  for (int64_t cols : {s.C, s.d_ff}) {
    auto x = torch::randn({rows, cols}, bf);
    // Minimum traffic: read x twice (maximum, cast), write one byte per element.
    const double bytes = static_cast<double>(rows) * cols * (2 + 2 + 1);
    measure(s, "fp8_quantize", "fwd", std::to_string(rows) + "x" + std::to_string(cols), bytes, [&](bool) {
      return [&] {
        torch::NoGradGuard ng;
        auto q = fathom::ops::fp8_quantize(x, true);
      };
    });
  }
#else
  (void)s;
#endif
}

// MoE dispatch and combine at the model's width: B·T tokens, each routed to k = 6 of E = 64
// experts (DeepSeek-V2-Lite's split), the expert itself left out (identity), so only the data
// movement is timed. Fused: kernels/moe (one gather each way, their backward passes gathers too);
// composite: the per-expert loop the MoE layer ran before (index_select of each expert's tokens,
// index_add_ of its weighted fp32 output). The routing (sort, counts) is shared and not timed.
void bench_moe(const Shape& s) {
  const auto bf = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  const int64_t N = s.B * s.T, E = 64, k = 6, C = s.C;
  auto scores = torch::rand({N, E}, torch::TensorOptions().device(torch::kCUDA));
  auto topk = std::get<1>(scores.topk(k, -1));
  auto w = torch::rand({N, k}, torch::TensorOptions().device(torch::kCUDA));
  const auto r = ops::moe_route(topk, E, N * k);
  // The old loop's maps: assignments sorted by expert, the token of each, per-expert counts.
  auto order = std::get<1>(topk.reshape({-1}).sort(true, 0, false));
  auto token_of = order.div(k, "floor");
  auto weight_of = w.reshape({-1}).index_select(0, order);
  const auto counts = r.counts;
  auto h = torch::randn({N, C}, bf);
  std::vector<int64_t> counts_host(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + E);
  auto loop = [&](const torch::Tensor& x, const torch::Tensor& wo) {
    auto out = torch::zeros({N, C}, x.options().dtype(torch::kFloat32));
    int64_t off = 0;
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = counts_host[e];
      if (n == 0) continue;
      auto tokens = token_of.narrow(0, off, n);
      auto y = x.index_select(0, tokens);  // the expert's input (and, as identity, its output)
      out.index_add_(0, tokens, y.to(torch::kFloat32) * wo.narrow(0, off, n).unsqueeze(-1));
      off += n;
    }
    return out.to(x.scalar_type());
  };
  const std::string shape = std::to_string(N) + "x" + std::to_string(C) + " E64 k6";
  // Gather: N·k rows read and written; combine: N·k rows read, N written.
  const double e = 2.0, moved = e * static_cast<double>(N) * C * (3 * k + 1);
  measure(s, "moe_dispatch", "fwd", shape, moved, [&](bool fused) {
    return [&, fused] {
      torch::NoGradGuard ng;
      auto out = fused ? ops::moe_unpermute(ops::moe_permute(h, r), w, r) : loop(h, weight_of);
    };
  });
  auto hg = h.detach().clone().requires_grad_(true), wg = w.detach().clone().requires_grad_(true);
  auto dout = torch::randn({N, C}, bf);
  measure(s, "moe_dispatch", "fwd+bwd", shape, 2 * moved, [&](bool fused) {
    return [&, fused] {
      if (fused) {
        auto out = ops::moe_unpermute(ops::moe_permute(hg, r), wg, r);
        auto grads = torch::autograd::grad({out}, {hg, wg}, {dout});
      } else {
        auto wo = wg.reshape({-1}).index_select(0, order);
        auto out = loop(hg, wo);
        auto grads = torch::autograd::grad({out}, {hg, wg}, {dout});
      }
    };
  });

  // A whole DeepSeekMoE layer at this width (64 experts of d_expert ≈ 0.69·C, top 6, one shared
  // expert; DeepSeek-V2-Lite's proportions): router, dispatch, experts, combine. Fused: the
  // dispatch kernels and one grouped GEMM per product for all experts; composite: a product per
  // expert (the kernels switch off both). Matmul-bound: no GB/s figure.
  fathom::model::ModelArgs a;
  a.d_model = C;
  a.moe.n_routed_experts = E;
  a.moe.n_shared_experts = 1;
  a.moe.top_k = k;
  a.moe.d_expert = (C * 11 / 16 + 63) / 64 * 64;
  a.moe.balance = "none";
  fathom::model::MoeImpl layer(a);
  layer.to(torch::kCUDA, torch::kBFloat16);
  layer.train();
  auto xl = torch::randn({s.B, s.T, C}, bf);
  auto xg = xl.detach().clone().requires_grad_(true);
  auto dl = torch::randn_like(xl);
  std::vector<torch::Tensor> params{xg};
  for (auto& p : layer.parameters()) params.push_back(p);
  const std::string lshape = std::to_string(N) + "x" + std::to_string(C) + " E64 k6 d" + std::to_string(a.moe.d_expert);
  measure(s, "moe_layer", "fwd", lshape, 0, [&](bool) {
    return [&] {
      torch::NoGradGuard ng;
      auto out = layer.forward(xl);
    };
  });
  // The forward's two ways on CUDA (ops::GroupedGemmMode), each against the same composite.
  for (auto [mode, name] : {std::pair<ops::GroupedGemmMode, const char*>{ops::GroupedGemmMode::grouped, "moe_layer_grouped"},
                            {ops::GroupedGemmMode::loop, "moe_layer_loop"}}) {
    ops::set_grouped_gemm_mode(mode);
    measure(s, name, "fwd", lshape, 0, [&](bool) {
      return [&] {
        torch::NoGradGuard ng;
        auto out = layer.forward(xl);
      };
    });
    ops::set_grouped_gemm_mode(std::nullopt);
  }
  measure(s, "moe_layer", "fwd+bwd", lshape, 0, [&](bool) {
    return [&] {
      auto out = layer.forward(xg);
      auto grads = torch::autograd::grad({out}, params, {dl}, /*retain_graph=*/false, /*create_graph=*/false,
                                         /*allow_unused=*/true);
    };
  });
}

// Multi-tensor AdamW over the model's parameter list (fp32 master weights, gradients and moments):
// the fused kernel (engine/ops/adamw.h) against the _foreach_ composite it replaces, and against
// LibTorch's at::_fused_adamw_ (what the engine ran on CUDA before), one step each.
void bench_adamw(const Shape& s) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA);
  std::vector<std::vector<int64_t>> shapes = {{s.V, s.C}, {s.C}};
  const int64_t L = s.model == "llama-1b" ? 16 : 12;
  for (int64_t l = 0; l < L; ++l)
    for (auto sh : std::vector<std::vector<int64_t>>{{s.H * s.hd, s.C}, {s.Hkv * s.hd, s.C}, {s.Hkv * s.hd, s.C},
                                                     {s.C, s.H * s.hd}, {s.d_ff, s.C}, {s.d_ff, s.C}, {s.C, s.d_ff}, {s.C}, {s.C}})
      shapes.push_back(sh);
  std::vector<torch::Tensor> p, g, m, v, pd;
  std::vector<bool> decay;
  int64_t n = 0;
  for (const auto& sh : shapes) {
    p.push_back(torch::randn(sh, f32));
    g.push_back(torch::randn(sh, f32) * 1e-3);
    m.push_back(torch::zeros(sh, f32));
    v.push_back(torch::zeros(sh, f32));
    decay.push_back(sh.size() >= 2);
    if (decay.back()) pd.push_back(p.back());
    n += p.back().numel();
  }
  ops::AdamWStep st;
  st.lr = 1e-4;
  st.weight_decay = 0.1;
  st.step_size = 1e-3;
  st.bias_correction2_sqrt = 0.3;
  const std::string shape = std::to_string(shapes.size()) + " tensors, " + std::to_string(n / 1000000) + "M";
  const double bytes = 4.0 * n * 7;  // read p, g, m, v; write p, m, v
  measure(s, "adamw", "step", shape, bytes, [&](bool fused) {
    return [&, fused] {
      torch::NoGradGuard ng;
      if (fused) {
        ops::fused_adamw_step(p, g, m, v, decay, st);
        return;
      }
      fathom::train::adamw_foreach_update(p, g, m, v, pd, st);  // engine/train's _foreach_ path
    };
  });
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  std::vector<torch::Tensor> steps;
  for (const auto& t : p) steps.push_back(torch::full({}, 10.0, t.options()));
  measure(s, "adamw_vs_torch_fused", "step", shape, bytes, [&](bool fused) {
    return [&, fused] {
      torch::NoGradGuard ng;
      if (fused) ops::fused_adamw_step(p, g, m, v, decay, st);
      else at::_fused_adamw_(p, g, m, v, {}, steps, st.lr, st.beta1, st.beta2, st.weight_decay, st.eps, false, false);
    };
  });
#endif
}
}  // namespace

int main(int argc, char** argv) {
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) g_repeats = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) g_iters = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--model") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--ops") && i + 1 < argc) g_ops = argv[++i];
    else if (!std::strcmp(argv[i], "--profile") && i + 1 < argc) g_profile = argv[++i];
    else {
      std::cerr << "usage: bench_kernels [--repeats N] [--iters N] [--model gpt2-124m|llama-1b] [--ops PREFIX] [--profile TRACE]\n";
      return 2;
    }
  }
  if (!torch::cuda::is_available() || !ops::kernels_built()) {
    std::cout << "SKIP: no CUDA device (or a build without kernels)\n";
    return 77;
  }
  torch::manual_seed(0);
  const std::vector<Shape> shapes = {{"gpt2-124m", 16, 1024, 768, 2048, 12, 12, 64, 50304},
                                     {"llama-1b", 4, 2048, 2048, 8192, 32, 8, 64, 151936}};
  for (const auto& s : shapes)
    if (only.empty() || only == s.model) {
      bench_model(s);
      bench_decode(s);
      bench_adamw(s);
      bench_moe(s);
      bench_fp8_cast(s);
    }

  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("fused kernels vs LibTorch composites, bf16, %s (median of %d x %d calls)\n", prop.name, g_repeats, g_iters);
  std::printf("%-10s %-12s %-8s %-22s %12s %14s %8s %10s\n", "model", "op", "pass", "shape", "fused us", "composite us",
              "speedup", "fused GB/s");
  for (const auto& r : g_results) {
    std::printf("%-10s %-12s %-8s %-22s %12.1f %14.1f %7.2fx %10.0f%s\n", r.model.c_str(), r.op.c_str(), r.pass.c_str(),
                r.shape.c_str(), r.fused_us, r.composite_us, r.composite_us / r.fused_us, r.bytes / (r.fused_us * 1e3),
                r.composite_us / r.fused_us < 1.5 ? "  (< 1.5x target)" : "");
    if (r.composite_peak > 0)
      std::printf("%-10s %-12s peak memory of one call: fused %.2f GiB, composite %.2f GiB (saves %.2f GiB)\n", "", "",
                  r.fused_peak / 1073741824.0, r.composite_peak / 1073741824.0, (r.composite_peak - r.fused_peak) / 1073741824.0);
  }
  for (const auto& r : g_results)
    std::printf("{\"bench\":\"kernels\",\"gpu\":\"%s\",\"model\":\"%s\",\"op\":\"%s\",\"pass\":\"%s\",\"shape\":\"%s\",\"dtype\":\"bf16\","
                "\"fused_us\":%.2f,\"composite_us\":%.2f,\"speedup\":%.3f,\"fused_gbps\":%.1f,\"fused_peak_bytes\":%.0f,"
                "\"composite_peak_bytes\":%.0f}\n",
                prop.name, r.model.c_str(), r.op.c_str(), r.pass.c_str(), r.shape.c_str(), r.fused_us, r.composite_us,
                r.composite_us / r.fused_us, r.bytes / (r.fused_us * 1e3), r.fused_peak, r.composite_peak);
  return 0;
}
