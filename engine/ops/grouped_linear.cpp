// Grouped expert linears: kernels/grouped_gemm on CUDA, a loop of products elsewhere (see
// grouped_linear.h). Three products per layer, each one cuBLAS call for every expert:
//   forward  y_g  = x_g · W_gᵀ      (r_g × out)
//   dgrad    dx_g = dy_g · W_g      (r_g × in)
//   wgrad    dW_g = dy_gᵀ · x_g     (out × in)
#include "engine/ops/grouped_linear.h"

#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>

#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include "engine/ops/cuda_util.h"
#include "fathom/kernels/grouped_gemm.h"
#endif

namespace fathom::ops {

namespace composite {
torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                             const std::vector<int64_t>& rows) {
  std::vector<torch::Tensor> parts;
  int64_t at = 0;
  for (size_t g = 0; g < weights.size(); ++g) {
    parts.push_back(torch::nn::functional::linear(x.narrow(0, at, rows[g]), weights[g]));
    at += rows[g];
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}
}  // namespace composite

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_rows(const torch::Tensor& x, const std::vector<torch::Tensor>& weights, const std::vector<int64_t>& rows) {
  TORCH_CHECK(rows.size() == weights.size(), "grouped_linear: ", rows.size(), " row counts for ", weights.size(), " weights");
  for (auto r : rows) TORCH_CHECK(r >= 1, "grouped_linear: every group needs at least one row");
  const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  TORCH_CHECK(total == x.size(0), "grouped_linear: the rows (", total, ") do not add up to x's ", x.size(0));
}

enum class Form { forward, dgrad };

std::atomic<int> g_mode{-1};  // -1: the environment's choice

#ifdef FATHOM_HAVE_CUDA

GroupedGemmMode mode_now() {
  static const GroupedGemmMode from_env = [] {
    const char* e = std::getenv("FATHOM_GROUPED_GEMM");
    const std::string v = e ? e : "";
    return v == "grouped" ? GroupedGemmMode::grouped : v == "loop" ? GroupedGemmMode::loop : GroupedGemmMode::automatic;
  }();
  const int m = g_mode.load();
  return m < 0 ? from_env : static_cast<GroupedGemmMode>(m);
}

// Whether a forward pass runs one GEMM per expert rather than one grouped call (see the header).
bool forward_as_loop(const torch::Tensor& w0) {
  switch (mode_now()) {
    case GroupedGemmMode::grouped: return false;
    case GroupedGemmMode::loop: return true;
    case GroupedGemmMode::automatic: break;
  }
  return w0.numel() >= (int64_t{1} << 21);
}

// The problems of one grouped GEMM, collected, then run as one cuBLAS call.
struct GroupedCall {
  std::vector<kernels::GemmShape> shapes;
  std::vector<const void*> a, b;
  std::vector<void*> c;

  void add(kernels::GemmShape s, const void* pa, const void* pb, void* pc) {
    shapes.push_back(s);
    a.push_back(pa);
    b.push_back(pb);
    c.push_back(pc);
  }

  void run(const torch::Tensor& like) const {
    const int64_t n = static_cast<int64_t>(shapes.size());
    if (n == 0) return;
    // The pointer arrays go to the device through pinned memory: no stream sync, and the caching
    // host allocator keeps the block until the copy has run.
    auto host = torch::empty({3 * n}, torch::TensorOptions().dtype(torch::kLong).pinned_memory(true));
    int64_t* h = host.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      h[i] = reinterpret_cast<int64_t>(a[i]);
      h[n + i] = reinterpret_cast<int64_t>(b[i]);
      h[2 * n + i] = reinterpret_cast<int64_t>(c[i]);
    }
    auto dev = host.to(like.device(), /*non_blocking=*/true);
    auto* p = reinterpret_cast<void**>(dev.data_ptr<int64_t>());
    kernels::grouped_gemm(*detail::kernel_dtype(like), at::cuda::getCurrentCUDABlasHandle(), shapes.data(), static_cast<int>(n),
                          const_cast<const void* const*>(p), const_cast<const void* const*>(p + n), p + 2 * n, /*beta=*/0.f,
                          detail::stream());
  }
};

// Address of row `r` of a dense 2-D tensor.
char* row_ptr(const torch::Tensor& t, int64_t r) {
  return static_cast<char*>(t.data_ptr()) + r * t.size(1) * static_cast<int64_t>(t.element_size());
}
#endif

// forward: a = x, returns y (P, out). dgrad: a = dy, returns dx (P, in).
torch::Tensor products(Form form, const torch::Tensor& a, const std::vector<torch::Tensor>& w, const std::vector<int64_t>& rows) {
  const int64_t out = w[0].size(0), in = w[0].size(1);
  auto y = torch::empty({a.size(0), form == Form::forward ? out : in}, a.options());
#ifdef FATHOM_HAVE_CUDA
  if (a.is_cuda() && !(form == Form::forward && forward_as_loop(w[0]))) {
    c10::cuda::CUDAGuard guard(a.device());
    GroupedCall call;
    int64_t at = 0;
    for (size_t g = 0; g < w.size(); ++g) {
      const int64_t r = rows[g];
      const kernels::GemmShape shape = form == Form::forward ? kernels::GemmShape{r, out, in, false, true}    // x_g · W_gᵀ
                                                             : kernels::GemmShape{r, in, out, false, false};  // dy_g · W_g
      call.add(shape, row_ptr(a, at), w[g].data_ptr(), row_ptr(y, at));
      at += r;
    }
    call.run(a);
    return y;
  }
#endif
  int64_t at = 0;
  for (size_t g = 0; g < w.size(); ++g) {
    auto slice = y.narrow(0, at, rows[g]);
    torch::mm_out(slice, a.narrow(0, at, rows[g]), form == Form::forward ? w[g].t() : w[g]);
    at += rows[g];
  }
  return y;
}

