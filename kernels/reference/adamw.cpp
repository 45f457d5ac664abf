// Naive CPU reference of the fused AdamW update (see fathom/kernels/adamw.h), in fp32 with the
// kernel's operation order; mixed-precision tensors read bf16 gradients and write a bf16 copy.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "fathom/kernels/adamw.h"

namespace fathom::kernels::ref {
namespace {

float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, from the definition: keep the top 16 bits, adding half an ulp of bf16 plus
// the kept part's lowest bit (ties go to even). NaN stays a quiet NaN.
uint16_t f32_to_bf16(float f) {
  if (std::isnan(f)) return 0x7fc0;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h) {
  // (grad_scale_dev is a host pointer here.)
  const float gs = h.grad_scale_dev ? *h.grad_scale_dev : h.grad_scale;
  if (h.grad_scale_dev && !std::isfinite(gs)) return;
  for (int k = 0; k < count; ++k) {
    const AdamWTensor& t = tensors[k];
    for (int64_t i = 0; i < t.n; ++i) {
      float p = t.p[i], m = t.m[i], v = t.v[i];
      const float g = (t.g_bf16 ? bf16_to_f32(t.g_bf16[i]) : t.g[i]) * gs;
      if (t.decay) p *= 1.f - h.lr * h.weight_decay;
      m = h.beta1 * m + (1.f - h.beta1) * g;
      v = h.beta2 * v + (1.f - h.beta2) * g * g;
      const float denom = std::sqrt(v) / h.bias_correction2_sqrt + h.eps;
      p -= h.step_size * m / denom;
      t.p[i] = p;
      t.m[i] = m;
      t.v[i] = v;
      if (t.model_bf16) t.model_bf16[i] = f32_to_bf16(p);
    }
  }
}

void grad_norm_clip(const NormTensor* tensors, int count, float max_norm, const float* loss, float* out) {
  double sum = 0.0;
  for (int k = 0; k < count; ++k) {
    const NormTensor& t = tensors[k];
    for (int64_t i = 0; i < t.n; ++i) {
      const double v = t.bf16 ? bf16_to_f32(static_cast<const uint16_t*>(t.p)[i]) : static_cast<const float*>(t.p)[i];
      sum += v * v;
    }
  }
  const double norm = std::sqrt(sum);
  const bool finite = std::isfinite(norm) && (loss == nullptr || std::isfinite(*loss));
  const double coef = max_norm > 0.f ? std::min(1.0, static_cast<double>(max_norm) / (norm + 1e-6)) : 1.0;
  out[0] = static_cast<float>(norm);
  out[1] = finite ? static_cast<float>(coef) : std::nanf("");
}

}  // namespace fathom::kernels::ref
