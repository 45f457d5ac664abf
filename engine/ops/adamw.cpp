// Multi-tensor fused AdamW: kernels/adamw behind tensor checks (see adamw.h).
#include "engine/ops/adamw.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "engine/env_switch.h"
#include "engine/ops/kernels.h"

#ifdef FATHOM_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/Sleep.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "engine/ops/cuda_util.h"
#include "fathom/kernels/adamw.h"
#endif

namespace fathom::ops {

#ifdef FATHOM_HAVE_CUDA
namespace {
kernels::AdamWHyper hyper(const AdamWStep& s, double grad_scale) {
  kernels::AdamWHyper h;
  h.lr = static_cast<float>(s.lr);
  h.beta1 = static_cast<float>(s.beta1);
  h.beta2 = static_cast<float>(s.beta2);
  h.eps = static_cast<float>(s.eps);
  h.weight_decay = static_cast<float>(s.weight_decay);
  h.step_size = static_cast<float>(s.step_size);
  h.bias_correction2_sqrt = static_cast<float>(s.bias_correction2_sqrt);
  h.grad_scale = static_cast<float>(grad_scale);
  static const bool streaming = env_switch("FATHOM_ADAMW_STREAMING", false);
  h.streaming = streaming;
  return h;
}

bool same_place(const torch::Tensor& t, const torch::Device& device, torch::ScalarType dtype, int64_t n) {
  return t.defined() && t.device() == device && t.scalar_type() == dtype && t.is_contiguous() && t.numel() == n;
}
}  // namespace
#endif

bool fused_adamw_applicable(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled() || params.empty() || grads.size() != params.size() || exp_avg.size() != params.size() ||
      exp_avg_sq.size() != params.size())
    return false;
  const auto device = params[0].device();
  if (!device.is_cuda()) return false;
  for (size_t i = 0; i < params.size(); ++i)
    for (const auto* t : {&params[i], &grads[i], &exp_avg[i], &exp_avg_sq[i]})
      if (!same_place(*t, device, torch::kFloat32, params[i].numel())) return false;
  return true;
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq;
  return false;
#endif
}

void fused_adamw_step(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                      const std::vector<bool>& decay, const AdamWStep& s, double grad_scale) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(fused_adamw_applicable(params, grads, exp_avg, exp_avg_sq) && decay.size() == params.size(),
              "fused_adamw_step: tensors the kernel does not take");
  c10::cuda::CUDAGuard guard(params[0].device());
  std::vector<kernels::AdamWTensor> ts(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    ts[i] = kernels::AdamWTensor{params[i].data_ptr<float>(), grads[i].data_ptr<float>(), exp_avg[i].data_ptr<float>(),
                                 exp_avg_sq[i].data_ptr<float>(), params[i].numel(), static_cast<bool>(decay[i])};
  kernels::adamw_step(ts.data(), static_cast<int>(ts.size()), hyper(s, grad_scale), detail::stream());
#else
  (void)params, (void)grads, (void)exp_avg, (void)exp_avg_sq, (void)decay, (void)s, (void)grad_scale;
  TORCH_CHECK(false, "fused_adamw_step needs a CUDA build");
#endif
}

bool fused_adamw_mixed_applicable(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                                  const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                                  const std::vector<torch::Tensor>& model_bf16) {
#ifdef FATHOM_HAVE_CUDA
  const size_t n = masters.size();
  if (!kernels_enabled() || n == 0 || grads_bf16.size() != n || exp_avg.size() != n || exp_avg_sq.size() != n ||
      model_bf16.size() != n)
    return false;
  const auto device = masters[0].device();
  if (!device.is_cuda()) return false;
  for (size_t i = 0; i < n; ++i) {
    const auto numel = masters[i].numel();
    for (const auto* t : {&masters[i], &exp_avg[i], &exp_avg_sq[i]})
      if (!same_place(*t, device, torch::kFloat32, numel)) return false;
    for (const auto* t : {&grads_bf16[i], &model_bf16[i]})
      if (!same_place(*t, device, torch::kBFloat16, numel)) return false;
  }
  return true;
#else
  (void)masters, (void)grads_bf16, (void)exp_avg, (void)exp_avg_sq, (void)model_bf16;
  return false;
#endif
}

