// AdamW and gradient clipping (see optimizer.h).
#include "engine/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include "engine/env_switch.h"

namespace fathom::train {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options)
    : params_(std::move(params)), opt_(options) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    decay_.push_back(p.dim() >= 2);
  }
}

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options, std::vector<bool> decay)
    : AdamW(std::move(params), options) {
  if (decay.size() != params_.size()) throw std::invalid_argument("AdamW: one decay flag per tensor");
  decay_ = std::move(decay);
}

ops::AdamWStep AdamW::hyper(double lr) const {
  ops::AdamWStep s;
  s.lr = lr;
  s.beta1 = opt_.beta1;
  s.beta2 = opt_.beta2;
  s.eps = opt_.eps;
  s.weight_decay = opt_.weight_decay;
  s.step_size = lr / (1.0 - std::pow(opt_.beta1, static_cast<double>(step_)));
  s.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(opt_.beta2, static_cast<double>(step_)));
  return s;
}

AdamW::Selected AdamW::select(const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>* model) const {
  Selected t;
  if (grads.size() != params_.size() || (model && model->size() != params_.size())) return t;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!grads[i].defined()) continue;
    t.p.push_back(params_[i].second);
    t.g.push_back(grads[i]);
    t.m.push_back(exp_avg_[i]);
    t.v.push_back(exp_avg_sq_[i]);
    if (model) t.w.push_back((*model)[i]);
    t.decay.push_back(decay_[i] && opt_.weight_decay != 0.0);
  }
  return t;
}

void AdamW::step(double lr, double grad_scale) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(params_.size());
  for (const auto& [name, p] : params_) grads.push_back(p.grad());
  ++step_;  // (counted even when no tensor has a gradient, as before)
  const auto t = select(grads, nullptr);
  if (t.p.empty()) return;
  const auto s = hyper(lr);
  // FATHOM_FUSED_ADAMW=0 keeps LibTorch's path (A/B measurements: tools/gpu/check_kernels.sh).
  static const bool fused_allowed = env_switch("FATHOM_FUSED_ADAMW", true);
  if (fused_allowed && ops::fused_adamw_applicable(t.p, t.g, t.m, t.v)) {
    // CUDA with the kernels on: Fathom's multi-tensor fused AdamW (kernels/adamw), one pass over
    // parameters, gradients and moments, both weight-decay groups in one launch.
    ops::fused_adamw_step(t.p, t.g, t.m, t.v, t.decay, s, grad_scale);
    return;
  }
  if (grad_scale != 1.0) at::_foreach_mul_(t.g, grad_scale);  // (the fused kernel scales as it reads)
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  // On CUDA, LibTorch's fused AdamW kernel (the one torch.optim.AdamW(fused=True) runs): one pass
  // over parameters, gradients and both moments instead of eight. Two calls, because the weight
  // decay differs between matrices and vectors.
  if (t.p.front().is_cuda() && t.p.front().scalar_type() == torch::kFloat32) {
    for (bool decay : {true, false}) {
      std::vector<torch::Tensor> p, g, m, v, steps;
      for (size_t i = 0; i < t.p.size(); ++i) {
        if (t.decay[i] != decay) continue;
        p.push_back(t.p[i]);
        g.push_back(t.g[i]);
        m.push_back(t.m[i]);
        v.push_back(t.v[i]);
        steps.push_back(torch::full({}, static_cast<double>(step_), p.back().options()));
      }
      if (p.empty()) continue;
      at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, opt_.beta1, opt_.beta2,
                        decay ? opt_.weight_decay : 0.0, opt_.eps, /*amsgrad=*/false, /*maximize=*/false);
    }
    return;
  }
#endif
  // Multi-tensor (_foreach_) kernels: a handful of launches for all parameters instead of ~6 per
  // tensor, and the same element-wise operations (so the same bits) as a per-tensor loop.
  std::vector<torch::Tensor> p_decay;
  for (size_t i = 0; i < t.p.size(); ++i)
    if (t.decay[i]) p_decay.push_back(t.p[i]);
  adamw_foreach_update(t.p, t.g, t.m, t.v, p_decay, s);
}

void adamw_foreach_update(const std::vector<torch::Tensor>& p, const std::vector<torch::Tensor>& g,
                          const std::vector<torch::Tensor>& m, const std::vector<torch::Tensor>& v,
                          const std::vector<torch::Tensor>& p_decay, const ops::AdamWStep& s) {
  if (!p_decay.empty()) at::_foreach_mul_(p_decay, 1.0 - s.lr * s.weight_decay);
  at::_foreach_mul_(m, s.beta1);
  at::_foreach_add_(m, g, 1.0 - s.beta1);
  at::_foreach_mul_(v, s.beta2);
  at::_foreach_addcmul_(v, g, g, 1.0 - s.beta2);
  auto denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, s.bias_correction2_sqrt);
  at::_foreach_add_(denom, s.eps);
  at::_foreach_addcdiv_(p, m, denom, -s.step_size);
}

