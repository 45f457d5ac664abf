// Mixture-of-experts token permutation (dispatch) and un-permutation (combine), as gathers only:
// no atomics, so every result is deterministic. N tokens, k experts each, P ≤ N·k kept
// assignments. A routing gives two maps:
//   src (P):     the token of permuted row j (rows grouped by expert, token order within one);
//   pos (N, k):  the permuted row of assignment (t, i), −1 when the capacity limit dropped it.
// Dispatch:  xp[j] = x[src[j]]                      (gather_rows, scale null)
// Combine:   out[t] = Σ_i w[t,i] · y[pos[t,i]]      (combine_rows; fp32 sum, rounded once)
// Their backward passes are the same two gathers with the maps swapped:
//   dx[t] = Σ_i dxp[pos[t,i]]                      (combine_rows, w null)
//   dy[j] = w[assign j] · dout[src[j]]             (gather_rows, scale = w at each row's assignment)
//   dw[t,i] = ⟨dout[t], y[pos[t,i]]⟩               (combine_weight_grad; 0 when dropped)
// Rows of `cols` contiguous elements; w, scale and dw fp32; maps int64.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// out[j, :] = scale[j] · x[src[j], :] for j < rows (scale null: a plain copy).
void moe_gather_rows(DType dt, const void* x, const int64_t* src, const float* scale, void* out, int64_t rows,
                     int64_t cols, cudaStream_t stream);
// out[t, :] = Σ_{i<k, pos[t,i] ≥ 0} w[t,i] · y[pos[t,i], :] for t < tokens (w null: weights 1).
void moe_combine_rows(DType dt, const void* y, const int64_t* pos, const float* w, void* out, int64_t tokens, int64_t k,
                      int64_t cols, cudaStream_t stream);
// dw[t,i] = Σ_c dout[t,c] · y[pos[t,i],c] (fp32), 0 where pos[t,i] < 0.
void moe_combine_weight_grad(DType dt, const void* dout, const void* y, const int64_t* pos, float* dw, int64_t tokens,
                             int64_t k, int64_t cols, cudaStream_t stream);

namespace ref {
void moe_gather_rows(const float* x, const int64_t* src, const float* scale, float* out, int64_t rows, int64_t cols);
void moe_combine_rows(const float* y, const int64_t* pos, const float* w, float* out, int64_t tokens, int64_t k,
                      int64_t cols);
void moe_combine_weight_grad(const float* dout, const float* y, const int64_t* pos, float* dw, int64_t tokens, int64_t k,
                             int64_t cols);
}  // namespace ref

}  // namespace fathom::kernels
