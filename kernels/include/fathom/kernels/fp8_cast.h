// Per-tensor FP8 quantisation for FP8 training (engine/model/fp8.h), "current scaling":
//   amax  = max |x|                                    (fp8_absmax)
//   scale = (1 / max(amax, 1e-12)) · F,  inv = 1 / scale
//   q     = round-to-nearest-even(clamp(x · scale, −F, F)) in e4m3 (F = 448) or e5m2 (F = 57344)
// (fp8_quantize), the arithmetic of the LibTorch composite it replaces, in the same order, so the
// two agree bit for bit. A NaN anywhere makes amax, scale and every q NaN, as in the composite.
// Two passes over x (the maximum must be known before the first value is scaled) instead of the
// composite's six, none of them through an fp32 copy. x: n contiguous elements, 16-byte aligned.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

enum class Fp8Format { e4m3, e5m2 };

inline float fp8_max(Fp8Format f) { return f == Fp8Format::e4m3 ? 448.f : 57344.f; }

// *amax (fp32, device) = max |x| over n elements (0 when n is 0).
void fp8_absmax(DType dt, const void* x, int64_t n, float* amax, cudaStream_t stream);
// q (n bytes, device, 8-byte aligned) and *inv from x and the *amax fp8_absmax left.
void fp8_quantize(DType dt, const void* x, int64_t n, const float* amax, Fp8Format fmt, void* q, float* inv,
                  cudaStream_t stream);

namespace ref {
// v rounded to the nearest e4m3fn / e5m2 value (ties to even), saturating at ±max; NaN stays NaN.
float round_fp8(float v, Fp8Format fmt);
// The whole recipe above on the CPU: q as the values the fp8 bytes stand for; returns inv.
float fp8_quantize(const float* x, int64_t n, Fp8Format fmt, float* q);
}  // namespace ref

}  // namespace fathom::kernels
