// Naive CPU reference of the MoE dispatch and combine gathers (see fathom/kernels/moe.h), in double.
#include "fathom/kernels/moe.h"

namespace fathom::kernels::ref {

void moe_gather_rows(const float* x, const int64_t* src, const float* scale, float* out, int64_t rows, int64_t cols) {
  for (int64_t j = 0; j < rows; ++j) {
    const double s = scale ? scale[j] : 1.0;
    for (int64_t c = 0; c < cols; ++c) out[j * cols + c] = static_cast<float>(s * x[src[j] * cols + c]);
  }
}

void moe_combine_rows(const float* y, const int64_t* pos, const float* w, float* out, int64_t tokens, int64_t k,
                      int64_t cols) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < cols; ++c) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) {
        const int64_t p = pos[t * k + i];
        if (p >= 0) acc += (w ? w[t * k + i] : 1.0) * y[p * cols + c];
      }
      out[t * cols + c] = static_cast<float>(acc);
    }
}

void moe_combine_weight_grad(const float* dout, const float* y, const int64_t* pos, float* dw, int64_t tokens, int64_t k,
                             int64_t cols) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < k; ++i) {
      const int64_t p = pos[t * k + i];
      double acc = 0;
      if (p >= 0)
        for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(dout[t * cols + c]) * y[p * cols + c];
      dw[t * k + i] = static_cast<float>(acc);
    }
}

}  // namespace fathom::kernels::ref
