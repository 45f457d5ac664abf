// Weight-only int8 linear: the decode gemv (engine/ops/decode.h) on CUDA for decode-sized inputs
// (see int8_linear.h).
#include "engine/ops/int8_linear.h"

#include <torch/torch.h>

#include "engine/ops/decode.h"

namespace fathom::ops {

namespace composite {
torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  auto w = q.to(x.scalar_type()) * scale.to(x.scalar_type()).unsqueeze(1);
  return torch::nn::functional::linear(x, w);
}
}  // namespace composite

bool int8_linear_fusable(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  return q.defined() && q.scalar_type() == torch::kInt8 && decode_linear_fusable(x, {DecodeWeight{q, scale, {}}});
}

torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  if (int8_linear_fusable(x, q, scale)) return decode_linear(x, {DecodeWeight{q, scale, {}}});
  return composite::int8_linear(x, q, scale);
}

}  // namespace fathom::ops
