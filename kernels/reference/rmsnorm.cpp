// Naive CPU reference of the fused residual add + RMSNorm (see fathom/kernels/rmsnorm.h): the
// maths written out once per row, in double, for the kernel tests to compare against.
#include <cmath>
#include <vector>

#include "fathom/kernels/rmsnorm.h"

namespace fathom::kernels::ref {

void add_rmsnorm_forward(const float* x, const float* r, const float* w, float* y, float* h_out, float* rstd, int64_t rows,
                         int64_t C, float eps) {
  std::vector<double> h(static_cast<size_t>(C));
  for (int64_t i = 0; i < rows; ++i) {
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      h[c] = static_cast<double>(x[i * C + c]) + (r ? static_cast<double>(r[i * C + c]) : 0.0);
      ss += h[c] * h[c];
    }
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(C) + static_cast<double>(eps));
    if (rstd) rstd[i] = static_cast<float>(rs);
    for (int64_t c = 0; c < C; ++c) {
      if (r && h_out) h_out[i * C + c] = static_cast<float>(h[c]);
      y[i * C + c] = static_cast<float>(h[c] * rs * static_cast<double>(w[c]));
    }
  }
}

void rmsnorm_backward(const float* dy, const float* h, const float* w, const float* rstd, const float* dh_in, float* dh,
                      float* dw, int64_t rows, int64_t C) {
  std::vector<double> dwa(static_cast<size_t>(C), 0.0);
  for (int64_t i = 0; i < rows; ++i) {
    const double rs = rstd[i];
    double dot = 0.0;  // Σ dn · n
    for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(dy[i * C + c]) * w[c] * (h[i * C + c] * rs);
    const double mean = dot / static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) {
      const double n = h[i * C + c] * rs;
      const double dn = static_cast<double>(dy[i * C + c]) * w[c];
      double g = rs * (dn - n * mean);
      if (dh_in) g += dh_in[i * C + c];
      dh[i * C + c] = static_cast<float>(g);
      dwa[c] += static_cast<double>(dy[i * C + c]) * n;
    }
  }
  for (int64_t c = 0; c < C; ++c) dw[c] = static_cast<float>(dwa[c]);
}

}  // namespace fathom::kernels::ref
