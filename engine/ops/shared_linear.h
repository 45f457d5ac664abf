// Several linear maps of one input, y_i = x · W_iᵀ without biases (attention's q, k and v; the MLP's
// gate and up), as one autograd node. Separate linears each make their own input gradient in backward
// and autograd sums them with adds of their own: two for q/k/v and one for gate/up, 48 passes over a
// (B·T, C) tensor a step at llama-1b. Here dx = dy_0 · W_0 and every further
// dx += dy_i · W_i is a product with beta = 1: the sum happens in the GEMM's epilogue. The weight
// gradients dW_i = dy_iᵀ · x and the forward products are the same as the composite's. (H200,
// llama-1b: +1.5% tokens/s against FATHOM_SHARED_LINEAR=0, docs/benchmarks.md, session 11.)
#pragma once
#include <torch/types.h>

#include <vector>

namespace fathom::ops {

// weights: (out_i, in) matrices of x's element type and device, in = x.size(-1); y_i: x's leading
// dimensions and out_i. Without gradients to make, the plain products.
std::vector<torch::Tensor> shared_input_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights);

namespace composite {
std::vector<torch::Tensor> shared_input_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights);
}

}  // namespace fathom::ops
