// AdamW (Loshchilov & Hutter 2019) over fp32 master parameters, written out rather than using
// torch::optim so that its state has stable names for checkpoints (and can be sharded by ZeRO):
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p·(1 − lr·wd);  p ← p − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + ε)
// which is exactly torch.optim.AdamW's update (same operation order), so runs can be checked
// against PyTorch. No weight decay on 1-D parameters (norm gains, biases).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops/adamw.h"

namespace fathom::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // params: (name, fp32 tensor whose .grad() holds the gradient at step time)
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options);
  // With explicit weight-decay flags per tensor (ZeRO shards: 1-D slices of matrices decay).
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options, std::vector<bool> decay);

  // grad_scale multiplies every gradient first (the clip coefficient): inside the fused CUDA kernel,
  // as one multi-tensor pass elsewhere (the gradients are then left scaled).
  void step(double lr, double grad_scale = 1.0);
  // Mixed precision in one pass (engine/ops/adamw.h): the masters (this optimizer's parameters)
  // updated from the model's bf16 gradients times grad_scale, and written back rounded into the
  // model's bf16 parameters. grads_bf16[i] and model_bf16[i] belong to params()[i]; an undefined
  // gradient skips the tensor. can_step_mixed says whether the fused kernel applies (CUDA, kernels
  // on, these dtypes); step_mixed throws where it does not.
  bool can_step_mixed(const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16) const;
  // grad_scale_dev (optional): the multiplier as a 1-element fp32 tensor on the device, read by the
  // kernel (ops::grad_norm_clip's coefficient); a non-finite value there makes the kernel skip the
  // update, and the caller then undoes the step count (set_steps_taken) once it has read the value.
  void step_mixed(double lr, const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16,
                  double grad_scale, const torch::Tensor& grad_scale_dev = {});
  // step_mixed in groups, for an update overlapped with the next forward (ops::OverlappedUpdate):
  // group_of[i] is params()[i]'s group in [0, groups); each group's tensors go in launches of their
  // own, in group order, and after_group(g) is called once group g's are queued. One step counted;
  // the same arithmetic per element as step_mixed.
  void step_mixed_groups(double lr, const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16,
                         const torch::Tensor& grad_scale_dev, const std::vector<int>& group_of, int groups,
                         const std::function<void(int)>& after_group);
  int64_t steps_taken() const { return step_; }

  // "<param>.exp_avg", "<param>.exp_avg_sq" and "step" (int64 scalar).
  std::vector<std::pair<std::string, torch::Tensor>> state_tensors() const;
  void load_state_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);
  const std::vector<std::pair<std::string, torch::Tensor>>& params() const { return params_; }
  const std::vector<torch::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<torch::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  void set_steps_taken(int64_t s) { step_ = s; }

 private:
  // The tensors with a gradient (grads[i] belongs to params()[i]), with their moments, their decay
  // flags and, given `model`, the model's own copies.
  struct Selected {
    std::vector<torch::Tensor> p, g, m, v, w;
    std::vector<bool> decay;
  };
  Selected select(const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>* model) const;
  ops::AdamWStep hyper(double lr) const;  // at the current step_

  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<bool> decay_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// The AdamW update through _foreach_ kernels, the same element-wise operations as a per-tensor loop
// (AdamW::step's path on the CPU; the composite the fused CUDA kernel is measured against). p_decay:
// the entries of p that take weight decay.
void adamw_foreach_update(const std::vector<torch::Tensor>& p, const std::vector<torch::Tensor>& g,
                          const std::vector<torch::Tensor>& m, const std::vector<torch::Tensor>& v,
                          const std::vector<torch::Tensor>& p_decay, const ops::AdamWStep& s);

// Global L2 norm of all gradients, then scale them by min(1, max_norm / (norm + 1e-6)) exactly as
// torch.nn.utils.clip_grad_norm_ does. max_norm ≤ 0 only measures. Returns the norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// The factor clipping scales gradients by for this norm: min(1, max_norm / (norm + 1e-6)), and 1
// when max_norm ≤ 0 or the norm is not finite (torch.nn.utils.clip_grad_norm_'s rule).
double clip_coefficient(double norm, double max_norm);

// The global L2 norm of these gradients (undefined ones skipped), accumulated in fp32 whatever their
// dtype, with no clipping: for bf16 gradients that step_mixed scales itself.
double grad_norm(const std::vector<torch::Tensor>& grads);

}  // namespace fathom::train
