// MoE routing, dispatch and combine: kernels/moe on CUDA, composites elsewhere (see moe.h).
#include "engine/ops/moe.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/moe.h"
#endif

namespace fathom::ops {

MoeRouting moe_route(const torch::Tensor& topk_idx, int64_t n_experts, int64_t capacity) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(topk_idx.dim() == 2, "moe_route: topk_idx must be (tokens, k), got ", topk_idx.sizes());
  MoeRouting r;
  r.tokens = topk_idx.size(0);
  r.top_k = topk_idx.size(1);
  auto flat = topk_idx.reshape({-1}).to(torch::kLong);
  const int64_t A = flat.numel();
  const auto opts = flat.options();
  r.counts = torch::bincount(flat, {}, n_experts).to(torch::kCPU, torch::kLong).contiguous();
  TORCH_CHECK(r.counts.size(0) == n_experts, "moe_route: an expert index is ≥ n_experts (", n_experts, ")");
  const int64_t* cnt = r.counts.data_ptr<int64_t>();
  r.rows.resize(static_cast<size_t>(n_experts));
  std::vector<int64_t> start(static_cast<size_t>(n_experts));
  int64_t at = 0;
  for (int64_t e = 0; e < n_experts; ++e) {
    start[e] = at;
    at += cnt[e];
    r.rows[e] = std::min(cnt[e], capacity);
    r.dropped += cnt[e] - r.rows[e];
  }
  auto order = std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));  // (A)
  if (r.dropped > 0) {  // keep an expert's first `capacity` assignments (its earliest tokens)
    auto first = torch::tensor(start).to(flat.device());
    auto rank = torch::arange(A, opts) - first.index_select(0, flat.index_select(0, order));
    order = order.masked_select(rank < capacity);
  }
  const int64_t P = order.size(0);
  r.assign = order;
  r.src = order.div(r.top_k, "floor");
  r.pos = torch::full({A}, -1, opts).scatter_(0, order, torch::arange(P, opts)).view({r.tokens, r.top_k});
  return r;
}

namespace composite {
torch::Tensor moe_permute(const torch::Tensor& x, const MoeRouting& r) { return x.index_select(0, r.src); }

torch::Tensor moe_unpermute(const torch::Tensor& y, const torch::Tensor& w, const MoeRouting& r) {
  const int64_t N = r.tokens, k = r.top_k, C = y.size(-1);
  if (N == 0 || r.kept() == 0) return torch::zeros({N, C}, y.options());
  auto kept = r.pos >= 0;
  auto rows = y.index_select(0, r.pos.clamp_min(0).reshape({-1})).view({N, k, C}).to(torch::kFloat32);
  auto weights = w.to(torch::kFloat32).masked_fill(kept.logical_not(), 0.0);
  return (rows * weights.unsqueeze(-1)).sum(1).to(y.scalar_type());
}
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fusable(const torch::Tensor& t, const MoeRouting& r) {
  return kernels_enabled() && t.is_cuda() && detail::kernel_dtype(t).has_value() && t.dim() == 2 && r.src.defined() &&
         r.src.device() == t.device();
}

// out (rows, C) = scale · x[src] (scale undefined: 1).
torch::Tensor gather_rows(const torch::Tensor& x, const torch::Tensor& src, const torch::Tensor& scale) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = detail::dense(x);
  auto sc = scale.defined() ? scale.to(torch::kFloat32).contiguous() : torch::Tensor();
  auto out = torch::empty({src.size(0), x.size(1)}, x.options());
  kernels::moe_gather_rows(*detail::kernel_dtype(x), xc.data_ptr(), src.data_ptr<int64_t>(),
                           sc.defined() ? sc.data_ptr<float>() : nullptr, out.data_ptr(), src.size(0), x.size(1),
                           detail::stream());
  return out;
}

