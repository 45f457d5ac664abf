// Rotary position embedding apply for (B, H, T, hd) queries/keys, "rotate half" layout (see
// engine/model/transformer.h). On CUDA with the kernels on: kernels/rope (one pass, any B/H/T
// strides, tables in fp32); elsewhere the model's original composite. cos/sin: (T_max, hd) fp32
// on x's device.
#pragma once
#include <torch/types.h>

namespace fathom::ops {

// Positions offset .. offset + T - 1.
torch::Tensor rope_apply(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset);
// Explicit positions (B, T) int64 on x's device (must be < T_max: the kernel does not check them).
torch::Tensor rope_apply_at(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                            const torch::Tensor& positions);

namespace composite {
torch::Tensor rope_apply(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset);
torch::Tensor rope_apply_at(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                            const torch::Tensor& positions);
}  // namespace composite

}  // namespace fathom::ops
