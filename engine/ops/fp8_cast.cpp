// FP8 quantisation: kernels/fp8_cast on CUDA, the composite elsewhere (see fp8_cast.h).
#include "engine/ops/fp8_cast.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define FATHOM_FP8_TYPES 1
#else
#define FATHOM_FP8_TYPES 0
#endif

#if defined(FATHOM_HAVE_CUDA) && FATHOM_FP8_TYPES
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/fp8_cast.h"
#endif

namespace fathom::ops {

namespace composite {
Fp8Scaled fp8_quantize(const torch::Tensor& t, bool e4m3) {
#if FATHOM_FP8_TYPES
  const double max = e4m3 ? 448.0 : 57344.0;
  auto amax = t.abs().amax().to(torch::kFloat32).clamp_min(1e-12);
  auto scale = amax.reciprocal() * max;
  auto q = (t.to(torch::kFloat32) * scale).clamp(-max, max).to(e4m3 ? at::kFloat8_e4m3fn : at::kFloat8_e5m2);
  return {q, scale.reciprocal()};
#else
  (void)t;
  (void)e4m3;
  TORCH_CHECK(false, "FP8 quantisation needs LibTorch 2.1 or newer (this is ", TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ")");
#endif
}
}  // namespace composite

Fp8Scaled fp8_quantize(const torch::Tensor& t, bool e4m3) {
#if defined(FATHOM_HAVE_CUDA) && FATHOM_FP8_TYPES
  if (kernels_enabled() && t.is_cuda() && detail::kernel_dtype(t) && t.numel() > 0) {
    c10::cuda::CUDAGuard guard(t.device());
    auto x = detail::dense(t);
    const auto dt = *detail::kernel_dtype(t);
    // inv first: the scale handed to the scaled matmul starts at the allocation (aligned).
    auto stats = torch::empty({2}, t.options().dtype(torch::kFloat32));  // inv, amax
    auto q = torch::empty(t.sizes(), t.options().dtype(e4m3 ? at::kFloat8_e4m3fn : at::kFloat8_e5m2));
    float* s = stats.data_ptr<float>();
    kernels::fp8_absmax(dt, x.data_ptr(), x.numel(), s + 1, detail::stream());
    kernels::fp8_quantize(dt, x.data_ptr(), x.numel(), s + 1, e4m3 ? kernels::Fp8Format::e4m3 : kernels::Fp8Format::e5m2,
                          q.data_ptr(), s, detail::stream());
    return {q, stats.select(0, 0)};
  }
#endif
  return composite::fp8_quantize(t, e4m3);
}

}  // namespace fathom::ops
