// Private to engine/ops: tensor → kernel-launcher plumbing for CUDA builds (element type, current
// stream, 16-byte aligned contiguous copies). Include only under FATHOM_HAVE_CUDA.
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "fathom/kernels/common.h"

namespace fathom::ops::detail {

inline std::optional<kernels::DType> kernel_dtype(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return kernels::DType::f32;
    case torch::kFloat16: return kernels::DType::f16;
    case torch::kBFloat16: return kernels::DType::bf16;
    default: return std::nullopt;
  }
}

inline bool aligned16(const torch::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// Contiguous and 16-byte aligned (a view at an odd offset is copied).
inline torch::Tensor dense(const torch::Tensor& t) {
  auto c = t.contiguous();
  if (!aligned16(c)) c = c.clone();
  return c;
}

inline cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }

inline bool any_requires_grad(std::initializer_list<torch::Tensor> ts) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

}  // namespace fathom::ops::detail
