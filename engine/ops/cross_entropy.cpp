// Fused linear + cross-entropy (see cross_entropy.h).
#include "engine/ops/cross_entropy.h"

#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/cross_entropy.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index) {
  auto logits = torch::matmul(h, w.t());
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat32), targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kSum));
}
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// About 16K columns per chunk, chunks of near-equal width, multiples of 128.
int64_t chunk_width(int64_t V, int64_t requested) {
  if (requested > 0) return std::min(V, requested);
  const int64_t n = (V + 16383) / 16384;
  const int64_t w = ((V + n - 1) / n + 127) / 128 * 128;
  return std::min(V, w);
}

bool widths_ok(kernels::DType dt, int64_t V, int64_t vc) {
  for (int64_t v0 = 0; v0 < V; v0 += vc) {
    const int64_t n = std::min(vc, V - v0);
    if (!kernels::ce_chunk_supported(dt, n, n)) return false;
  }
  return true;
}

class LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& h_in, const torch::Tensor& w, const torch::Tensor& targets,
                               int64_t ignore_index, int64_t chunk) {
    c10::cuda::CUDAGuard guard(h_in.device());
    const auto dt = *detail::kernel_dtype(h_in);
    auto h = h_in.contiguous();
    auto t = targets.contiguous();
    const int64_t N = h.size(0), V = w.size(0);
    const auto f32 = h.options().dtype(torch::kFloat32);
    auto m = torch::empty({N}, f32), s = torch::empty({N}, f32), zt = torch::empty({N}, f32);
    auto lse = torch::empty({N}, f32), loss = torch::empty({N}, f32);
    const auto st = detail::stream();
    kernels::ce_init(N, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(), st);
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      auto z = detail::dense(torch::matmul(h, w.narrow(0, v0, n).t()));  // (N, n)
      kernels::ce_chunk_forward(dt, z.data_ptr(), n, N, n, v0, t.data_ptr<int64_t>(), m.data_ptr<float>(), s.data_ptr<float>(),
                                zt.data_ptr<float>(), st);
    }
    kernels::ce_finish(N, t.data_ptr<int64_t>(), ignore_index, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(),
                       lse.data_ptr<float>(), loss.data_ptr<float>(), st);
    ctx->save_for_backward({h, w, t, lse});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["chunk"] = chunk;
    return {loss.sum()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto sv = ctx->get_saved_variables();
    const auto &h = sv[0], &w = sv[1], &t = sv[2], &lse = sv[3];
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt(), chunk = ctx->saved_data["chunk"].toInt();
    c10::cuda::CUDAGuard guard(h.device());
    const auto dt = *detail::kernel_dtype(h);
    const int64_t N = h.size(0), C = h.size(1), V = w.size(0);
    auto scale = grads[0].to(torch::kFloat32).reshape({1}).contiguous();  // stays on the device: no host sync
    const bool want_dw = ctx->needs_input_grad(1), want_dh = ctx->needs_input_grad(0);
    auto dh = torch::zeros({N, C}, h.options().dtype(torch::kFloat32));
    torch::Tensor dw = want_dw ? torch::empty(w.sizes(), w.options()) : torch::Tensor();
    const auto st = detail::stream();
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      auto wc = w.narrow(0, v0, n);
      auto z = detail::dense(torch::matmul(h, wc.t()));  // recomputed (N, n), becomes dlogits in place
      kernels::ce_chunk_backward(dt, z.data_ptr(), n, z.data_ptr(), n, N, n, v0, t.data_ptr<int64_t>(), ignore_index,
                                 lse.data_ptr<float>(), scale.data_ptr<float>(), st);
      if (want_dh) dh.add_(torch::matmul(z, wc));
      if (want_dw) {
        auto rows = dw.narrow(0, v0, n);
        torch::mm_out(rows, z.t(), h);
      }
    }
    return {want_dh ? dh.to(h.scalar_type()) : torch::Tensor(), dw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};
