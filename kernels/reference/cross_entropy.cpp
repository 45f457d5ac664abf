// Naive CPU reference of cross-entropy over whole rows (see fathom/kernels/cross_entropy.h):
// log-sum-exp with the max subtracted, in double; gradient softmax − one-hot, times scale.
#include <algorithm>
#include <cmath>

#include "fathom/kernels/cross_entropy.h"

namespace fathom::kernels::ref {

void cross_entropy(const float* logits, int64_t rows, int64_t V, const int64_t* targets, int64_t ignore_index, float scale,
                   float* lse, float* loss, float* dlogits) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* z = logits + i * V;
    double m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, static_cast<double>(z[j]));
    double s = 0.0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[j] - m);
    const double l = m + std::log(s);
    const bool ignored = targets[i] == ignore_index;
    lse[i] = static_cast<float>(l);
    loss[i] = ignored ? 0.f : static_cast<float>(l - z[targets[i]]);
    for (int64_t j = 0; j < V; ++j) {
      const double p = std::exp(z[j] - l) - (j == targets[i] ? 1.0 : 0.0);
      dlogits[i * V + j] = ignored ? 0.f : static_cast<float>(p * scale);
    }
  }
}

}  // namespace fathom::kernels::ref
