// Per-tensor FP8 quantisation for engine/model/fp8.cpp (current scaling: the scale maps the tensor's
// absolute maximum to the format's largest value). On CUDA with the kernels on: kernels/fp8_cast
// (two passes over the tensor); elsewhere the LibTorch composite, which the kernels match bit for
// bit. Needs a LibTorch with FP8 types (2.1 or newer); older ones throw.
#pragma once
#include <torch/types.h>

namespace fathom::ops {

struct Fp8Scaled {
  torch::Tensor q;    // fp8 (e4m3fn or e5m2), t's shape, contiguous
  torch::Tensor inv;  // fp32 scalar on t's device: q · inv ≈ t
};

Fp8Scaled fp8_quantize(const torch::Tensor& t, bool e4m3);

namespace composite {
Fp8Scaled fp8_quantize(const torch::Tensor& t, bool e4m3);
}

}  // namespace fathom::ops
