// Linear maps of one input as one autograd node (see shared_linear.h). Device-agnostic: plain
// LibTorch products, so the CPU tests check it as CUDA runs it.
#include "engine/ops/shared_linear.h"

#include <torch/torch.h>

namespace fathom::ops {

namespace composite {
std::vector<torch::Tensor> shared_input_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights) {
  std::vector<torch::Tensor> out;
  out.reserve(weights.size());
  for (const auto& w : weights) out.push_back(at::linear(x, w));
  return out;
}
}  // namespace composite

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SharedInputLinearFn : public torch::autograd::Function<SharedInputLinearFn> {
 public:
  // (at::TensorList: autograd counts each weight as an input of its own.)
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList weights) {
    variable_list saved{x};
    saved.insert(saved.end(), weights.begin(), weights.end());
    ctx->save_for_backward(saved);
    ctx->set_materialize_grads(false);  // an unused output's gradient stays undefined, not zeros
    variable_list out;
    out.reserve(weights.size());
    for (const auto& w : weights) out.push_back(at::linear(x, w));
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const size_t k = saved.size() - 1;
    const auto x2 = x.reshape({-1, x.size(-1)});
    variable_list out(1 + k);
    torch::Tensor dx;
    for (size_t i = 0; i < k; ++i) {
      if (!grads[i].defined()) continue;  // (an output nothing used: no contribution)
      const auto& w = saved[1 + i];
      const auto dy = grads[i].reshape({-1, w.size(0)});
      if (ctx->needs_input_grad(0)) {
        if (!dx.defined()) dx = torch::mm(dy, w);
        else dx.addmm_(dy, w);  // dx += dy · W in the product's epilogue
      }
      if (ctx->needs_input_grad(1 + i)) out[1 + i] = torch::mm(dy.t(), x2);
    }
    if (dx.defined()) out[0] = dx.view(x.sizes());
    return out;
  }
};
}  // namespace

std::vector<torch::Tensor> shared_input_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights) {
  TORCH_CHECK(x.dim() >= 1 && !weights.empty(), "shared_input_linear: an input and at least one weight");
  bool grads = x.requires_grad();
  for (const auto& w : weights) {
    TORCH_CHECK(w.dim() == 2 && w.size(1) == x.size(-1) && w.scalar_type() == x.scalar_type() && w.device() == x.device(),
                "shared_input_linear: weight ", w.sizes(), " ", w.scalar_type(), " does not match input ", x.sizes(), " ",
                x.scalar_type());
    grads = grads || w.requires_grad();
  }
  if (!grads || !torch::GradMode::is_enabled()) return composite::shared_input_linear(x, weights);
  return SharedInputLinearFn::apply(x, at::TensorList(weights));
}

}  // namespace fathom::ops
