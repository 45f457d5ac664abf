// RMSNorm and fused residual add + RMSNorm for the model (engine/model/transformer.cpp). On CUDA
// with the kernels on: kernels/rmsnorm (one pass forward, one pass backward with dw reduced in
// fp32), through an autograd Function; elsewhere the LibTorch composite in composite::, which is
// the model's original code (CPU results are unchanged bit for bit).
#pragma once
#include <torch/types.h>

#include <utility>

namespace fathom::ops {

// y = x / sqrt(mean(x², -1) + eps) · w, statistics in fp32, y in x's dtype. x (..., C), w (C).
torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// h = x + r, y = rmsnorm(h) · w; returns (y, h). x, r (..., C) of one shape.
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w,
                                                    double eps);

namespace composite {
torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps);
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w,
                                                    double eps);
}  // namespace composite

}  // namespace fathom::ops
