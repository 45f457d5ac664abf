// SwiGLU's gate (Shazeer 2020): silu(g) ⊙ u. On CUDA with the kernels on: kernels/swiglu (one
// pass each way; saves g and u, not silu(g)); elsewhere the composite F::silu(g) * u.
#pragma once
#include <torch/types.h>

namespace fathom::ops {

torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u);

namespace composite {
torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u);
}

}  // namespace fathom::ops