void fused_adamw_mixed_step(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                            const std::vector<torch::Tensor>& model_bf16, const std::vector<bool>& decay, const AdamWStep& s,
                            double grad_scale, const torch::Tensor& grad_scale_dev) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(fused_adamw_mixed_applicable(masters, grads_bf16, exp_avg, exp_avg_sq, model_bf16) && decay.size() == masters.size(),
              "fused_adamw_mixed_step: tensors the kernel does not take");
  TORCH_CHECK(!grad_scale_dev.defined() || (grad_scale_dev.device() == masters[0].device() &&
                                            grad_scale_dev.scalar_type() == torch::kFloat32 && grad_scale_dev.numel() == 1),
              "fused_adamw_mixed_step: grad_scale_dev must be one fp32 element on the masters' device");
  c10::cuda::CUDAGuard guard(masters[0].device());
  std::vector<kernels::AdamWTensor> ts(masters.size());
  for (size_t i = 0; i < masters.size(); ++i) {
    auto& t = ts[i];
    t.p = masters[i].data_ptr<float>();
    t.m = exp_avg[i].data_ptr<float>();
    t.v = exp_avg_sq[i].data_ptr<float>();
    t.n = masters[i].numel();
    t.decay = decay[i];
    t.g_bf16 = static_cast<const uint16_t*>(grads_bf16[i].data_ptr());
    t.model_bf16 = static_cast<uint16_t*>(model_bf16[i].data_ptr());
  }
  auto h = hyper(s, grad_scale);
  if (grad_scale_dev.defined()) h.grad_scale_dev = grad_scale_dev.data_ptr<float>();
  kernels::adamw_step(ts.data(), static_cast<int>(ts.size()), h, detail::stream());
#else
  (void)masters, (void)grads_bf16, (void)exp_avg, (void)exp_avg_sq, (void)model_bf16, (void)decay, (void)s, (void)grad_scale,
      (void)grad_scale_dev;
  TORCH_CHECK(false, "fused_adamw_mixed_step needs a CUDA build");
#endif
}

bool grad_norm_clip_applicable(const std::vector<torch::Tensor>& grads) {
#ifdef FATHOM_HAVE_CUDA
  if (!kernels_enabled()) return false;
  std::optional<torch::Device> device;
  for (const auto& g : grads) {
    if (!g.defined()) continue;
    if (!device) device = g.device();
    if (!device->is_cuda() || g.device() != *device || !g.is_contiguous() ||
        (g.scalar_type() != torch::kFloat32 && g.scalar_type() != torch::kBFloat16))
      return false;
  }
  return device.has_value();
#else
  (void)grads;
  return false;
#endif
}

#ifdef FATHOM_HAVE_CUDA
namespace {
struct OverlapState {
  OverlapState(c10::cuda::CUDAStream s, int groups) : side(s), done(static_cast<size_t>(groups)) {}
  c10::cuda::CUDAStream side;
  std::vector<at::cuda::CUDAEvent> done;  // (an event never recorded: waiting on it is a no-op)
  // Whatever way the trainer leaves (an exception too), nothing the side stream writes is freed
  // under it.
  ~OverlapState() {
    try {
      side.synchronize();
    } catch (...) {
    }
  }
};
}  // namespace
#endif

OverlappedUpdate::OverlappedUpdate(const torch::Device& device, int groups) : groups_(groups) {
#ifdef FATHOM_HAVE_CUDA
  if (device.is_cuda()) {
    state_ = std::make_shared<OverlapState>(c10::cuda::getStreamFromPool(false, device.index()), groups);
    if (const char* e = std::getenv("FATHOM_TEST_OVERLAP_DELAY_CYCLES")) test_delay_cycles_ = std::max<int64_t>(0, std::atoll(e));
    test_skip_waits_ = env_switch("FATHOM_TEST_OVERLAP_SKIP_WAITS", false);
  }
#else
  (void)device;
#endif
}