bool AdamW::can_step_mixed(const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16) const {
  const auto t = select(grads_bf16, &model_bf16);
  return !t.p.empty() && ops::fused_adamw_mixed_applicable(t.p, t.g, t.m, t.v, t.w);
}

void AdamW::step_mixed(double lr, const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16,
                       double grad_scale, const torch::Tensor& grad_scale_dev) {
  const auto t = select(grads_bf16, &model_bf16);
  TORCH_CHECK(!t.p.empty() && ops::fused_adamw_mixed_applicable(t.p, t.g, t.m, t.v, t.w),
              "AdamW::step_mixed: the fused mixed-precision kernel does not apply to these tensors");
  torch::NoGradGuard no_grad;
  ++step_;
  ops::fused_adamw_mixed_step(t.p, t.g, t.m, t.v, t.w, t.decay, hyper(lr), grad_scale, grad_scale_dev);
}

void AdamW::step_mixed_groups(double lr, const std::vector<torch::Tensor>& grads_bf16, const std::vector<torch::Tensor>& model_bf16,
                              const torch::Tensor& grad_scale_dev, const std::vector<int>& group_of, int groups,
                              const std::function<void(int)>& after_group) {
  TORCH_CHECK(group_of.size() == params_.size() && grads_bf16.size() == params_.size(),
              "AdamW::step_mixed_groups: one group and one gradient per tensor");
  TORCH_CHECK(can_step_mixed(grads_bf16, model_bf16), "AdamW::step_mixed_groups: the fused mixed-precision kernel does not apply");
  torch::NoGradGuard no_grad;
  ++step_;
  const auto s = hyper(lr);
  for (int g = 0; g < groups; ++g) {
    std::vector<torch::Tensor> grads(params_.size());
    for (size_t i = 0; i < params_.size(); ++i)
      if (group_of[i] == g) grads[i] = grads_bf16[i];
    const auto t = select(grads, &model_bf16);
    if (!t.p.empty()) ops::fused_adamw_mixed_step(t.p, t.g, t.m, t.v, t.w, t.decay, s, 1.0, grad_scale_dev);
    after_group(g);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(params_.size() * 2 + 1);
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  out.emplace_back("step", torch::tensor(step_, torch::kInt64));
  return out;
}

void AdamW::load_state_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  auto get = [&](const std::string& name) -> torch::Tensor {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::runtime_error("optimizer state has no tensor '" + name + "'");
    return it->second;
  };
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto m = get(params_[i].first + ".exp_avg");
    auto v = get(params_[i].first + ".exp_avg_sq");
    if (m.sizes() != exp_avg_[i].sizes() || v.sizes() != exp_avg_sq_[i].sizes())
      throw std::runtime_error("optimizer state for '" + params_[i].first + "' has shape " +
                               c10::str(m.sizes()) + ", the model expects " + c10::str(exp_avg_[i].sizes()));
    exp_avg_[i].copy_(m);
    exp_avg_sq_[i].copy_(v);
  }
  step_ = get("step").item<int64_t>();
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  auto total = torch::stack(at::_foreach_norm(grads, 2)).norm(2);
  const double total_norm = total.item<double>();  // the step's one host sync
  const double coef = clip_coefficient(total_norm, max_norm);
  if (coef < 1.0) at::_foreach_mul_(grads, coef);
  return total_norm;
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0.0 || !std::isfinite(norm)) return 1.0;
  return std::min(1.0, max_norm / (norm + 1e-6));
}

double grad_norm(const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> defined;
  for (const auto& g : grads)
    if (g.defined()) defined.push_back(g);
  if (defined.empty()) return 0.0;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
  const auto norms = at::_foreach_norm(defined, 2, torch::kFloat32);  // multi-tensor, fp32 accumulation and results
#else
  const std::vector<int64_t> dim0{0};  // of the flattened view: the whole tensor
  std::vector<torch::Tensor> norms;
  for (const auto& g : defined) norms.push_back(at::linalg_vector_norm(g.reshape({-1}), 2, dim0, false, torch::kFloat32));
#endif
  return torch::stack(norms).norm(2).item<double>();  // the step's one host sync
}

}  // namespace fathom::train