// out (N, C) = Σ_i w[t,i] · y[pos[t,i]] (w undefined: 1).
torch::Tensor combine_rows(const torch::Tensor& y, const torch::Tensor& pos, const torch::Tensor& w, int64_t cols) {
  c10::cuda::CUDAGuard guard(pos.device());
  auto yc = detail::dense(y);
  auto wc = w.defined() ? w.to(torch::kFloat32).contiguous() : torch::Tensor();
  auto out = torch::empty({pos.size(0), cols}, y.options());
  kernels::moe_combine_rows(*detail::kernel_dtype(y), yc.data_ptr(), pos.data_ptr<int64_t>(),
                            wc.defined() ? wc.data_ptr<float>() : nullptr, out.data_ptr(), pos.size(0), pos.size(1), cols,
                            detail::stream());
  return out;
}

class PermuteFn : public torch::autograd::Function<PermuteFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& src,
                               const torch::Tensor& pos) {
    ctx->saved_data["pos"] = pos;
    ctx->saved_data["cols"] = x.size(1);
    return {gather_rows(x, src, {})};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto pos = ctx->saved_data["pos"].toTensor();
    // dx[t] = Σ_i dxp[pos[t,i]]: a gather, no atomics.
    return {combine_rows(grads[0], pos, {}, ctx->saved_data["cols"].toInt()), torch::Tensor(), torch::Tensor()};
  }
};

class UnpermuteFn : public torch::autograd::Function<UnpermuteFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& y, const torch::Tensor& w,
                               const torch::Tensor& src, const torch::Tensor& assign, const torch::Tensor& pos) {
    ctx->save_for_backward({y, w});
    ctx->saved_data["src"] = src;
    ctx->saved_data["assign"] = assign;
    ctx->saved_data["pos"] = pos;
    return {combine_rows(y, pos, w, y.size(1))};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &y = saved[0], &w = saved[1];
    const auto src = ctx->saved_data["src"].toTensor(), assign = ctx->saved_data["assign"].toTensor(),
               pos = ctx->saved_data["pos"].toTensor();
    auto dout = detail::dense(grads[0].to(y.scalar_type()));
    torch::Tensor dy, dw;
    if (ctx->needs_input_grad(0))  // dy[j] = w[assign j] · dout[src j]
      dy = gather_rows(dout, src, w.reshape({-1}).index_select(0, assign));
    if (ctx->needs_input_grad(1)) {  // dw[t,i] = ⟨dout[t], y[pos[t,i]]⟩
      c10::cuda::CUDAGuard guard(y.device());
      auto yc = detail::dense(y);
      auto g = torch::empty(pos.sizes(), pos.options().dtype(torch::kFloat32));
      kernels::moe_combine_weight_grad(*detail::kernel_dtype(y), dout.data_ptr(), yc.data_ptr(), pos.data_ptr<int64_t>(),
                                       g.data_ptr<float>(), pos.size(0), pos.size(1), y.size(1), detail::stream());
      dw = g.to(w.scalar_type());
    }
    return {dy, dw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace
#endif

torch::Tensor moe_permute(const torch::Tensor& x, const MoeRouting& r) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(x, r) && r.kept() > 0) {
    if (detail::any_requires_grad({x})) return PermuteFn::apply(x, r.src, r.pos)[0];
    return gather_rows(x, r.src, {});
  }
#endif
  return composite::moe_permute(x, r);
}

torch::Tensor moe_unpermute(const torch::Tensor& y, const torch::Tensor& w, const MoeRouting& r) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(y, r) && r.kept() > 0 && r.tokens > 0 && w.scalar_type() == torch::kFloat32 && w.device() == y.device()) {
    if (detail::any_requires_grad({y, w})) return UnpermuteFn::apply(y, w, r.src, r.assign, r.pos)[0];
    return combine_rows(y, r.pos, w, y.size(1));
  }
#endif
  return composite::moe_unpermute(y, w, r);
}

}  // namespace fathom::ops