// Rows at a time over the whole vocabulary; gradients (for a unit loss gradient) made in the forward.
class LinearCrossEntropyRowsFn : public torch::autograd::Function<LinearCrossEntropyRowsFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& h_in, const torch::Tensor& w, const torch::Tensor& targets,
                               int64_t ignore_index, int64_t rows_per_chunk) {
    c10::cuda::CUDAGuard guard(h_in.device());
    const auto dt = *detail::kernel_dtype(h_in);
    auto h = detail::dense(h_in);
    auto t = targets.contiguous();
    const int64_t N = h.size(0), C = h.size(1), V = w.size(0);
    const bool want_dh = h_in.requires_grad(), want_dw = w.requires_grad();
    const auto f32 = h.options().dtype(torch::kFloat32);
    auto m = torch::empty({N}, f32), s = torch::empty({N}, f32), zt = torch::empty({N}, f32);
    auto lse = torch::empty({N}, f32), loss = torch::empty({N}, f32);
    auto one = torch::ones({1}, f32);
    torch::Tensor dh = want_dh ? torch::empty({N, C}, h.options()) : torch::Tensor();
    torch::Tensor dw = want_dw ? torch::empty(w.sizes(), w.options()) : torch::Tensor();
    const auto st = detail::stream();
    float *mp = m.data_ptr<float>(), *sp = s.data_ptr<float>(), *zp = zt.data_ptr<float>();
    float *lp = lse.data_ptr<float>(), *lossp = loss.data_ptr<float>();
    const int64_t* tp = t.data_ptr<int64_t>();
    for (int64_t r0 = 0; r0 < N; r0 += rows_per_chunk) {
      const int64_t n = std::min(rows_per_chunk, N - r0);
      auto hc = h.narrow(0, r0, n);
      auto z = detail::dense(torch::matmul(hc, w.t()));  // (n, V)
      kernels::ce_init(n, mp + r0, sp + r0, zp + r0, st);
      kernels::ce_chunk_forward(dt, z.data_ptr(), V, n, V, 0, tp + r0, mp + r0, sp + r0, zp + r0, st);
      kernels::ce_finish(n, tp + r0, ignore_index, mp + r0, sp + r0, zp + r0, lp + r0, lossp + r0, st);
      if (!want_dh && !want_dw) continue;
      kernels::ce_chunk_backward(dt, z.data_ptr(), V, z.data_ptr(), V, n, V, 0, tp + r0, ignore_index, lp + r0,
                                 one.data_ptr<float>(), st);  // z := dlogits for a unit loss gradient
      if (want_dh) {
        auto out = dh.narrow(0, r0, n);
        torch::mm_out(out, z, w);
      }
      if (want_dw) {
        if (r0 == 0) torch::mm_out(dw, z.t(), hc);
        else dw.addmm_(z.t(), hc);
      }
    }
    ctx->save_for_backward({dh, dw});
    return {loss.sum()};
  }

  // The gradients made in the forward, scaled in place by the loss's gradient (read on the device: no
  // host sync). In place, so a second backward through the same graph fails on the saved tensors'
  // version check instead of scaling twice. (ATen's `dw * g` with a 0-dim device tensor ran a
  // broadcasting kernel at ~1 TB/s: 1.4 ms a step at llama-1b, against ~0.4 ms here.)
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const auto g = grads[0].to(torch::kFloat32).reshape({1}).contiguous();
    c10::cuda::CUDAGuard guard(g.device());
    for (auto& t : sv) {
      if (!t.defined()) continue;
      kernels::ce_scale(*detail::kernel_dtype(t), t.data_ptr(), t.numel(), g.data_ptr<float>(), detail::stream());
      t.unsafeGetTensorImpl()->bump_version();
    }
    return {sv[0], sv[1], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

LinearCeMode mode_from_env() {
  static const LinearCeMode m = [] {
    const char* v = std::getenv("FATHOM_CE");
    return v && std::string(v) == "vocab" ? LinearCeMode::vocab : LinearCeMode::rows;
  }();
  return m;
}

// Row chunks of at most 2^29 logits (1 GiB in bf16), at least 256 rows; FATHOM_CE_ROWS=N sets N rows.
// Fewer, larger chunks mean fewer read-modify-write passes over dW (each later chunk's product
// accumulates into it) and larger products; the logits buffer is the price. Where the cap allows,
// chunks are multiples of 2,048 rows: the (rows, C) product dh = dz · W then fills whole waves of
// tiles (llama-1b on an H200: chunks of 2,048 rows 24.9 ms fwd+bwd, of 2,752 rows 26.1 ms; bench_kernels'
// linear_ce_rows_* rows, tools/gpu/check_kernels.sh). Otherwise near-equal multiples of 64 rows.
int64_t rows_per_chunk(int64_t N, int64_t V, int64_t requested) {
  static const int64_t from_env = [] {
    const char* v = std::getenv("FATHOM_CE_ROWS");
    return v ? std::max<int64_t>(0, std::atoll(v)) : int64_t{0};
  }();
  if (requested <= 0) requested = from_env;
  if (requested > 0) return std::min(N, requested);
  if (N <= 0) return 1;
  const int64_t most = std::max<int64_t>(256, (int64_t{1} << 29) / std::max<int64_t>(V, 1));
  auto equal_chunks = [N](int64_t cap, int64_t unit) {  // the fewest chunks ≤ cap, equal in units
    const int64_t chunks = (N + cap - 1) / cap;
    return std::min(cap, ((N + chunks - 1) / chunks + unit - 1) / unit * unit);
  };
  if (most >= 2048 && N > most) {
    const int64_t r = equal_chunks(most / 2048 * 2048, 2048);
    const int64_t last = N - (N - 1) / r * r;  // the final chunk's rows
    if (2 * last >= r) return r;              // (not a runt that reads all of W for a few rows)
  }
  return std::min(N, equal_chunks(most, 64));
}
}  // namespace
#endif