// dW_g = dy_gᵀ · x_g for the groups in `want` (the others undefined).
std::vector<torch::Tensor> weight_grads(const torch::Tensor& dy, const torch::Tensor& x, const std::vector<torch::Tensor>& w,
                                        const std::vector<int64_t>& rows, const std::vector<bool>& want) {
  std::vector<torch::Tensor> dw(w.size());
#ifdef FATHOM_HAVE_CUDA
  if (x.is_cuda()) {
    const int64_t out = w[0].size(0), in = w[0].size(1);
    c10::cuda::CUDAGuard guard(x.device());
    GroupedCall call;
    int64_t at = 0;
    for (size_t g = 0; g < w.size(); ++g) {
      if (want[g]) {
        dw[g] = torch::empty({out, in}, w[g].options());
        call.add({out, in, rows[g], true, false}, row_ptr(dy, at), row_ptr(x, at), dw[g].data_ptr());  // dy_gᵀ · x_g
      }
      at += rows[g];
    }
    call.run(x);
    return dw;
  }
#endif
  int64_t at = 0;
  for (size_t g = 0; g < w.size(); ++g) {
    if (want[g]) dw[g] = torch::mm(dy.narrow(0, at, rows[g]).t(), x.narrow(0, at, rows[g]));
    at += rows[g];
  }
  return dw;
}

class GroupedLinearFn : public torch::autograd::Function<GroupedLinearFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList weights,
                               const std::vector<int64_t>& rows) {
    variable_list saved{x};
    saved.insert(saved.end(), weights.begin(), weights.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["rows"] = rows;
    return {products(Form::forward, x, weights.vec(), rows)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const std::vector<torch::Tensor> w(saved.begin() + 1, saved.end());
    const auto rows = ctx->saved_data["rows"].toIntVector();
#ifdef FATHOM_HAVE_CUDA
    auto dy = x.is_cuda() ? detail::dense(grads[0].to(x.scalar_type())) : grads[0].to(x.scalar_type()).contiguous();
#else
    auto dy = grads[0].to(x.scalar_type()).contiguous();
#endif
    variable_list out;
    out.push_back(ctx->needs_input_grad(0) ? products(Form::dgrad, dy, w, rows) : torch::Tensor());
    std::vector<bool> want(w.size());
    for (size_t g = 0; g < w.size(); ++g) want[g] = ctx->needs_input_grad(1 + g);
    auto dw = weight_grads(dy, x, w, rows, want);
    out.insert(out.end(), dw.begin(), dw.end());
    out.push_back(torch::Tensor());  // rows
    return out;
  }
};

bool any_grad(const torch::Tensor& x, const std::vector<torch::Tensor>& w) {
  if (!torch::GradMode::is_enabled()) return false;
  if (x.requires_grad()) return true;
  for (const auto& t : w)
    if (t.requires_grad()) return true;
  return false;
}
}  // namespace

void set_grouped_gemm_mode(std::optional<GroupedGemmMode> mode) { g_mode = mode ? static_cast<int>(*mode) : -1; }

bool grouped_weights_fusable(const std::vector<torch::Tensor>& weights, int64_t in, torch::ScalarType dtype,
                             torch::Device device) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || weights.empty() || !device.is_cuda() || !kernels::grouped_gemm_available()) return false;
  const int64_t es = static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t out = weights[0].dim() == 2 ? weights[0].size(0) : 0;
  // cuBLAS wants 16-byte aligned operands whose rows are whole 16-byte units (16-bit types).
  if (out <= 0 || (in * es) % 16 != 0 || (out * es) % 16 != 0) return false;
  for (const auto& w : weights)
    if (!w.defined() || w.dim() != 2 || w.size(0) != out || w.size(1) != in || w.scalar_type() != dtype ||
        w.device() != device || !w.is_contiguous() || !detail::aligned16(w))
      return false;
  return true;
#else
  (void)weights;
  (void)in;
  (void)dtype;
  (void)device;
  return false;
#endif
}

bool grouped_linear_fusable(const torch::Tensor& x, const std::vector<torch::Tensor>& weights) {
#ifdef FATHOM_HAVE_CUDA
  if (!x.defined() || !x.is_cuda() || x.dim() != 2 || !x.is_contiguous() || !detail::kernel_dtype(x) || !detail::aligned16(x))
    return false;
  return grouped_weights_fusable(weights, x.size(1), x.scalar_type(), x.device());
#else
  (void)x;
  (void)weights;
  return false;
#endif
}

torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                             const std::vector<int64_t>& rows) {
  check_rows(x, weights, rows);
  if (grouped_linear_fusable(x, weights)) {
    if (any_grad(x, weights)) return GroupedLinearFn::apply(x, at::TensorList(weights), rows)[0];
    return products(Form::forward, x, weights, rows);
  }
  return composite::grouped_linear(x, weights, rows);
}

namespace detail {
torch::Tensor grouped_linear_function(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                                      const std::vector<int64_t>& rows) {
  check_rows(x, weights, rows);
  return GroupedLinearFn::apply(x.contiguous(), at::TensorList(weights), rows)[0];
}
}  // namespace detail

}  // namespace fathom::ops
