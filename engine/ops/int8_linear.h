// Weight-only int8 linear for decoding (engine/model/linear.h's int8 base): y = x · (q · scale)ᵀ.
// On CUDA with the kernels on and at most 8 rows: kernels/int8_gemv (the int8 weight read once, no
// dequantised copy); elsewhere the composite the layer used before (dequantise, then F::linear).
#pragma once
#include <torch/types.h>

namespace fathom::ops {

// x (..., K), q (N, K) int8, scale (N); result (..., N) in x's dtype. No bias.
bool int8_linear_fusable(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale);
torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale);

namespace composite {
torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale);
}

}  // namespace fathom::ops
