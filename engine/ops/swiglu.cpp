// SwiGLU op: dispatch to kernels/swiglu on CUDA, composite elsewhere (see swiglu.h).
#include "engine/ops/swiglu.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/swiglu.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u) { return torch::nn::functional::silu(g) * u; }
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fusable(const torch::Tensor& g, const torch::Tensor& u) {
  return kernels_enabled() && g.is_cuda() && detail::kernel_dtype(g).has_value() && u.scalar_type() == g.scalar_type() &&
         u.device() == g.device() && u.sizes() == g.sizes() && g.numel() > 0;
}

torch::Tensor forward_cuda(const torch::Tensor& g, const torch::Tensor& u) {
  c10::cuda::CUDAGuard guard(g.device());
  auto gc = detail::dense(g), uc = detail::dense(u);
  auto out = torch::empty(g.sizes(), g.options());
  kernels::swiglu_forward(*detail::kernel_dtype(g), gc.data_ptr(), uc.data_ptr(), out.data_ptr(), g.numel(), detail::stream());
  return out;
}

class SwiGluFn : public torch::autograd::Function<SwiGluFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& g, const torch::Tensor& u) {
    ctx->save_for_backward({g, u});
    return {forward_cuda(g, u)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto& g = s[0];
    c10::cuda::CUDAGuard guard(g.device());
    auto dout = detail::dense(grads[0]), gc = detail::dense(g), uc = detail::dense(s[1]);
    auto dg = torch::empty(g.sizes(), g.options()), du = torch::empty(g.sizes(), g.options());
    kernels::swiglu_backward(*detail::kernel_dtype(g), dout.data_ptr(), gc.data_ptr(), uc.data_ptr(), dg.data_ptr(), du.data_ptr(),
                             g.numel(), detail::stream());
    return {dg, du};
  }
};
}  // namespace
#endif

torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(g, u)) {
    if (detail::any_requires_grad({g, u})) return SwiGluFn::apply(g, u)[0];
    return forward_cuda(g, u);
  }
#endif
  return composite::swiglu(g, u);
}

}  // namespace fathom::ops
