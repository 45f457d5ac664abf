// Rotary position embedding (Su et al. 2021) in the "rotate half" layout the engine's model uses
// (engine/model/transformer.h): with half = hd / 2 and x1 = x[:half], x2 = x[half:],
//   y1 = x1 · cos1 − x2 · sin1,   y2 = x2 · cos2 + x1 · sin2   (cos/sin of the row's position).
// The backward is the transpose of that rotation:
//   dx1 = dy1 · cos1 + dy2 · sin2, dx2 = dy2 · cos2 − dy1 · sin1.
// x is (B, H, T, hd) with any strides for B, H, T (the model's q/k are transposed views of
// (B, T, H, hd)) and a contiguous last dimension; y may have other strides of the same kind.
// cos/sin: fp32 tables (T_max, hd), row-major. The position of (b, t) is positions[b·T + t]
// (int64, (B, T) contiguous) when given, else offset + t.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

struct RopeArgs {
  const void* x = nullptr;
  void* y = nullptr;
  int64_t B = 0, H = 0, T = 0, hd = 0;
  int64_t x_sb = 0, x_sh = 0, x_st = 0;  // strides of x in elements
  int64_t y_sb = 0, y_sh = 0, y_st = 0;  // strides of y in elements
  const float* cos = nullptr;
  const float* sin = nullptr;
  const int64_t* positions = nullptr;
  int64_t offset = 0;
  bool backward = false;  // apply the transposed rotation (gradient of x from gradient of y)
};

// hd even; x and y must not overlap.
void rope_apply(DType dt, const RopeArgs& a, cudaStream_t stream);

namespace ref {
// Same arguments, with fp32 x and y.
void rope_apply(const RopeArgs& a);
}  // namespace ref

}  // namespace fathom::kernels
