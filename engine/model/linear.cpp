// Linear layer with optional LoRA adapter and int8 base (see linear.h).
#include "engine/model/linear.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/env_switch.h"
#include "engine/model/fp8.h"
#include "engine/ops/int8_linear.h"
#include "engine/ops/kernels.h"
#include "engine/ops/shared_linear.h"

namespace fathom::model {

namespace {
thread_local const torch::Tensor* t_adapter_rows = nullptr;
}  // namespace

AdapterRows::AdapterRows(torch::Tensor ids) : previous_(t_adapter_rows), ids_(std::move(ids)) { t_adapter_rows = &ids_; }
AdapterRows::~AdapterRows() { t_adapter_rows = previous_; }
const torch::Tensor* AdapterRows::current() { return t_adapter_rows; }

double LoraSpec::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  // torch.nn.Linear's default initialisation (the transformer re-initialises its weights anyway).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}).uniform_(-bound, bound));
}

torch::Tensor LinearImpl::effective_weight(bool with_adapter) const {
  torch::Tensor w = quantized() ? weight_int8.to(weight_scale.scalar_type()) * weight_scale.unsqueeze(1) : weight;
  if (with_adapter && has_lora() && !merged_) w = w + lora_delta().to(w.scalar_type());
  return w;
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (dynamic_) {
    auto y = dynamic_forward(x);
    if (has_lora() && !merged_) y = y + lora_B->forward(lora_A->forward(x)) * spec_.scale();
    return y;  // (no adapter bank with dynamic int8: see quantize_dynamic_int8's caller)
  }
  if (auto d = x.is_cuda() ? decode_weight() : std::nullopt; d && ops::decode_linear_fusable(x, {*d})) {
    // Decoding a few rows on CUDA: one pass over the weight (int8 or not) with the bias folded in.
    return ops::decode_linear(x, {*d});
  }
  torch::Tensor y;
  if (quantized() && ops::int8_linear_fusable(x, weight_int8, weight_scale)) {
    // Decode on CUDA: the int8 weight read as it is (engine/ops/int8_linear.h).
    y = ops::int8_linear(x, weight_int8, weight_scale);
    if (bias.defined()) y = y + bias.to(y.scalar_type());
  } else if (!quantized() && fp8::enabled() && is_training() && fp8::applicable(x, weight)) {
    // precision fp8 (training on Hopper/Ada): FP8 products forward and backward (fp8.h).
    y = fp8::linear(x, weight);
    if (bias.defined()) y = y + bias;
  } else {
    auto w = quantized() ? (weight_int8.to(x.scalar_type()) * weight_scale.to(x.scalar_type()).unsqueeze(1)) : weight;
    y = torch::nn::functional::linear(x, w, bias.defined() ? bias : torch::Tensor());
  }
  if (has_lora() && !merged_) {
    auto h = x;
    if (spec_.dropout > 0 && is_training())
      h = torch::nn::functional::dropout(h, torch::nn::functional::DropoutFuncOptions().p(spec_.dropout).training(true));
    y = y + lora_B->forward(lora_A->forward(h)) * spec_.scale();
  }
  if (bank_A.defined()) {
    if (const torch::Tensor* ids = AdapterRows::current()) {
      const auto B = ids->size(0);
      TORCH_CHECK(x.dim() >= 2 && x.size(0) == B, "adapter bank: ", B, " row choices for an input of shape ", x.sizes());
      auto g = ids->clamp_min(0);
      auto a = bank_A.index_select(0, g);                                   // (B, r, in)
      auto b = bank_B.index_select(0, g);                                   // (B, out, r)
      auto s = (bank_scale.index_select(0, g) * ids->ge(0).to(torch::kFloat32)).to(x.scalar_type());
      auto xr = x.reshape({B, -1, in_features});                            // (B, T, in)
      auto d = torch::bmm(torch::bmm(xr, a.transpose(1, 2)), b.transpose(1, 2)) * s.view({B, 1, 1});
      y = y + d.view(y.sizes());
    }
  }
  return y;
}

std::optional<ops::DecodeWeight> LinearImpl::decode_weight() const {
  if (dynamic_ || bank_A.defined() || (has_lora() && !merged_)) return std::nullopt;
  return quantized() ? ops::DecodeWeight{weight_int8, weight_scale, bias} : ops::DecodeWeight{weight, {}, bias};
}

