// Naive CPU reference of the rotary embedding apply (see fathom/kernels/rope.h): one row at a
// time, both halves written out, fp32 in and out, double arithmetic.
#include "fathom/kernels/rope.h"

namespace fathom::kernels::ref {

void rope_apply(const RopeArgs& a) {
  const auto* x = static_cast<const float*>(a.x);
  auto* y = static_cast<float*>(a.y);
  const int64_t half = a.hd / 2;
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t h = 0; h < a.H; ++h)
      for (int64_t t = 0; t < a.T; ++t) {
        const int64_t pos = a.positions ? a.positions[b * a.T + t] : a.offset + t;
        const float* c = a.cos + pos * a.hd;
        const float* s = a.sin + pos * a.hd;
        const float* xr = x + b * a.x_sb + h * a.x_sh + t * a.x_st;
        float* yr = y + b * a.y_sb + h * a.y_sh + t * a.y_st;
        for (int64_t i = 0; i < half; ++i) {
          const double x1 = xr[i], x2 = xr[i + half];
          if (!a.backward) {
            yr[i] = static_cast<float>(x1 * c[i] - x2 * s[i]);
            yr[i + half] = static_cast<float>(x2 * c[i + half] + x1 * s[i + half]);
          } else {
            yr[i] = static_cast<float>(x1 * c[i] + x2 * s[i + half]);
            yr[i + half] = static_cast<float>(x2 * c[i + half] - x1 * s[i]);
          }
        }
      }
}

}  // namespace fathom::kernels::ref
