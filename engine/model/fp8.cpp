// FP8 linear layers (see fp8.h).
#include "engine/model/fp8.h"

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

#include "engine/ops/fp8_cast.h"

#if defined(FATHOM_HAVE_CUDA)
#include <ATen/cuda/CUDAContext.h>
#endif

// FATHOM_NO_FP8 compiles the FP8 path out (a safety switch for LibTorch versions whose scaled-matmul
// signature differs).
#if !defined(FATHOM_NO_FP8) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5))
#define FATHOM_FP8_MM 1
#else
#define FATHOM_FP8_MM 0
#endif

namespace fathom::model::fp8 {
namespace {

std::atomic<bool> g_enabled{false};

#if FATHOM_FP8_MM
constexpr double kE4m3Max = 448.0;    // largest finite e4m3fn
constexpr double kE5m2Max = 57344.0;  // largest finite e5m2

struct Scaled {
  torch::Tensor q;    // fp8
  torch::Tensor inv;  // fp32 scalar: q · inv ≈ the tensor
};

// Per-tensor scale from the current absolute maximum, so the largest value maps to the format's max
// (engine/ops/fp8_cast.h: two kernel passes on CUDA with the kernels on, the composite otherwise).
Scaled quantize(const torch::Tensor& t, at::ScalarType fp8, double max) {
  TORCH_INTERNAL_ASSERT(fp8 == at::kFloat8_e4m3fn ? max == kE4m3Max : max == kE5m2Max);
  auto s = ops::fp8_quantize(t, fp8 == at::kFloat8_e4m3fn);
  return {s.q, s.inv};
}

// a (M, K) row-major · b (K, N) column-major → (M, N) in `out`, both scales applied.
torch::Tensor scaled_mm(const Scaled& a, const torch::Tensor& b, const torch::Tensor& b_inv, at::ScalarType out) {
  return at::_scaled_mm(a.q, b, a.inv, b_inv, std::nullopt, std::nullopt, out, /*use_fast_accum=*/false);
}

torch::Tensor column_major(const torch::Tensor& t) { return t.t().contiguous().t(); }

// What the backward pass computes in FP8, from FATHOM_FP8_RECIPE (tools/gpu/fp8_check.sh compares them):
//   tensorwise  (default) gradients in e5m2; dX and dW both FP8 products;
//   e4m3_grads  gradients in e4m3 (one more mantissa bit; the per-tensor scale covers the range);
//   hp_wgrad    dX an FP8 product, dW in bf16 from the unquantised gradient and the dequantised input.
enum class Recipe { tensorwise, e4m3_grads, hp_wgrad };

Recipe recipe() {
  static const Recipe r = [] {
    const char* v = std::getenv("FATHOM_FP8_RECIPE");
    const std::string s = v ? v : "";
    if (s == "e4m3_grads") return Recipe::e4m3_grads;
    if (s == "hp_wgrad") return Recipe::hp_wgrad;
    TORCH_CHECK(s.empty() || s == "tensorwise", "FATHOM_FP8_RECIPE=", s, ": expected tensorwise, e4m3_grads or hp_wgrad");
    return Recipe::tensorwise;
  }();
  return r;
}

class Fp8Linear : public torch::autograd::Function<Fp8Linear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    const auto K = x.size(-1), N = w.size(0);
    auto x2 = x.reshape({-1, K});
    auto xs = quantize(x2, at::kFloat8_e4m3fn, kE4m3Max);
    auto ws = quantize(w, at::kFloat8_e4m3fn, kE4m3Max);
    auto y = scaled_mm(xs, ws.q.t(), ws.inv, x.scalar_type());  // w (N, K) row-major = wᵀ column-major
    ctx->save_for_backward({xs.q, xs.inv, ws.q, ws.inv});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    auto out_sizes = x.sizes().vec();
    out_sizes.back() = N;
    return y.view(out_sizes);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Scaled xs{saved[0], saved[1]}, ws{saved[2], saved[3]};
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    const auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
    const auto N = ws.q.size(0);
    const Recipe r = recipe();
    auto gy = grads[0].reshape({-1, N});
    auto gs = r == Recipe::e4m3_grads ? quantize(gy, at::kFloat8_e4m3fn, kE4m3Max) : quantize(gy, at::kFloat8_e5m2, kE5m2Max);
    // dX (M, K) = dY (M, N) · W (N, K); dW (N, K) = dYᵀ (N, M) · X (M, K). e5m2 (or e4m3) × e4m3 products.
    auto dx = scaled_mm(gs, column_major(ws.q), ws.inv, x_dtype);
    torch::Tensor dw;
    if (r == Recipe::hp_wgrad) {
      auto x_hp = (xs.q.to(torch::kFloat32) * xs.inv).to(gy.scalar_type());
      dw = gy.t().mm(x_hp).to(w_dtype);
    } else {
      Scaled gt{gs.q.t().contiguous(), gs.inv};
      dw = scaled_mm(gt, column_major(xs.q), xs.inv, w_dtype);
    }
    return {dx.view(x_sizes), dw};
  }
};
#endif

}  // namespace

std::string unavailable_reason(const torch::Device& device) {
#if !FATHOM_FP8_MM
  (void)device;
  return "this LibTorch (" + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
         ") has no FP8 scaled matmul; FP8 training needs LibTorch 2.5 or newer";
#elif !defined(FATHOM_HAVE_CUDA)
  (void)device;
  return "this engine was built without CUDA; FP8 training needs a Hopper or Ada GPU";
#else
  if (!device.is_cuda()) return "FP8 training needs a CUDA device (Hopper or Ada), not " + device.str();
  const auto* p = at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index());
  if (p->major * 10 + p->minor < 89)
    return "FP8 tensor cores need compute capability 8.9 or newer (Ada, Hopper); " + std::string(p->name) + " is " +
           std::to_string(p->major) + "." + std::to_string(p->minor);
  return "";
#endif
}

void set_enabled(bool on) { g_enabled = on; }
bool enabled() { return g_enabled; }

bool applicable(const torch::Tensor& x, const torch::Tensor& w) {
#if FATHOM_FP8_MM
  if (!x.is_cuda() || w.dim() != 2) return false;
  if (x.scalar_type() != torch::kBFloat16 && x.scalar_type() != torch::kFloat16) return false;
  const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / std::max<int64_t>(K, 1);
  return K == w.size(1) && K % 16 == 0 && N % 16 == 0 && M % 16 == 0 && M > 0;
#else
  (void)x;
  (void)w;
  return false;
#endif
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w) {
#if FATHOM_FP8_MM
  return Fp8Linear::apply(x, w);
#else
  (void)x;
  (void)w;
  TORCH_CHECK(false, "FP8 linear layers need LibTorch 2.5 or newer");
#endif
}

}  // namespace fathom::model::fp8
