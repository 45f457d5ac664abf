// Naive CPU reference of SwiGLU's elementwise part (see fathom/kernels/swiglu.h), in double.
#include <cmath>

#include "fathom/kernels/swiglu.h"

namespace fathom::kernels::ref {

void swiglu_forward(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = g[i], s = 1.0 / (1.0 + std::exp(-x));
    out[i] = static_cast<float>(x * s * u[i]);
  }
}

void swiglu_backward(const float* dout, const float* g, const float* u, float* dg, float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = g[i], s = 1.0 / (1.0 + std::exp(-x));
    du[i] = static_cast<float>(static_cast<double>(dout[i]) * x * s);
    dg[i] = static_cast<float>(static_cast<double>(dout[i]) * u[i] * s * (1.0 + x * (1.0 - s)));
  }
}

}  // namespace fathom::kernels::ref