bool LinearImpl::plain_product_for(const torch::Tensor& x) const {
  if (dynamic_ || quantized() || bank_A.defined() || (has_lora() && !merged_) || bias.defined() || !weight.defined()) return false;
  if (fp8::enabled() && is_training() && fp8::applicable(x, weight)) return false;
  if (x.is_cuda() && ops::decode_linear_fusable(x, {ops::DecodeWeight{weight, {}, bias}})) return false;
  return true;
}

namespace {
bool shared_input_requested() {  // FATHOM_SHARED_LINEAR=0: separate products (A/B measurements)
  static const bool on = env_switch("FATHOM_SHARED_LINEAR", true);
  return on;
}
}  // namespace

std::vector<torch::Tensor> forward_shared_input(const std::vector<LinearImpl*>& layers, const torch::Tensor& x) {
  auto plain = [&x](const LinearImpl* l) { return l->plain_product_for(x) && l->weight.scalar_type() == x.scalar_type(); };
  if (x.is_cuda() && ops::kernels_enabled() && shared_input_requested() && torch::GradMode::is_enabled() && layers.size() > 1 &&
      std::all_of(layers.begin(), layers.end(), plain)) {
    std::vector<torch::Tensor> weights;
    for (const auto* l : layers) weights.push_back(l->weight);
    // (ops::shared_input_linear takes the plain products itself when nothing needs a gradient)
    return ops::shared_input_linear(x, weights);
  }
  std::vector<torch::Tensor> out;
  out.reserve(layers.size());
  for (auto* l : layers) out.push_back(l->forward(x));
  return out;
}

void LinearImpl::set_adapter_bank(torch::Tensor A, torch::Tensor B, torch::Tensor scale) {
  TORCH_CHECK(A.dim() == 3 && A.size(2) == in_features, "adapter bank A must be (G, r, ", in_features, ")");
  TORCH_CHECK(B.dim() == 3 && B.size(1) == out_features && B.size(2) == A.size(1) && B.size(0) == A.size(0),
              "adapter bank B must be (G, ", out_features, ", r)");
  bank_A = std::move(A);
  bank_B = std::move(B);
  bank_scale = scale.to(torch::kFloat32).to(bank_A.device());
}

void LinearImpl::add_lora(const LoraSpec& spec) {
  TORCH_CHECK(!has_lora(), "layer already has a LoRA adapter");
  TORCH_CHECK(spec.r > 0, "LoRA rank must be positive");
  spec_ = spec;
  const auto opts = (quantized() ? weight_scale : weight).options();
  lora_A = register_module("lora_A", std::make_shared<LinearImpl>(in_features, spec.r, false));
  lora_B = register_module("lora_B", std::make_shared<LinearImpl>(spec.r, out_features, false));
  torch::NoGradGuard ng;
  // PEFT: A ~ kaiming_uniform(a = sqrt(5)) → U(-1/sqrt(in), 1/sqrt(in)); B = 0, so training starts
  // at exactly the base model.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  lora_A->weight.uniform_(-bound, bound);
  lora_B->weight.zero_();
  lora_A->to(opts.device(), opts.dtype().toScalarType());
  lora_B->to(opts.device(), opts.dtype().toScalarType());
}

torch::Tensor LinearImpl::lora_delta() const {
  TORCH_CHECK(has_lora(), "layer has no LoRA adapter");
  return torch::matmul(lora_B->weight.to(torch::kFloat32), lora_A->weight.to(torch::kFloat32)) * spec_.scale();
}

void LinearImpl::merge() {
  TORCH_CHECK(has_lora() && !merged_, "no unmerged adapter to merge");
  TORCH_CHECK(!quantized(), "merge needs the full-precision base weight (this layer is int8)");
  torch::NoGradGuard ng;
  weight.add_(lora_delta().to(weight.scalar_type()));
  merged_ = true;
}

void LinearImpl::unmerge() {
  TORCH_CHECK(has_lora() && merged_, "no merged adapter to unmerge");
  torch::NoGradGuard ng;
  weight.sub_(lora_delta().to(weight.scalar_type()));
  merged_ = false;
}

std::pair<torch::Tensor, torch::Tensor> quantize_rows_int8(const torch::Tensor& w) {
  TORCH_CHECK(w.dim() == 2, "quantize_rows_int8 takes a matrix, got ", w.sizes());
  torch::NoGradGuard ng;
  const int64_t rows = w.size(0), chunk = 4096;
  auto q = torch::empty(w.sizes(), w.options().dtype(torch::kInt8));
  auto scale = torch::empty({rows}, w.options().dtype(torch::kFloat32));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    auto wf = w.detach().narrow(0, r0, n).to(torch::kFloat32);
    auto s = wf.abs().amax(1).clamp_min(1e-12) / 127.0;  // per output channel
    q.narrow(0, r0, n).copy_(torch::round(wf / s.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8));
    scale.narrow(0, r0, n).copy_(s);
  }
  return {q, scale.to(w.scalar_type())};
}

