// Weight-only int8 matrix-vector products for decoding: y (B, N) = x (B, K) · Wᵀ with W = q · scale,
// q (N, K) int8 row-major and one scale per output channel (engine/model/linear.h's int8 base).
// Memory bound on the weight: one byte per weight is read once, never dequantised into memory.
// x, scale and y share one element type; accumulation in fp32, the scale applied once per output.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// 1 ≤ B ≤ 8 rows, K a multiple of 16; x, q 16-byte aligned.
bool int8_gemv_supported(DType dt, int64_t B, int64_t K);
void int8_gemv(DType dt, const void* x, const int8_t* q, const void* scale, void* y, int64_t B, int64_t N, int64_t K,
               cudaStream_t stream);

namespace ref {
void int8_gemv(const float* x, const int8_t* q, const float* scale, float* y, int64_t B, int64_t N, int64_t K);
}  // namespace ref

}  // namespace fathom::kernels
