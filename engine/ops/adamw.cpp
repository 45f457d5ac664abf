// Multi-tensor fused AdamW: kernels/adamw behind tensor checks (see adamw.h).
#include "engine/ops/adamw.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/adamw.h"
#endif

namespace fathom::ops {

#ifdef FATHOM_HAVE_CUDA
namespace {
kernels::AdamWHyper hyper(const AdamWStep& s, double grad_scale) {
  kernels::AdamWHyper h;
  h.lr = static_cast<float>(s.lr);
  h.beta1 = static_cast<float>(s.beta1);
  h.beta2 = static_cast<float>(s.beta2);
  h.eps = static_cast<float>(s.eps);
  h.weight_decay = static_cast<float>(s.weight_decay);
  h.step_size = static_cast<float>(s.step_size);
  h.bias_correction2_sqrt = static_cast<float>(s.bias_correction2_sqrt);
  h.grad_scale = static_cast<float>(grad_scale);
  return h;
}

bool same_place(const torch::Tensor& t, const torch::Device& device, torch::ScalarType dtype, int64_t n) {
  return t.defined() && t.device() == device && t.scalar_type() == dtype && t.is_contiguous() && t.numel() == n;
}
}  // namespace
#endif

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
      if (!same_place(*t, device, torch::kFloat32, params[i].numel())) return false;
  return true;
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq;
  return false;
#endif
}

void fused_adamw_step(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                      const std::vector<bool>& decay, const AdamWStep& s, double grad_scale) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(fused_adamw_applicable(params, grads, exp_avg, exp_avg_sq) && decay.size() == params.size(),
              "fused_adamw_step: tensors the kernel does not take");
  c10::cuda::CUDAGuard guard(params[0].device());
  std::vector<kernels::AdamWTensor> ts(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    ts[i] = kernels::AdamWTensor{params[i].data_ptr<float>(), grads[i].data_ptr<float>(), exp_avg[i].data_ptr<float>(),
                                 exp_avg_sq[i].data_ptr<float>(), params[i].numel(), static_cast<bool>(decay[i])};
  kernels::adamw_step(ts.data(), static_cast<int>(ts.size()), hyper(s, grad_scale), detail::stream());
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq, (void)decay, (void)s, (void)grad_scale;
  TORCH_CHECK(false, "fused_adamw_step needs a CUDA build");
#endif
}

bool fused_adamw_mixed_applicable(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                                  const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                                  const std::vector<torch::Tensor>& model_bf16) {
#ifdef FATHOM_HAVE_CUDA
  const size_t n = masters.size();
  if (!kernels_enabled() || n == 0 || grads_bf16.size() != n || exp_avg.size() != n || exp_avg_sq.size() != n ||
      model_bf16.size() != n)
    return false;
  const auto device = masters[0].device();
  if (!device.is_cuda()) return false;
  for (size_t i = 0; i < n; ++i) {
    const auto numel = masters[i].numel();
    for (const auto* t : {&masters[i], &exp_avg[i], &exp_avg_sq[i]})
      if (!same_place(*t, device, torch::kFloat32, numel)) return false;
    for (const auto* t : {&grads_bf16[i], &model_bf16[i]})
      if (!same_place(*t, device, torch::kBFloat16, numel)) return false;
  }
  return true;
#else
  (void)masters, (void)grads_bf16, (void)exp_avg, (void)exp_avg_sq, (void)model_bf16;
  return false;
#endif
}

void fused_adamw_mixed_step(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                            const std::vector<torch::Tensor>& model_bf16, const std::vector<bool>& decay, const AdamWStep& s,
                            double grad_scale) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(fused_adamw_mixed_applicable(masters, grads_bf16, exp_avg, exp_avg_sq, model_bf16) && decay.size() == masters.size(),
              "fused_adamw_mixed_step: tensors the kernel does not take");
  c10::cuda::CUDAGuard guard(masters[0].device());
  std::vector<kernels::AdamWTensor> ts(masters.size());
  for (size_t i = 0; i < masters.size(); ++i) {
    auto& t = ts[i];
    t.p = masters[i].data_ptr<float>();
    t.m = exp_avg[i].data_ptr<float>();
    t.v = exp_avg_sq[i].data_ptr<float>();
    t.n = masters[i].numel();
    t.decay = decay[i];
    t.g_bf16 = static_cast<const uint16_t*>(grads_bf16[i].data_ptr());
    t.model_bf16 = static_cast<uint16_t*>(model_bf16[i].data_ptr());
  }
  kernels::adamw_step(ts.data(), static_cast<int>(ts.size()), hyper(s, grad_scale), detail::stream());
#else
  (void)masters, (void)grads_bf16, (void)exp_avg, (void)exp_avg_sq, (void)model_bf16, (void)decay, (void)s, (void)grad_scale;
  TORCH_CHECK(false, "fused_adamw_mixed_step needs a CUDA build");
#endif
}

}  // namespace fathom::ops
