// Decode-step ops: kernels/decode behind tensor checks (see decode.h).
#include "engine/ops/decode.h"

#include <torch/torch.h>

#include <cmath>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/decode.h"
#endif

namespace fathom::ops {

bool decode_linear_fusable(const torch::Tensor& x, const std::vector<DecodeWeight>& ws, bool swiglu) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || !x.defined() || !x.is_cuda() || x.dim() < 1 || ws.empty() || ws.size() > 3) return false;
  if (swiglu && ws.size() != 2) return false;
  const auto dt = detail::kernel_dtype(x);
  const int64_t K = x.size(-1);
  if (!dt || K <= 0 || K % 16 != 0) return false;
  const int64_t B = x.numel() / K;
  if (B < 1 || B > 8) return false;
  const bool int8 = ws[0].scale.defined();
  for (const auto& d : ws) {
    if (!d.w.defined() || d.w.dim() != 2 || d.w.size(1) != K || d.w.device() != x.device() || !d.w.is_contiguous() ||
        !detail::aligned16(d.w) || d.scale.defined() != int8)
      return false;
    if (detail::any_requires_grad({x, d.w, d.bias})) return false;  // decoding only: no backward here
    if (int8 ? (d.w.scalar_type() != torch::kInt8 || d.scale.dim() != 1 || d.scale.size(0) != d.w.size(0) ||
                d.scale.device() != x.device())
             : d.w.scalar_type() != x.scalar_type())
      return false;
    if (d.bias.defined() && (d.bias.dim() != 1 || d.bias.size(0) != d.w.size(0) || d.bias.device() != x.device()))
      return false;
  }
  if (swiglu && ws[0].w.size(0) != ws[1].w.size(0)) return false;
  // Measured on an H200 (docs/benchmarks.md): with bf16 weights the gemv beats cuBLAS at 1-2 rows;
  // at 4 it loses on the large products (it converts every activation per weight), except q/k/v
  // in one launch instead of three. int8 weights always win: the composite dequantises.
  if (!int8 && B > 2 && ws.size() < 3) return false;
  return true;
#else
  (void)x, (void)ws, (void)swiglu;
  return false;
#endif
}

torch::Tensor decode_linear(const torch::Tensor& x, const std::vector<DecodeWeight>& ws, bool swiglu,
                            const torch::Tensor& residual) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(decode_linear_fusable(x, ws, swiglu), "decode_linear: inputs the kernel does not take");
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1);
  auto xc = detail::dense(x);
  kernels::GemvArgs a;
  a.x = xc.data_ptr();
  a.B = x.numel() / K;
  a.K = K;
  a.segments = static_cast<int>(ws.size());
  a.int8 = ws[0].scale.defined();
  a.swiglu = swiglu;
  std::vector<torch::Tensor> keep;  // scales / biases converted to x's dtype live until the launch
  int64_t rows = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    auto as_x = [&](const torch::Tensor& t) -> const void* {
      if (!t.defined()) return nullptr;
      keep.push_back(t.scalar_type() == x.scalar_type() && t.is_contiguous() ? t : t.to(x.scalar_type()).contiguous());
      return keep.back().data_ptr();
    };
    a.seg[i] = kernels::GemvSegment{ws[i].w.data_ptr(), as_x(ws[i].scale), as_x(ws[i].bias), ws[i].w.size(0)};
    rows += ws[i].w.size(0);
  }
  if (swiglu) rows = ws[0].w.size(0);
  auto sizes = x.sizes().vec();
  sizes.back() = rows;
  auto y = torch::empty(sizes, x.options());
  a.y = y.data_ptr();
  torch::Tensor rc;
  if (residual.defined()) {
    TORCH_CHECK(!swiglu && residual.numel() == y.numel() && residual.device() == x.device(),
                "decode_linear: the residual must have the output's shape ", y.sizes(), ", got ", residual.sizes());
    rc = residual.to(x.scalar_type()).contiguous();
    a.residual = rc.data_ptr();
  }
  kernels::gemv(*detail::kernel_dtype(x), a, detail::stream());
  return y;
#else
  (void)x, (void)ws, (void)swiglu, (void)residual;
  TORCH_CHECK(false, "decode_linear needs a CUDA build");
