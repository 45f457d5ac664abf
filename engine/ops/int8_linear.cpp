// Weight-only int8 linear: kernels/int8_gemv on CUDA for decode-sized inputs (see int8_linear.h).
#include "engine/ops/int8_linear.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/int8_gemv.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
  auto w = q.to(x.scalar_type()) * scale.to(x.scalar_type()).unsqueeze(1);
  return torch::nn::functional::linear(x, w);
}
}  // namespace composite

bool int8_linear_fusable(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || !x.is_cuda() || x.dim() < 1 || q.dim() != 2 || q.scalar_type() != torch::kInt8) return false;
  if (x.requires_grad() && torch::GradMode::is_enabled()) return false;  // decode only: no backward here
  const auto dt = detail::kernel_dtype(x);
  const int64_t K = x.size(-1);
  if (!dt || q.size(1) != K || scale.dim() != 1 || scale.size(0) != q.size(0) || q.device() != x.device() ||
      scale.device() != x.device())
    return false;
  return kernels::int8_gemv_supported(*dt, x.numel() / std::max<int64_t>(K, 1), K);
#else
  return false;
#endif
}

torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& scale) {
#ifdef FATHOM_HAVE_CUDA
  if (int8_linear_fusable(x, q, scale)) {
    c10::cuda::CUDAGuard guard(x.device());
    const auto dt = *detail::kernel_dtype(x);
    const int64_t K = x.size(-1), N = q.size(0), B = x.numel() / K;
    auto xc = detail::dense(x), qc = detail::dense(q);
    auto sc = scale.scalar_type() == x.scalar_type() ? scale.contiguous() : scale.to(x.scalar_type()).contiguous();
    auto sizes = x.sizes().vec();
    sizes.back() = N;
    auto y = torch::empty(sizes, x.options());
    kernels::int8_gemv(dt, xc.data_ptr(), qc.data_ptr<int8_t>(), sc.data_ptr(), y.data_ptr(), B, N, K, detail::stream());
    return y;
  }
#endif
  return composite::int8_linear(x, q, scale);
}

}  // namespace fathom::ops