void LinearImpl::quantize_int8() {
  TORCH_CHECK(!quantized(), "already int8");
  auto [q, scale] = quantize_rows_int8(weight);
  weight_int8 = register_buffer("weight_int8", q);
  weight_scale = register_buffer("weight_scale", scale);
  parameters_.erase("weight");
  weight = torch::Tensor();
}

namespace {
// quantized::linear_prepack / linear_dynamic through the dispatcher (boxed: the packed-parameter
// class stays an IValue, no private header needed).
c10::OperatorHandle quantized_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

bool choose_qengine() {
  const auto& engines = at::globalContext().supportedQEngines();
  for (auto want : {
#if TORCH_VERSION_MAJOR >= 2
           at::QEngine::X86,
#endif
           at::QEngine::FBGEMM, at::QEngine::ONEDNN, at::QEngine::QNNPACK}) {
    if (std::find(engines.begin(), engines.end(), want) != engines.end()) {
      at::globalContext().setQEngine(want);
      return true;
    }
  }
  return false;
}
}  // namespace

std::string LinearImpl::quantize_dynamic_int8() {
  TORCH_CHECK(!dynamic_, "already dynamic int8");
  const auto device = (quantized() ? weight_scale : weight).device();
  torch::Tensor w_fp32 = effective_weight(false).to(torch::kFloat32);
  if (!quantized()) quantize_int8();
  dynamic_ = true;
  if (device.is_cpu()) {
    static const bool have_engine = choose_qengine();
    TORCH_CHECK(have_engine, "dynamic_int8 needs LibTorch's quantized CPU kernels (x86, fbgemm, onednn or qnnpack); this build has none — use int8");
    // Per-channel symmetric int8 weights, the same values as weight_int8.
    auto scales = weight_scale.to(torch::kFloat64);
    auto qw = at::quantize_per_channel(w_fp32, scales, torch::zeros_like(scales, torch::kInt64), 0, torch::kQInt8);
    torch::jit::Stack stack{qw, bias.defined() ? c10::IValue(bias.to(torch::kFloat32)) : c10::IValue()};
    quantized_op("quantized::linear_prepack").callBoxed(&stack);
    packed_ = stack.at(0);
    static const std::string name = std::string("cpu ") + c10::toString(at::globalContext().qEngine());
    return name;
  }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  weight_int8_t_ = weight_int8.t().contiguous();
  return "cuda _int_mm";
#else
  return "dequantised (no _int_mm in this LibTorch)";
#endif
}

torch::Tensor LinearImpl::dynamic_forward(const torch::Tensor& x) {
  auto x2 = x.reshape({-1, in_features});
  torch::Tensor y;
  if (!packed_.isNone()) {
    torch::jit::Stack stack{x2.to(torch::kFloat32).contiguous(), packed_, false};
    quantized_op("quantized::linear_dynamic").callBoxed(&stack);
    y = stack.at(0).toTensor().to(x.scalar_type());
  } else {
    // Per-row symmetric activation scales, int8 × int8 → int32, rescaled by both scales.
    auto xs = x2.abs().amax(1, /*keepdim=*/true).to(torch::kFloat32).clamp_min(1e-12) / 127.0;
    auto xq = torch::round(x2.to(torch::kFloat32) / xs).clamp(-127, 127).to(torch::kInt8);
    torch::Tensor acc;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
    if (weight_int8_t_.defined() && x2.size(0) > 16 && in_features % 8 == 0 && out_features % 8 == 0)
      acc = at::_int_mm(xq, weight_int8_t_).to(torch::kFloat32);
#endif
    if (!acc.defined()) acc = torch::matmul(xq.to(torch::kFloat32), weight_int8.to(torch::kFloat32).t());
    y = (acc * xs * weight_scale.to(torch::kFloat32).unsqueeze(0)).to(x.scalar_type());
    if (bias.defined()) y = y + bias.to(y.scalar_type());
  }
  auto sizes = x.sizes().vec();
  sizes.back() = out_features;
  return y.view(sizes);
}

}  // namespace fathom::model