#endif
}

bool decode_attend_fusable(const torch::Tensor& qkv, const torch::Tensor& k_cache, const torch::Tensor& positions, int64_t Hq,
                           int64_t Hkv, int64_t hd) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || !qkv.defined() || !qkv.is_cuda() || qkv.dim() != 2 || !detail::kernel_dtype(qkv)) return false;
  if (!kernels::decode_attention_supported(*detail::kernel_dtype(qkv), hd) || Hkv <= 0 || Hq % Hkv != 0) return false;
  if (qkv.size(1) != (Hq + 2 * Hkv) * hd || !qkv.is_contiguous()) return false;
  if (k_cache.dim() != 4 || k_cache.scalar_type() != qkv.scalar_type() || k_cache.device() != qkv.device() ||
      k_cache.size(0) < qkv.size(0) || k_cache.size(1) != Hkv || k_cache.size(3) != hd || k_cache.stride(3) != 1)
    return false;
  if (!positions.defined() || positions.scalar_type() != torch::kInt64 || positions.numel() != qkv.size(0) ||
      positions.device() != qkv.device())
    return false;
  return !detail::any_requires_grad({qkv, k_cache});
#else
  (void)qkv, (void)k_cache, (void)positions, (void)Hq, (void)Hkv, (void)hd;
  return false;
#endif
}

torch::Tensor decode_attend(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                            const torch::Tensor& positions, torch::Tensor& k_cache, torch::Tensor& v_cache, int64_t Hq,
                            int64_t Hkv, int64_t hd, int64_t max_keys) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(decode_attend_fusable(qkv, k_cache, positions, Hq, Hkv, hd), "decode_attend: inputs the kernels do not take");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes() && v_cache.strides() == k_cache.strides() &&
                  v_cache.scalar_type() == k_cache.scalar_type(),
              "decode_attend: the k and v caches differ in shape or layout");
  TORCH_CHECK(cos.scalar_type() == torch::kFloat32 && cos.dim() == 2 && cos.size(1) == hd && cos.is_contiguous() &&
                  sin.sizes() == cos.sizes() && sin.is_contiguous() && cos.device() == qkv.device(),
              "decode_attend: rotary tables must be (T, ", hd, ") fp32 on the device");
  c10::cuda::CUDAGuard guard(qkv.device());
  const auto dt = *detail::kernel_dtype(qkv);
  const int64_t B = qkv.size(0);
  auto pos = positions.reshape({B}).contiguous();
  kernels::KvCacheView view{k_cache.data_ptr(), v_cache.data_ptr(), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2)};
  kernels::DecodeRopeAppendArgs r;
  r.qkv = qkv.data_ptr();
  r.row_stride = qkv.stride(0);
  r.B = B;
  r.Hq = Hq;
  r.Hkv = Hkv;
  r.hd = hd;
  r.cos = cos.data_ptr<float>();
  r.sin = sin.data_ptr<float>();
  r.positions = pos.data_ptr<int64_t>();
  r.cache = view;
  kernels::decode_rope_append(dt, r, detail::stream());
  auto y = torch::empty({B, Hq * hd}, qkv.options());
  kernels::DecodeAttentionArgs a;
  a.q = qkv.data_ptr();
  a.q_stride = qkv.stride(0);
  a.cache = view;
  a.positions = pos.data_ptr<int64_t>();
  a.y = y.data_ptr();
  a.B = B;
  a.Hq = Hq;
  a.Hkv = Hkv;
  a.hd = hd;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  a.max_keys = max_keys;
  torch::Tensor workspace;
  if (const int64_t n = kernels::decode_attention_workspace(a); n > 0) {
    workspace = torch::empty({n}, qkv.options().dtype(torch::kFloat32));
    a.workspace = workspace.data_ptr<float>();
  }
  kernels::decode_attention(dt, a, detail::stream());
  return y;
#else
  (void)qkv, (void)cos, (void)sin, (void)positions, (void)k_cache, (void)v_cache, (void)Hq, (void)Hkv, (void)hd, (void)max_keys;
  TORCH_CHECK(false, "decode_attend needs a CUDA build");
#endif
}

}  // namespace fathom::ops
