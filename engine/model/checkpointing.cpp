// Activation checkpointing as a custom autograd function (see checkpointing.h).
#include "engine/model/checkpointing.h"

namespace fathom::model {
namespace {

thread_local bool t_recomputing = false;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(CheckpointedFn f) : fn(std::move(f)) {}
  CheckpointedFn fn;
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // Inputs arrive as a TensorList: apply() only sees tensors inside an ArrayRef (a std::vector
  // argument would be taken for a non-tensor and the result would not require grad).
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<FnHolder> holder, at::TensorList inputs) {
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    variable_list in(inputs.begin(), inputs.end());
    ctx->save_for_backward(in);
    torch::NoGradGuard no_grad;
    variable_list outputs = holder->fn(in);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    variable_list saved = ctx->get_saved_variables();
    variable_list inputs;
    inputs.reserve(saved.size());
    for (const auto& s : saved) {
      auto x = s.detach();
      x.requires_grad_(s.requires_grad() || s.is_floating_point());
      inputs.push_back(x);
    }
    variable_list outputs;
    {
      torch::AutoGradMode enable(true);
      t_recomputing = true;
      try {
        outputs = holder->fn(inputs);
      } catch (...) {
        t_recomputing = false;
        throw;
      }
      t_recomputing = false;
    }
    variable_list outs, grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].requires_grad() && grad_outputs[i].defined()) {
        outs.push_back(outputs[i]);
        grads.push_back(grad_outputs[i]);
      }
    }
    if (!outs.empty()) torch::autograd::backward(outs, grads);
    variable_list result;
    result.push_back(torch::Tensor());  // for the holder argument
    for (auto& x : inputs) result.push_back(x.grad());
    return result;
  }
};

}  // namespace

bool checkpoint_recomputing() { return t_recomputing; }

variable_list checkpoint(CheckpointedFn fn, const variable_list& inputs) {
  auto holder = c10::make_intrusive<FnHolder>(std::move(fn));
  return CheckpointFunction::apply(holder, at::TensorList(inputs));
}

}  // namespace fathom::model
