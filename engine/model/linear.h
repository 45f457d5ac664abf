// The model's linear layer: y = x·Wᵀ (+ b), with two optional extras used by fine-tuning.
// - A LoRA adapter (Hu et al. 2021): y += s·B·A·dropout(x), A (r × in) Kaiming-uniform, B (out × r)
//   zero, s = alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023). Registered as
//   submodules lora_A / lora_B, so tensors are named <layer>.lora_A.weight as PEFT names them.
// - An int8 base (QLoRA-style memory saving for the frozen weight): W stored as int8 with one fp32
//   scale per output channel (absmax / 127) and dequantised on the fly in forward.
#pragma once
#include <torch/torch.h>

namespace fathom::model {

struct LoraSpec {
  int64_t r = 16;
  double alpha = 32.0;
  double dropout = 0.0;
  bool rslora = false;
  double scale() const;
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  // The weight the layer applies now: dequantised if int8, plus the adapter when merged is false
  // and with_adapter is true.
  torch::Tensor effective_weight(bool with_adapter = true) const;

  void add_lora(const LoraSpec& spec);
  bool has_lora() const { return static_cast<bool>(lora_A); }
  // s·B·A (out × in), in fp32.
  torch::Tensor lora_delta() const;
  // W += s·B·A and the adapter stops being applied separately; unmerge subtracts it again.
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

  // Replace the fp32/bf16 weight by int8 + per-channel scales (the `weight` parameter goes away;
  // buffers weight_int8, weight_scale appear). Call after the model reached its dtype and device.
  void quantize_int8();
  bool quantized() const { return weight_int8.defined(); }

  torch::Tensor weight, bias;                 // bias undefined without one
  torch::Tensor weight_int8, weight_scale;    // quantised base
  std::shared_ptr<LinearImpl> lora_A, lora_B; // adapter (null without)
  int64_t in_features, out_features;

 private:
  LoraSpec spec_;
  bool merged_ = false;
};
TORCH_MODULE(Linear);

}  // namespace fathom::model
