// Naive CPU reference of the FP8 quantisation (see fathom/kernels/fp8_cast.h). The rounding is done
// from the formats' definitions (no hardware conversion): e4m3fn has 3 mantissa bits, exponent bias
// 7, subnormals down to 2^-9 and a largest finite value of 448; e5m2 has 2 mantissa bits, bias 15,
// subnormals down to 2^-16 and 57344.
#include <algorithm>
#include <cmath>
#include <limits>

#include "fathom/kernels/fp8_cast.h"

namespace fathom::kernels::ref {

float round_fp8(float v, Fp8Format fmt) {
  if (std::isnan(v)) return v;
  const int mant = fmt == Fp8Format::e4m3 ? 3 : 2;
  const int min_exp = fmt == Fp8Format::e4m3 ? -6 : -14;  // exponent of the smallest normal
  const double top = fp8_max(fmt);
  const double a = std::fabs(static_cast<double>(v));
  if (a >= top) return std::copysign(static_cast<float>(top), v);
  // The spacing of representable values around a: 2^(e − mant), e = max(floor(log2 a), min_exp).
  int e = min_exp;
  if (a > 0) {
    int ex = 0;
    std::frexp(a, &ex);  // a = m · 2^ex, m in [0.5, 1)
    e = std::max(ex - 1, min_exp);
  }
  const double step = std::ldexp(1.0, e - mant);
  const double r = std::nearbyint(a / step) * step;  // the default rounding mode: ties to even
  return std::copysign(static_cast<float>(std::fmin(r, top)), v);
}

float fp8_quantize(const float* x, int64_t n, Fp8Format fmt, float* q) {
  float amax = 0.f;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan = nan || std::isnan(x[i]);
    amax = std::fmax(amax, std::fabs(x[i]));
  }
  if (nan) amax = std::numeric_limits<float>::quiet_NaN();
  const float a = std::isnan(amax) ? amax : std::fmax(amax, 1e-12f);
  const float F = fp8_max(fmt);
  const float scale = (1.f / a) * F;
  for (int64_t i = 0; i < n; ++i) {
    float s = x[i] * scale;
    if (!std::isnan(s)) s = std::fmin(std::fmax(s, -F), F);
    q[i] = round_fp8(s, fmt);
  }
  return 1.f / scale;
}

}  // namespace fathom::kernels::ref
