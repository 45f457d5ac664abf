// Fused residual add + RMSNorm (Zhang & Sennrich 2019), forward and backward, on row-major
// (rows, C) tensors. Forward: h = x + r (rounded to the element type, as the unfused add is),
// y = h · rstd · w with rstd = 1 / sqrt(mean(h²) + eps) in fp32. Backward, with n = h · rstd:
//   dn = dy · w,  dh = rstd · (dn − n · mean(dn · n)) + dh_in,  dw = Σ_rows dy · n (fp32).
// x, r, y, h, w, dy, dh, dh_in, dw share one element type; rstd is fp32 (rows).
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// True when the CUDA launchers take this width: C a multiple of 16 bytes' worth of elements and
// at most 1024 such vectors (C ≤ 8192 for 16-bit types, 4096 for fp32).
bool rmsnorm_supported(DType dt, int64_t C);

// r may be null (plain RMSNorm; h_out is then not written and may be null); rstd may be null.
// All pointers 16-byte aligned, rows contiguous.
void add_rmsnorm_forward(DType dt, const void* x, const void* r, const void* w, void* y, void* h_out, float* rstd,
                         int64_t rows, int64_t C, float eps, cudaStream_t stream);

// fp32 scratch the backward needs for its deterministic dw reduction (one partial row per block).
size_t rmsnorm_backward_workspace_bytes(DType dt, int64_t rows, int64_t C);

// h: the normalised input (x + r) of the forward; rstd from the forward; dh_in may be null (no
// gradient reaching h directly). dh receives the gradient of x (and of r: the same).
void rmsnorm_backward(DType dt, const void* dy, const void* h, const void* w, const float* rstd, const void* dh_in, void* dh,
                      void* dw, float* workspace, int64_t rows, int64_t C, cudaStream_t stream);

namespace ref {
// Naive fp32 references (double accumulation). r, h_out, dh_in may be null as above.
void add_rmsnorm_forward(const float* x, const float* r, const float* w, float* y, float* h_out, float* rstd, int64_t rows,
                         int64_t C, float eps);
void rmsnorm_backward(const float* dy, const float* h, const float* w, const float* rstd, const float* dh_in, float* dh,
                      float* dw, int64_t rows, int64_t C);
}  // namespace ref

}  // namespace fathom::kernels
