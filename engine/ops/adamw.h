// Multi-tensor fused AdamW on CUDA (kernels/adamw, issue #10) for engine/train/optimizer: every
// parameter of a step updated in one pass (one launch per 48 tensors). Applicable to fp32, dense,
// same-device CUDA tensors with the kernels on; elsewhere the optimizer keeps its other paths.
#pragma once
#include <torch/types.h>

#include <vector>

namespace fathom::ops {

struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  double step_size = 0;              // lr / (1 − β1ᵗ)
  double bias_correction2_sqrt = 1;  // sqrt(1 − β2ᵗ)
};

bool fused_adamw_applicable(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq);
// decay[i]: tensor i takes weight decay. grad_scale multiplies every gradient as it is read.
void fused_adamw_step(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                      const std::vector<bool>& decay, const AdamWStep& s, double grad_scale = 1.0);

// Mixed precision (a bf16 model trained through fp32 masters): the same update of the fp32 masters
// and moments, reading the model's bf16 gradients (each times grad_scale, the clip coefficient) and
// writing the updated masters, rounded to bf16, into the model's parameters. One pass replaces
// three: gradients to fp32, the update, masters back to the model. CUDA with the kernels on; the
// tensors at index i all have masters[i]'s element count, contiguous, on one device.
bool fused_adamw_mixed_applicable(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                                  const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                                  const std::vector<torch::Tensor>& model_bf16);
void fused_adamw_mixed_step(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                            const std::vector<torch::Tensor>& model_bf16, const std::vector<bool>& decay, const AdamWStep& s,
                            double grad_scale);

}  // namespace fathom::ops
