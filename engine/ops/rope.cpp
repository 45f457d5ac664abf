// Rotary embedding ops: dispatch to kernels/rope on CUDA, composites elsewhere (see rope.h).
#include "engine/ops/rope.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/rope.h"
#endif

namespace fathom::ops {

namespace composite {
namespace {
torch::Tensor rotate_half(const torch::Tensor& x) {
  auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  return torch::cat({-x2, x1}, -1);
}
}  // namespace

torch::Tensor rope_apply(const torch::Tensor& x, const torch::Tensor& cos_t, const torch::Tensor& sin_t, int64_t offset) {
  const auto T = x.size(2);
  auto cos = cos_t.narrow(0, offset, T).to(x.scalar_type());  // (T, hd), broadcast over (B, H)
  auto sin = sin_t.narrow(0, offset, T).to(x.scalar_type());
  return x * cos + rotate_half(x) * sin;
}

torch::Tensor rope_apply_at(const torch::Tensor& x, const torch::Tensor& cos_t, const torch::Tensor& sin_t,
                            const torch::Tensor& positions) {
  const auto B = x.size(0), T = x.size(2), hd = x.size(3);
  auto flat = positions.reshape({-1});
  auto cos = cos_t.index_select(0, flat).view({B, 1, T, hd}).to(x.scalar_type());
  auto sin = sin_t.index_select(0, flat).view({B, 1, T, hd}).to(x.scalar_type());
  return x * cos + rotate_half(x) * sin;
}
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fusable(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (!kernels_enabled() || !x.is_cuda() || x.dim() != 4 || !detail::kernel_dtype(x)) return false;
  const int64_t hd = x.size(3);
  return hd % 2 == 0 && hd > 0 && cos.scalar_type() == torch::kFloat32 && sin.scalar_type() == torch::kFloat32 &&
         cos.dim() == 2 && sin.sizes() == cos.sizes() && cos.size(1) == hd && cos.device() == x.device() &&
         sin.device() == x.device() && cos.is_contiguous() && sin.is_contiguous();
}

// y (or dx when backward) with x's layout where x is dense; positions may be undefined (offset).
torch::Tensor apply_cuda(const torch::Tensor& x_in, const torch::Tensor& cos, const torch::Tensor& sin,
                         const torch::Tensor& positions, int64_t offset, bool backward) {
  c10::cuda::CUDAGuard guard(x_in.device());
  auto x = x_in.stride(3) == 1 ? x_in : x_in.contiguous();
  auto y = torch::empty_like(x);
  if (y.stride(3) != 1) y = torch::empty(x.sizes(), x.options());
  // An empty positions tensor means offset + t (autograd Function inputs are kept defined).
  torch::Tensor pos = positions.defined() && positions.numel() > 0 ? positions.to(torch::kInt64).contiguous() : torch::Tensor();
  kernels::RopeArgs a;
  a.x = x.data_ptr();
  a.y = y.data_ptr();
  a.B = x.size(0);
  a.H = x.size(1);
  a.T = x.size(2);
  a.hd = x.size(3);
  a.x_sb = x.stride(0);
  a.x_sh = x.stride(1);
  a.x_st = x.stride(2);
  a.y_sb = y.stride(0);
  a.y_sh = y.stride(1);
  a.y_st = y.stride(2);
  a.cos = cos.data_ptr<float>();
  a.sin = sin.data_ptr<float>();
  a.positions = pos.defined() ? pos.data_ptr<int64_t>() : nullptr;
  a.offset = offset;
  a.backward = backward;
  kernels::rope_apply(*detail::kernel_dtype(x), a, detail::stream());
  return y;
}

class RopeFn : public torch::autograd::Function<RopeFn> {
 public:
  // positions empty: offset + t.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                               const torch::Tensor& positions, int64_t offset) {
    ctx->save_for_backward({cos, sin, positions});
    ctx->saved_data["offset"] = offset;
    return {apply_cuda(x, cos, sin, positions, offset, false)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto dx = apply_cuda(grads[0], s[0], s[1], s[2], ctx->saved_data["offset"].toInt(), true);
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor dispatch(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, const torch::Tensor& positions,
                       int64_t offset) {
  if (detail::any_requires_grad({x})) {
    auto pos = positions.defined() ? positions : torch::empty({0}, x.options().dtype(torch::kInt64));
    return RopeFn::apply(x, cos, sin, pos, offset)[0];
  }
  return apply_cuda(x, cos, sin, positions, offset, false);
}
}  // namespace
#endif

torch::Tensor rope_apply(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
#ifdef FATHOM_HAVE_CUDA
  // Out-of-range positions take the composite, whose narrow() reports them.
  if (fusable(x, cos, sin) && offset >= 0 && offset + x.size(2) <= cos.size(0)) return dispatch(x, cos, sin, {}, offset);
#endif
  return composite::rope_apply(x, cos, sin, offset);
}

torch::Tensor rope_apply_at(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                            const torch::Tensor& positions) {
#ifdef FATHOM_HAVE_CUDA
  if (fusable(x, cos, sin) && positions.defined() && positions.device() == x.device() && positions.dim() == 2 &&
      positions.size(0) == x.size(0) && positions.size(1) == x.size(2))
    return dispatch(x, cos, sin, positions, 0);
#endif
  return composite::rope_apply_at(x, cos, sin, positions);
}

}  // namespace fathom::ops