void OverlappedUpdate::run(const std::function<void(const std::function<void(int)>& done)>& body,
                           const std::vector<torch::Tensor>& side_reads) {
#ifdef FATHOM_HAVE_CUDA
  if (state_) {
    auto* st = static_cast<OverlapState*>(state_.get());
    const auto main = c10::cuda::getCurrentCUDAStream(st->side.device_index());
    at::cuda::CUDAEvent ready;
    ready.record(main);
    ready.block(st->side);
    // Before anything is queued: whatever way body leaves, a tensor it read on the side stream is
    // not handed out again before the side stream is done with it.
    for (const auto& t : side_reads)
      if (t.defined() && t.is_cuda()) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), st->side);
    {
      c10::cuda::CUDAStreamGuard on_side(st->side);
      if (test_delay_cycles_ > 0) at::cuda::sleep(test_delay_cycles_);
      body([st](int g) {
        if (g >= 0 && g < static_cast<int>(st->done.size())) st->done[static_cast<size_t>(g)].record(st->side);
      });
    }
    ++side_runs_;
    return;
  }
#endif
  (void)side_reads;
  body([](int) {});
}

void OverlappedUpdate::wait(int group) {
  if (!test_skip_waits_) wait_for(group);
}

void OverlappedUpdate::wait_all() {
  for (int g = 0; g < groups_; ++g) wait_for(g);
}

void OverlappedUpdate::wait_for(int group) {
#ifdef FATHOM_HAVE_CUDA
  if (!state_ || group < 0 || group >= groups_) return;
  auto* st = static_cast<OverlapState*>(state_.get());
  st->done[static_cast<size_t>(group)].block(c10::cuda::getCurrentCUDAStream(st->side.device_index()));
#else
  (void)group;
#endif
}

HostRead::HostRead(const torch::Tensor& values) {
#ifdef FATHOM_HAVE_CUDA
  if (values.is_cuda()) {
    c10::cuda::CUDAGuard guard(values.device());
    host_ = torch::empty(values.sizes(), values.options().device(torch::kCPU).pinned_memory(true));
    host_.copy_(values, /*non_blocking=*/true);
    auto event = std::make_shared<at::cuda::CUDAEvent>();
    event->record(at::cuda::getCurrentCUDAStream());
    event_ = event;
    return;
  }
#endif
  host_ = values.to(torch::kCPU);
}

torch::Tensor HostRead::get() {
#ifdef FATHOM_HAVE_CUDA
  if (event_) static_cast<at::cuda::CUDAEvent*>(event_.get())->synchronize();
#endif
  return host_;
}

torch::Tensor grad_norm_clip(const std::vector<torch::Tensor>& grads, double max_norm, const torch::Tensor& loss) {
#ifdef FATHOM_HAVE_CUDA
  TORCH_CHECK(grad_norm_clip_applicable(grads), "grad_norm_clip: gradients the kernel does not take");
  std::vector<kernels::NormTensor> ts;
  torch::Device device = torch::kCPU;
  for (const auto& g : grads) {
    if (!g.defined()) continue;
    device = g.device();
    ts.push_back({g.data_ptr(), g.numel(), g.scalar_type() == torch::kBFloat16});
  }
  c10::cuda::CUDAGuard guard(device);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  torch::Tensor l;
  if (loss.defined()) {
    l = loss.to(f32).reshape({-1}).contiguous();
    TORCH_CHECK(l.numel() == 1, "grad_norm_clip: the loss must be one element");
  }
  const int count = static_cast<int>(ts.size());
  auto workspace = torch::empty({kernels::grad_norm_clip_workspace(count)}, f32);
  auto out = torch::empty({2}, f32);
  kernels::grad_norm_clip(ts.data(), count, workspace.data_ptr<float>(), static_cast<float>(max_norm),
                          l.defined() ? l.data_ptr<float>() : nullptr, out.data_ptr<float>(), detail::stream());
  return out;
#else
  (void)grads, (void)max_norm, (void)loss;
  TORCH_CHECK(false, "grad_norm_clip needs a CUDA build");
#endif
}

}  // namespace fathom::ops
