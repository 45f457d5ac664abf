// Linear layers of many experts over one buffer whose rows are grouped by expert (ops/moe.h's
// dispatch): rows [o_g, o_g + rows_g) of x go through weight W_g (out × in, no bias):
// y_g = x_g · W_gᵀ. On CUDA with the kernels on: one cuBLAS grouped GEMM per pass (forward,
// input gradient, weight gradients: kernels/grouped_gemm) through an autograd Function; elsewhere
// a loop of F::linear over the slices. The forward pass at large expert widths runs one cuBLAS GEMM
// per expert into the slices instead (see GroupedGemmMode).
#pragma once
#include <torch/types.h>

#include <optional>
#include <vector>

namespace fathom::ops {

// How the CUDA path runs the forward products: automatic picks one GEMM per expert when an expert's
// weight has at least 2^21 elements (H200, session 10: at llama-1b's widths, 64 experts of
// 2,048 × 1,408, the grouped call took 3.58 ms against 2.81 ms for 64 separate GEMMs; at gpt2-124m's
// 768 × 576 the grouped call wins), the grouped GEMM otherwise. FATHOM_GROUPED_GEMM=grouped|loop
// (read once) or set_grouped_gemm_mode forces one; nullopt returns to the environment's choice.
// The backward's products stay grouped (faster there at both widths).
enum class GroupedGemmMode { automatic, grouped, loop };
void set_grouped_gemm_mode(std::optional<GroupedGemmMode> mode);

// x (P, in) with P = Σ rows; weights: one (out, in) per group, all of x's dtype and device; every
// rows[g] ≥ 1. Returns (P, out).
torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                             const std::vector<int64_t>& rows);
// Whether grouped_linear takes the grouped GEMM for these operands (CUDA, kernels on, cuBLAS with
// the entry point, dense weights of x's dtype).
bool grouped_linear_fusable(const torch::Tensor& x, const std::vector<torch::Tensor>& weights);
// The weights' half of that test, for an input of `in` columns of `dtype` on `device` (to decide
// before the input exists): one shape, dense, 16-byte aligned rows and addresses.
bool grouped_weights_fusable(const std::vector<torch::Tensor>& weights, int64_t in, torch::ScalarType dtype,
                             torch::Device device);

namespace composite {
torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                             const std::vector<int64_t>& rows);
}

namespace detail {
// The autograd Function the CUDA path runs, with its products done by a loop of matmuls into
// slices of the output on the CPU: what the tests use to check its bookkeeping (gradient layout,
// which weights get one) where there is no GPU.
torch::Tensor grouped_linear_function(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                                      const std::vector<int64_t>& rows);
}  // namespace detail

}  // namespace fathom::ops
