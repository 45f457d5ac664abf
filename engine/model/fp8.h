// FP8 linear layers for training on Hopper (and Ada): `train.precision: fp8` (issue #10).
//
// The model computes in bf16 with fp32 master weights, as with `precision: bf16`, but the products of
// its linear layers run on the FP8 tensor cores: activations and weights in e4m3 forward, gradients
// in e5m2 backward (the format split of Micikevicius et al. 2022, "FP8 formats for deep learning"),
// each tensor with its own scale from its current absolute maximum ("current scaling"), through
// LibTorch's scaled matmul (cuBLASLt). The embedding, norms, attention core and the LM head stay in
// bf16. The input saved for backward is the e4m3 copy, so activations take half the memory.
#pragma once
#include <torch/torch.h>

#include <string>

namespace fathom::model::fp8 {

// "" when FP8 training can run on `device`, else why not (not CUDA, compute capability below 8.9,
// a LibTorch older than 2.5 without the scaled matmul used here).
std::string unavailable_reason(const torch::Device& device);

// Whether Linear layers in training mode use FP8 products (set by the trainer for precision fp8).
void set_enabled(bool on);
bool enabled();

// True when x (…, K) · wᵀ (N, K) qualifies: CUDA, bf16/fp16, K, N and the row count multiples of 16.
bool applicable(const torch::Tensor& x, const torch::Tensor& w);

// y = x wᵀ with FP8 products forward and backward (autograd Function); the output has x's dtype.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w);

}  // namespace fathom::model::fp8
