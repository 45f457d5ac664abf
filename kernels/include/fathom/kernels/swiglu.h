// SwiGLU's elementwise part (Shazeer 2020): out = silu(g) · u, silu(g) = g · σ(g), computed in
// fp32 and rounded once. Backward: du = dout · silu(g), dg = dout · u · σ(g) · (1 + g · (1 − σ(g))).
// g, u, out, dout, dg, du: n contiguous elements of one type.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// Pointers 16-byte aligned (any n).
void swiglu_forward(DType dt, const void* g, const void* u, void* out, int64_t n, cudaStream_t stream);
void swiglu_backward(DType dt, const void* dout, const void* g, const void* u, void* dg, void* du, int64_t n,
                     cudaStream_t stream);

namespace ref {
void swiglu_forward(const float* g, const float* u, float* out, int64_t n);
void swiglu_backward(const float* dout, const float* g, const float* u, float* dg, float* du, int64_t n);
}  // namespace ref

}  // namespace fathom::kernels
