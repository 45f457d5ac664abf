// Linear layer with optional LoRA adapter and int8 base (see linear.h).
#include "engine/model/linear.h"

#include <cmath>

namespace fathom::model {

double LoraSpec::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  // torch.nn.Linear's default initialisation (the transformer re-initialises its weights anyway).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}).uniform_(-bound, bound));
}

torch::Tensor LinearImpl::effective_weight(bool with_adapter) const {
  torch::Tensor w = quantized() ? weight_int8.to(weight_scale.scalar_type()) * weight_scale.unsqueeze(1) : weight;
  if (with_adapter && has_lora() && !merged_) w = w + lora_delta().to(w.scalar_type());
  return w;
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  auto w = quantized() ? (weight_int8.to(x.scalar_type()) * weight_scale.to(x.scalar_type()).unsqueeze(1)) : weight;
  auto y = torch::nn::functional::linear(x, w, bias.defined() ? bias : torch::Tensor());
  if (has_lora() && !merged_) {
    auto h = x;
    if (spec_.dropout > 0 && is_training())
      h = torch::nn::functional::dropout(h, torch::nn::functional::DropoutFuncOptions().p(spec_.dropout).training(true));
    y = y + lora_B->forward(lora_A->forward(h)) * spec_.scale();
  }
  return y;
}

void LinearImpl::add_lora(const LoraSpec& spec) {
  TORCH_CHECK(!has_lora(), "layer already has a LoRA adapter");
  TORCH_CHECK(spec.r > 0, "LoRA rank must be positive");
  spec_ = spec;
  const auto opts = (quantized() ? weight_scale : weight).options();
  lora_A = register_module("lora_A", std::make_shared<LinearImpl>(in_features, spec.r, false));
  lora_B = register_module("lora_B", std::make_shared<LinearImpl>(spec.r, out_features, false));
  torch::NoGradGuard ng;
  // PEFT: A ~ kaiming_uniform(a = sqrt(5)) → U(-1/sqrt(in), 1/sqrt(in)); B = 0, so training starts
  // at exactly the base model.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  lora_A->weight.uniform_(-bound, bound);
  lora_B->weight.zero_();
  lora_A->to(opts.device(), opts.dtype().toScalarType());
  lora_B->to(opts.device(), opts.dtype().toScalarType());
}

torch::Tensor LinearImpl::lora_delta() const {
  TORCH_CHECK(has_lora(), "layer has no LoRA adapter");
  return torch::matmul(lora_B->weight.to(torch::kFloat32), lora_A->weight.to(torch::kFloat32)) * spec_.scale();
}

void LinearImpl::merge() {
  TORCH_CHECK(has_lora() && !merged_, "no unmerged adapter to merge");
  TORCH_CHECK(!quantized(), "merge needs the full-precision base weight (this layer is int8)");
  torch::NoGradGuard ng;
  weight.add_(lora_delta().to(weight.scalar_type()));
  merged_ = true;
}

void LinearImpl::unmerge() {
  TORCH_CHECK(has_lora() && merged_, "no merged adapter to unmerge");
  torch::NoGradGuard ng;
  weight.sub_(lora_delta().to(weight.scalar_type()));
  merged_ = false;
}

void LinearImpl::quantize_int8() {
  TORCH_CHECK(!quantized(), "already int8");
  torch::NoGradGuard ng;
  auto w = weight.detach().to(torch::kFloat32);
  auto scale = w.abs().amax(1).clamp_min(1e-12) / 127.0;  // per output channel
  auto q = torch::round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8);
  weight_int8 = register_buffer("weight_int8", q);
  weight_scale = register_buffer("weight_scale", scale.to(weight.scalar_type()));
  parameters_.erase("weight");
  weight = torch::Tensor();
}

}  // namespace fathom::model
