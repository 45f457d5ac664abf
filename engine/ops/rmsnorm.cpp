// RMSNorm ops: dispatch to kernels/rmsnorm on CUDA, composites elsewhere (see rmsnorm.h).
#include "engine/ops/rmsnorm.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/rmsnorm.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  auto xf = x.to(torch::kFloat32);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (y * w.to(torch::kFloat32)).to(x.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w,
                                                    double eps) {
  auto h = x + r;
  return {rmsnorm(h, w, eps), h};
}
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fusable(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w) {
  if (!kernels_enabled() || !x.is_cuda() || x.dim() < 1 || x.numel() == 0) return false;
  const auto dt = detail::kernel_dtype(x);
  if (!dt || w.scalar_type() != x.scalar_type() || w.dim() != 1 || w.device() != x.device()) return false;
  const int64_t C = x.size(-1);
  if (w.size(0) != C || !kernels::rmsnorm_supported(*dt, C)) return false;
  if (r.defined() && (r.sizes() != x.sizes() || r.scalar_type() != x.scalar_type() || r.device() != x.device())) return false;
  return true;
}

struct Forward {
  torch::Tensor y, h, rstd;
};

// r undefined: plain RMSNorm (h is x).
Forward forward_cuda(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w, double eps, bool want_rstd) {
  c10::cuda::CUDAGuard guard(x.device());
  const auto dt = *detail::kernel_dtype(x);
  auto xc = detail::dense(x), wc = detail::dense(w);
  torch::Tensor rc = r.defined() ? detail::dense(r) : torch::Tensor();
  const int64_t C = x.size(-1), rows = x.numel() / C;
  Forward f;
  f.y = torch::empty(x.sizes(), x.options());
  f.h = r.defined() ? torch::empty(x.sizes(), x.options()) : xc;
  if (want_rstd) f.rstd = torch::empty({rows}, x.options().dtype(torch::kFloat32));
  kernels::add_rmsnorm_forward(dt, xc.data_ptr(), r.defined() ? rc.data_ptr() : nullptr, wc.data_ptr(), f.y.data_ptr(),
                               r.defined() ? f.h.data_ptr() : nullptr, want_rstd ? f.rstd.data_ptr<float>() : nullptr, rows, C,
                               static_cast<float>(eps), detail::stream());
  return f;
}

// (dh, dw) from dy and, when given, the gradient reaching h directly.
std::pair<torch::Tensor, torch::Tensor> backward_cuda(const torch::Tensor& dy, const torch::Tensor& h, const torch::Tensor& w,
                                                      const torch::Tensor& rstd, const torch::Tensor& dh_in) {
  c10::cuda::CUDAGuard guard(h.device());
  const auto dt = *detail::kernel_dtype(h);
  auto dyc = detail::dense(dy), hc = detail::dense(h), wc = detail::dense(w);
  torch::Tensor inc = dh_in.defined() ? detail::dense(dh_in) : torch::Tensor();
  const int64_t C = h.size(-1), rows = h.numel() / C;
  auto dh = torch::empty(h.sizes(), h.options());
  auto dw = torch::empty({C}, w.options());
  const size_t ws_bytes = kernels::rmsnorm_backward_workspace_bytes(dt, rows, C);
  auto ws = torch::empty({static_cast<int64_t>(ws_bytes / sizeof(float)) + 1}, h.options().dtype(torch::kFloat32));
  kernels::rmsnorm_backward(dt, dyc.data_ptr(), hc.data_ptr(), wc.data_ptr(), rstd.data_ptr<float>(),
                            dh_in.defined() ? inc.data_ptr() : nullptr, dh.data_ptr(), dw.data_ptr(), ws.data_ptr<float>(), rows,
                            C, detail::stream());
  return {dh, dw.view(w.sizes())};
}

class RmsNormFn : public torch::autograd::Function<RmsNormFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w, double eps) {
    auto f = forward_cuda(x, torch::Tensor(), w, eps, true);
    ctx->save_for_backward({f.h, w, f.rstd});
    return {f.y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto [dx, dw] = backward_cuda(grads[0], s[0], s[1], s[2], torch::Tensor());
    return {dx, dw, torch::Tensor()};
  }
};

class AddRmsNormFn : public torch::autograd::Function<AddRmsNormFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w,
                               double eps) {
    auto f = forward_cuda(x, r, w, eps, true);
    ctx->save_for_backward({f.h, w, f.rstd});
    // An unused h (the final norm's) brings no gradient rather than a tensor of zeros to read.
    ctx->set_materialize_grads(false);
    return {f.y, f.h};
  }
  // h feeds both the norm and the residual stream: its gradient is the sum of both paths; x and r
  // both receive it.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto dy = grads[0].defined() ? grads[0] : torch::zeros_like(s[0]);
    auto [dh, dw] = backward_cuda(dy, s[0], s[1], s[2], grads[1]);
    return {dh, dh, dw, torch::Tensor()};
  }
};
}  // namespace
#endif

torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(x, torch::Tensor(), w)) {
    if (detail::any_requires_grad({x, w})) return RmsNormFn::apply(x, w, eps)[0];
    return forward_cuda(x, torch::Tensor(), w, eps, false).y;
  }
#endif
  return composite::rmsnorm(x, w, eps);
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w,
                                                    double eps) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(x, r, w)) {
    if (detail::any_requires_grad({x, r, w})) {
      auto out = AddRmsNormFn::apply(x, r, w, eps);
      return {out[0], out[1]};
    }
    auto f = forward_cuda(x, r, w, eps, false);
    return {f.y, f.h};
  }
#endif
  return composite::add_rmsnorm(x, r, w, eps);
}

}  // namespace fathom::ops
