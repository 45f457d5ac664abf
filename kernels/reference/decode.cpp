// Naive CPU references of the decode-step kernels (see fathom/kernels/decode.h), fp32 data, double
// accumulation.
#include <algorithm>
#include <cmath>
#include <vector>

#include "fathom/kernels/decode.h"

namespace fathom::kernels::ref {

void gemv(const GemvArgs& a) {
  const auto* x = static_cast<const float*>(a.x);
  auto* y = static_cast<float*>(a.y);
  auto dot = [&](const GemvSegment& s, int64_t b, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < a.K; ++k) {
      const double w = a.int8 ? static_cast<const int8_t*>(s.w)[n * a.K + k] : static_cast<const float*>(s.w)[n * a.K + k];
      acc += static_cast<double>(x[b * a.K + k]) * w;
    }
    if (a.int8) acc *= static_cast<const float*>(s.scale)[n];
    if (s.bias) acc += static_cast<const float*>(s.bias)[n];
    return acc;
  };
  if (a.swiglu) {
    const int64_t N = a.seg[0].rows;
    for (int64_t b = 0; b < a.B; ++b)
      for (int64_t n = 0; n < N; ++n) {
        const double g = dot(a.seg[0], b, n), u = dot(a.seg[1], b, n);
        y[b * N + n] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
      }
    return;
  }
  int64_t total = 0;
  for (int i = 0; i < a.segments; ++i) total += a.seg[i].rows;
  for (int64_t b = 0; b < a.B; ++b) {
    int64_t col = 0;
    for (int i = 0; i < a.segments; ++i)
      for (int64_t n = 0; n < a.seg[i].rows; ++n) {
        const double r = a.residual ? static_cast<const float*>(a.residual)[b * total + col] : 0.0;
        y[b * total + col] = static_cast<float>(r + dot(a.seg[i], b, n));
        ++col;
      }
  }
}

void decode_rope_append(const DecodeRopeAppendArgs& a) {
  const int64_t half = a.hd / 2;
  for (int64_t b = 0; b < a.B; ++b) {
    float* row = static_cast<float*>(a.qkv) + b * a.row_stride;
    const int64_t pos = a.positions[b];
    const float* c = a.cos + pos * a.hd;
    const float* s = a.sin + pos * a.hd;
    for (int64_t h = 0; h < a.Hq + 2 * a.Hkv; ++h) {
      float* x = row + h * a.hd;
      std::vector<float> out(x, x + a.hd);
      if (h < a.Hq + a.Hkv)
        for (int64_t i = 0; i < half; ++i) {
          out[i] = x[i] * c[i] - x[i + half] * s[i];
          out[i + half] = x[i + half] * c[i + half] + x[i] * s[i + half];
        }
      float* dst = x;
      if (h >= a.Hq + a.Hkv) dst = static_cast<float*>(a.cache.v) + b * a.cache.sb + (h - a.Hq - a.Hkv) * a.cache.sh + pos * a.cache.st;
      else if (h >= a.Hq) dst = static_cast<float*>(a.cache.k) + b * a.cache.sb + (h - a.Hq) * a.cache.sh + pos * a.cache.st;
      for (int64_t i = 0; i < a.hd; ++i) dst[i] = out[i];
    }
  }
}

void decode_attention(const DecodeAttentionArgs& a) {
  const int64_t rep = a.Hq / a.Hkv;
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t n = a.positions[b] + 1;
    for (int64_t h = 0; h < a.Hq; ++h) {
      const float* q = static_cast<const float*>(a.q) + b * a.q_stride + h * a.hd;
      const float* kb = static_cast<const float*>(a.cache.k) + b * a.cache.sb + (h / rep) * a.cache.sh;
      const float* vb = static_cast<const float*>(a.cache.v) + b * a.cache.sb + (h / rep) * a.cache.sh;
      std::vector<double> s(n);
      double mx = -INFINITY;
      for (int64_t t = 0; t < n; ++t) {
        double d = 0.0;
        for (int64_t i = 0; i < a.hd; ++i) d += static_cast<double>(q[i]) * kb[t * a.cache.st + i];
        s[t] = d * a.scale;
        mx = std::max(mx, s[t]);
      }
      double sum = 0.0;
      for (auto& v : s) sum += (v = std::exp(v - mx));
      float* y = static_cast<float*>(a.y) + b * a.Hq * a.hd + h * a.hd;
      for (int64_t i = 0; i < a.hd; ++i) {
        double acc = 0.0;
        for (int64_t t = 0; t < n; ++t) acc += s[t] * vb[t * a.cache.st + i];
        y[i] = static_cast<float>(acc / sum);
      }
    }
  }
}

}  // namespace fathom::kernels::ref
