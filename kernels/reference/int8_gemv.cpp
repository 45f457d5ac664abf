// Naive CPU reference of the weight-only int8 product (see fathom/kernels/int8_gemv.h), in double.
#include "fathom/kernels/int8_gemv.h"

namespace fathom::kernels::ref {

void int8_gemv(const float* x, const int8_t* q, const float* scale, float* y, int64_t B, int64_t N, int64_t K) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(x[b * K + k]) * q[n * K + k];
      y[b * N + n] = static_cast<float>(acc * scale[n]);
    }
}

}  // namespace fathom::kernels::ref
