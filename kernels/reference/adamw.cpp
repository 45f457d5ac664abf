// Naive CPU reference of the fused AdamW update (see fathom/kernels/adamw.h), in fp32 with the
// kernel's operation order.
#include <cmath>

#include "fathom/kernels/adamw.h"

namespace fathom::kernels::ref {

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h) {
  for (int k = 0; k < count; ++k) {
    const AdamWTensor& t = tensors[k];
    for (int64_t i = 0; i < t.n; ++i) {
      float p = t.p[i], m = t.m[i], v = t.v[i];
      const float g = t.g[i];
      if (t.decay) p *= 1.f - h.lr * h.weight_decay;
      m = h.beta1 * m + (1.f - h.beta1) * g;
      v = h.beta2 * v + (1.f - h.beta2) * g * g;
      const float denom = std::sqrt(v) / h.bias_correction2_sqrt + h.eps;
      p -= h.step_size * m / denom;
      t.p[i] = p;
      t.m[i] = m;
      t.v[i] = v;
    }
  }
}

}  // namespace fathom::kernels::ref
