// Grouped GEMM for mixture-of-experts layers: the products of every expert in one cuBLAS call
// (cublasGemmGroupedBatchedEx, cuBLAS ≥ 12.5), each problem with its own shape and its own
// matrices at any address (the experts' separate weights; their rows of one dispatch buffer).
// Problem i, row-major and dense (leading dimensions are row lengths):
//   C_i (m × n) = op(A_i) · op(B_i) + beta · C_i,  op(A) = Aᵀ when a_t (A stored k × m) else A (m × k),
//                                                   op(B) = Bᵀ when b_t (B stored n × k) else B (k × n).
// Accumulation in fp32 (CUBLAS_COMPUTE_32F). The pointer arrays a, b, c are in device memory;
// the shapes on the host. cuBLAS is looked up in the process at run time (LibTorch has loaded it),
// so nothing links a second copy; grouped_gemm_available() says whether it has the entry point.
#pragma once
#include "fathom/kernels/common.h"

// The same declaration as cublas_api.h's.
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace fathom::kernels {

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;  // each ≥ 1
  bool a_t = false, b_t = false;
};

bool grouped_gemm_available();
// `handle` must already be bound to `stream` with its workspace set (LibTorch's
// getCurrentCUDABlasHandle() does both; cublasSetStream here would reset the workspace to cuBLAS's
// own pool). 16-bit operands: every pointer 16-byte aligned, every row a multiple of 16 bytes.
// Throws std::runtime_error when cuBLAS lacks the entry point or fails.
void grouped_gemm(DType dt, cublasHandle_t handle, const GemmShape* shapes, int count, const void* const* a,
                  const void* const* b, void* const* c, float beta, cudaStream_t stream);

}  // namespace fathom::kernels
