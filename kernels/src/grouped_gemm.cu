// One cublasGemmGroupedBatchedEx call for a list of row-major products (see
// fathom/kernels/grouped_gemm.h). cuBLAS is column-major: a row-major C (m × n) is a column-major
// Cᵀ (n × m), and Cᵀ = op(B)ᵀ · op(A)ᵀ, so each problem goes to cuBLAS with the operands swapped
// (its "A" is our B, its "B" our A), m and n swapped, and the same transposition flags. One group
// per problem (every problem may have its own shape).
#include <cublas_api.h>
#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fathom/kernels/grouped_gemm.h"

namespace fathom::kernels {
namespace {

using GroupedFn = cublasStatus_t (*)(cublasHandle_t, const cublasOperation_t[], const cublasOperation_t[], const int[],
                                     const int[], const int[], const void*, const void* const[], cudaDataType_t,
                                     const int[], const void* const[], cudaDataType_t, const int[], const void*,
                                     void* const[], cudaDataType_t, const int[], int, const int[], cublasComputeType_t);
struct Entry {
  GroupedFn grouped = nullptr;
};

// Found in the libraries already loaded (LibTorch's libcublas), never a second copy.
const Entry& entry() {
  static Entry e;
  static std::once_flag once;
  std::call_once(once, [] {
    e.grouped = reinterpret_cast<GroupedFn>(dlsym(RTLD_DEFAULT, "cublasGemmGroupedBatchedEx"));
  });
  return e;
}

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

int as_int(int64_t v, const char* what) {
  if (v < 1 || v > 0x7fffffff) throw std::runtime_error(std::string("grouped_gemm: ") + what + " out of range");
  return static_cast<int>(v);
}

}  // namespace

bool grouped_gemm_available() { return entry().grouped != nullptr; }

void grouped_gemm(DType dt, cublasHandle_t handle, const GemmShape* shapes, int count, const void* const* a,
                  const void* const* b, void* const* c, float beta, cudaStream_t stream) {
  if (count <= 0) return;
  if (!grouped_gemm_available())
    throw std::runtime_error("grouped_gemm: this cuBLAS has no cublasGemmGroupedBatchedEx (needs cuBLAS 12.5 or later)");
  const size_t n = static_cast<size_t>(count);
  std::vector<cublasOperation_t> op_b(n), op_a(n);
  std::vector<int> m(n), nn(n), k(n), ld_b(n), ld_a(n), ld_c(n), group_size(n, 1);
  std::vector<float> alpha(n, 1.f), betas(n, beta);
  for (size_t i = 0; i < n; ++i) {
    const GemmShape& s = shapes[i];
    // cuBLAS's C (n × m, column-major) = op(our B)ᵀ-as-stored · op(our A)ᵀ-as-stored.
    m[i] = as_int(s.n, "n");
    nn[i] = as_int(s.m, "m");
    k[i] = as_int(s.k, "k");
    op_b[i] = s.b_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    ld_b[i] = as_int(s.b_t ? s.k : s.n, "ldb");
    op_a[i] = s.a_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    ld_a[i] = as_int(s.a_t ? s.m : s.k, "lda");
    ld_c[i] = as_int(s.n, "ldc");
  }
  const cudaDataType_t t = cuda_type(dt);
  (void)stream;  // the handle is already bound to it (see the header); setting it again would drop the workspace
  const cublasStatus_t st = entry().grouped(handle, op_b.data(), op_a.data(), m.data(), nn.data(), k.data(), alpha.data(), b, t,
                                            ld_b.data(), a, t, ld_a.data(), betas.data(), c, t, ld_c.data(), count,
                                            group_size.data(), CUBLAS_COMPUTE_32F);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("grouped_gemm: cublasGemmGroupedBatchedEx failed with status " + std::to_string(static_cast<int>(st)));
}

}  // namespace fathom::kernels
