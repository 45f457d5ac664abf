// The model's linear layer: y = x·Wᵀ (+ b), with two optional extras used by fine-tuning.
// - A LoRA adapter (Hu et al. 2021): y += s·B·A·dropout(x), A (r × in) Kaiming-uniform, B (out × r)
//   zero, s = alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023). Registered as
//   submodules lora_A / lora_B, so tensors are named <layer>.lora_A.weight as PEFT names them.
// - An int8 base (QLoRA-style memory saving for the frozen weight): W stored as int8 with one fp32
//   scale per output channel (absmax / 127) and dequantised on the fly in forward.
#pragma once
#include <torch/torch.h>

#include <optional>

#include "engine/ops/decode.h"

namespace fathom::model {

// Serving several LoRA adapters over one base at once (S-LoRA / Punica style): each Linear may hold
// a bank of G adapters, and every row of a batch picks one (or none) by its index. The rows'
// choice is set for the current thread while a forward runs:
//   AdapterRows rows(ids);  // ids (B) int64 on the model's device, -1 = the base model alone
//   net->forward_decode(...);
class AdapterRows {
 public:
  explicit AdapterRows(torch::Tensor ids);
  ~AdapterRows();
  AdapterRows(const AdapterRows&) = delete;
  AdapterRows& operator=(const AdapterRows&) = delete;
  static const torch::Tensor* current();  // null when none is set on this thread

 private:
  const torch::Tensor* previous_;
  torch::Tensor ids_;
};

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
  // Dynamic int8 (as torch.ao.quantization.quantize_dynamic): int8 weights per output channel and
  // the activations quantised per row on the fly, the product in integers. On the CPU through
  // LibTorch's quantized::linear_dynamic (oneDNN/x86/QNNPACK, fp32 input); on CUDA (LibTorch ≥ 2.1)
  // through at::_int_mm when the shapes allow (more than 16 rows, dims multiples of 8), else the
  // same arithmetic on dequantised weights. Implies quantize_int8(). Returns the kernel used.
  std::string quantize_dynamic_int8();
  bool dynamic_int8() const { return dynamic_; }

  // The adapter bank (see AdapterRows): A (G, r, in), B (G, out, r) in the compute dtype, scale (G)
  // fp32; ranks below r are zero-padded, adapters that skip this layer are all zero.
  void set_adapter_bank(torch::Tensor A, torch::Tensor B, torch::Tensor scale);
  bool has_adapter_bank() const { return bank_A.defined(); }

  // The weight as the decode kernels take it (engine/ops/decode.h): the bf16/fp16/fp32 weight, or
  // int8 with its scales, and the bias. Empty when the layer is more than that product: an
  // unmerged adapter, an adapter bank, or dynamic int8.
  std::optional<ops::DecodeWeight> decode_weight() const;

  // Whether forward(x) is exactly x · weightᵀ through LibTorch: no bias, adapter, adapter bank, int8
  // base, FP8 product or decode kernel.
  bool plain_product_for(const torch::Tensor& x) const;

  torch::Tensor weight, bias;                 // bias undefined without one
  torch::Tensor bank_A, bank_B, bank_scale;   // adapter bank (not parameters: never saved or trained)
  torch::Tensor weight_int8, weight_scale;    // quantised base
  std::shared_ptr<LinearImpl> lora_A, lora_B; // adapter (null without)
  int64_t in_features, out_features;

 private:
  torch::Tensor dynamic_forward(const torch::Tensor& x);
  LoraSpec spec_;
  bool merged_ = false;
  bool dynamic_ = false;
  c10::IValue packed_;           // quantized::linear_prepack result (CPU), None elsewhere
  torch::Tensor weight_int8_t_;  // (in, out) int8 for at::_int_mm (CUDA)
};
TORCH_MODULE(Linear);

// w (rows, K) → int8 (rows, K) on w's device and one scale per row in w's dtype (absmax / 127), so
// that w ≈ q · scale. Converted to fp32 a chunk of rows at a time: no fp32 copy of the whole matrix.
std::pair<torch::Tensor, torch::Tensor> quantize_rows_int8(const torch::Tensor& w);

// layers[i]->forward(x) for each layer. Training on CUDA with the kernels on, when every layer is a
// plain product, through ops::shared_input_linear instead: one autograd node whose backward sums the
// input gradients inside the products (engine/ops/shared_linear.h).
std::vector<torch::Tensor> forward_shared_input(const std::vector<LinearImpl*>& layers, const torch::Tensor& x);

}  // namespace fathom::model