bool linear_cross_entropy_fusable(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || !h.is_cuda() || h.dim() != 2 || w.dim() != 2 || h.size(1) != w.size(1) || h.size(0) == 0) return false;
  const auto dt = detail::kernel_dtype(h);
  if (!dt || w.scalar_type() != h.scalar_type() || w.device() != h.device() || !w.is_contiguous()) return false;
  if (targets.scalar_type() != torch::kInt64 || targets.dim() != 1 || targets.size(0) != h.size(0) || targets.device() != h.device())
    return false;
  return widths_ok(*dt, w.size(0), chunk_width(w.size(0), 0));
#else
  (void)h, (void)w, (void)targets;
  return false;
#endif
}

torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index, int64_t chunk, LinearCeMode mode) {
#ifdef FATHOM_HAVE_CUDA
  if (mode == LinearCeMode::automatic) mode = mode_from_env();
  // (Without gradients to make, rows would only cost more: the vocab path's forward is the same work.)
  // Rows make the gradients at a unit loss gradient, before any loss scale: in fp16 they would lose
  // what loss scaling protects, so fp16 keeps the vocabulary chunks (which scale first).
  if (mode == LinearCeMode::rows && h.scalar_type() != torch::kFloat16 && detail::any_requires_grad({h, w}) &&
      linear_cross_entropy_fusable(h, w, targets) &&
      kernels::ce_chunk_supported(*detail::kernel_dtype(h), w.size(0), w.size(0)))
    return LinearCrossEntropyRowsFn::apply(h, w, targets, ignore_index, rows_per_chunk(h.size(0), w.size(0), chunk))[0];
  if (linear_cross_entropy_fusable(h, w, targets)) {
    const int64_t vc = chunk_width(w.size(0), chunk);
    const auto dt = *detail::kernel_dtype(h);
    if (widths_ok(dt, w.size(0), vc)) return LinearCrossEntropyFn::apply(h, w, targets, ignore_index, vc)[0];
  }
#endif
  return composite::linear_cross_entropy_sum(h, w, targets, ignore_index);
}

}  // namespace fathom::ops
