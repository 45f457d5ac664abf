// Multi-tensor fused AdamW: kernels/adamw behind tensor checks (see adamw.h).
#include "engine/ops/adamw.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/adamw.h"
#endif

namespace fathom::ops {

bool fused_adamw_applicable(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || params.empty() || grads.size() != params.size() || exp_avg.size() != params.size() ||
      exp_avg_sq.size() != params.size())
    return false;
  const auto device = params[0].device();
  if (!device.is_cuda()) return false;
  for (size_t i = 0; i < params.size(); ++i)
    for (const auto* t : {&params[i], &grads[i], &exp_avg[i], &exp_avg_sq[i]})
      if (!t->defined() || t->device() != device || t->scalar_type() != torch::kFloat32 || !t->is_contiguous() ||
          t->numel() != params[i].numel())
        return false;
  return true;
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq;
  return false;
#endif
}

void fused_adamw_step(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                      const std::vector<bool>& decay, const AdamWStep& s) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(fused_adamw_applicable(params, grads, exp_avg, exp_avg_sq) && decay.size() == params.size(),
              "fused_adamw_step: tensors the kernel does not take");
  c10::cuda::CUDAGuard guard(params[0].device());
  std::vector<kernels::AdamWTensor> ts(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    ts[i] = kernels::AdamWTensor{params[i].data_ptr<float>(), grads[i].data_ptr<float>(), exp_avg[i].data_ptr<float>(),
                                 exp_avg_sq[i].data_ptr<float>(), params[i].numel(), static_cast<bool>(decay[i])};
  kernels::AdamWHyper h;
  h.lr = static_cast<float>(s.lr);
  h.beta1 = static_cast<float>(s.beta1);
  h.beta2 = static_cast<float>(s.beta2);
  h.eps = static_cast<float>(s.eps);
  h.weight_decay = static_cast<float>(s.weight_decay);
  h.step_size = static_cast<float>(s.step_size);
  h.bias_correction2_sqrt = static_cast<float>(s.bias_correction2_sqrt);
  kernels::adamw_step(ts.data(), static_cast<int>(ts.size()), h, detail::stream());
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq, (void)decay, (void)s;
  TORCH_CHECK(false, "fused_adamw_step needs a CUDA build");
#endif
}

}  // namespace fathom::ops
