// The switch between the fused CUDA kernels (kernels/) and the LibTorch composites they replace.
// Every op in engine/ops takes the fused path only for CUDA tensors it supports, in a build with
// kernels, while this switch is on; the composite otherwise (CPU always: CI's numbers stay as they are).
#pragma once
#include <optional>

namespace fathom::ops {

// True when this build has the CUDA kernels (FATHOM_HAVE_CUDA).
bool kernels_built();
// On unless the environment sets FATHOM_KERNELS=0 (read once), or set_kernels_enabled says so.
bool kernels_enabled();
// Forces the switch for this process (A/B benchmarks, tests); std::nullopt: back to the environment.
void set_kernels_enabled(std::optional<bool> on);

// CUDA training: LibTorch's products through cuBLASLt rather than cuBLAS (+0.65% tokens/s on llama-1b,
// H200, tools/gpu/check_kernels.sh AB_VARS="TORCH_BLAS_PREFER_CUBLASLT=1"). Leaves LibTorch's choice
// where the environment sets TORCH_BLAS_PREFER_CUBLASLT, and in builds without CUDA kernels or with a
// LibTorch before 2.3. Returns whether it changed the preference. (The trainer calls it only with the
// kernels on: FATHOM_KERNELS=0 keeps every LibTorch default.)
bool prefer_cublaslt();

}  // namespace fathom::ops
