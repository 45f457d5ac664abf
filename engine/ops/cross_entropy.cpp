// Fused linear + cross-entropy (see cross_entropy.h).
#include "engine/ops/cross_entropy.h"

#include <torch/torch.h>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/cross_entropy.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index) {
  auto logits = torch::matmul(h, w.t());
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat32), targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kSum));
}
}  // namespace composite

#ifdef FATHOM_HAVE_CUDA
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// About 16K columns per chunk, chunks of near-equal width, multiples of 128.
int64_t chunk_width(int64_t V, int64_t requested) {
  if (requested > 0) return std::min(V, requested);
  const int64_t n = (V + 16383) / 16384;
  const int64_t w = ((V + n - 1) / n + 127) / 128 * 128;
  return std::min(V, w);
}

bool widths_ok(kernels::DType dt, int64_t V, int64_t vc) {
  for (int64_t v0 = 0; v0 < V; v0 += vc) {
    const int64_t n = std::min(vc, V - v0);
    if (!kernels::ce_chunk_supported(dt, n, n)) return false;
  }
  return true;
}

class LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& h_in, const torch::Tensor& w, const torch::Tensor& targets,
                               int64_t ignore_index, int64_t chunk) {
    c10::cuda::CUDAGuard guard(h_in.device());
    const auto dt = *detail::kernel_dtype(h_in);
    auto h = h_in.contiguous();
    auto t = targets.contiguous();
    const int64_t N = h.size(0), V = w.size(0);
    const auto f32 = h.options().dtype(torch::kFloat32);
    auto m = torch::empty({N}, f32), s = torch::empty({N}, f32), zt = torch::empty({N}, f32);
    auto lse = torch::empty({N}, f32), loss = torch::empty({N}, f32);
    const auto st = detail::stream();
    kernels::ce_init(N, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(), st);
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      auto z = detail::dense(torch::matmul(h, w.narrow(0, v0, n).t()));  // (N, n)
      kernels::ce_chunk_forward(dt, z.data_ptr(), n, N, n, v0, t.data_ptr<int64_t>(), m.data_ptr<float>(), s.data_ptr<float>(),
                                zt.data_ptr<float>(), st);
    }
    kernels::ce_finish(N, t.data_ptr<int64_t>(), ignore_index, m.data_ptr<float>(), s.data_ptr<float>(), zt.data_ptr<float>(),
                       lse.data_ptr<float>(), loss.data_ptr<float>(), st);
    ctx->save_for_backward({h, w, t, lse});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["chunk"] = chunk;
    return {loss.sum()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto sv = ctx->get_saved_variables();
    const auto &h = sv[0], &w = sv[1], &t = sv[2], &lse = sv[3];
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt(), chunk = ctx->saved_data["chunk"].toInt();
    c10::cuda::CUDAGuard guard(h.device());
    const auto dt = *detail::kernel_dtype(h);
    const int64_t N = h.size(0), C = h.size(1), V = w.size(0);
    auto scale = grads[0].to(torch::kFloat32).reshape({1}).contiguous();  // stays on the device: no host sync
    const bool want_dw = ctx->needs_input_grad(1), want_dh = ctx->needs_input_grad(0);
    auto dh = torch::zeros({N, C}, h.options().dtype(torch::kFloat32));
    torch::Tensor dw = want_dw ? torch::empty(w.sizes(), w.options()) : torch::Tensor();
    const auto st = detail::stream();
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t n = std::min(chunk, V - v0);
      auto wc = w.narrow(0, v0, n);
      auto z = detail::dense(torch::matmul(h, wc.t()));  // recomputed (N, n), becomes dlogits in place
      kernels::ce_chunk_backward(dt, z.data_ptr(), n, z.data_ptr(), n, N, n, v0, t.data_ptr<int64_t>(), ignore_index,
                                 lse.data_ptr<float>(), scale.data_ptr<float>(), st);
      if (want_dh) dh.add_(torch::matmul(z, wc));
      if (want_dw) {
        auto rows = dw.narrow(0, v0, n);
        torch::mm_out(rows, z.t(), h);
      }
    }
    return {want_dh ? dh.to(h.scalar_type()) : torch::Tensor(), dw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace
#endif

bool linear_cross_entropy_fusable(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || !h.is_cuda() || h.dim() != 2 || w.dim() != 2 || h.size(1) != w.size(1) || h.size(0) == 0) return false;
  const auto dt = detail::kernel_dtype(h);
  if (!dt || w.scalar_type() != h.scalar_type() || w.device() != h.device() || !w.is_contiguous()) return false;
  if (targets.scalar_type() != torch::kInt64 || targets.dim() != 1 || targets.size(0) != h.size(0) || targets.device() != h.device())
    return false;
  return widths_ok(*dt, w.size(0), chunk_width(w.size(0), 0));
#else
  return false;
#endif
}

torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index, int64_t chunk) {
#ifdef FATHOM_HAVE_CUDA
  if (linear_cross_entropy_fusable(h, w, targets)) {
    const int64_t vc = chunk_width(w.size(0), chunk);
    const auto dt = *detail::kernel_dtype(h);
    if (widths_ok(dt, w.size(0), vc)) return LinearCrossEntropyFn::apply(h, w, targets, ignore_index, vc)[0];
  }
#endif
  return composite::linear_cross_entropy_sum(h, w, targets, ignore_index);
}

}  // namespace fathom::ops
