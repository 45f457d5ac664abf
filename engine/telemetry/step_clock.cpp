// CUDA events around each timed training step (see step_clock.h).
#include "engine/telemetry/step_clock.h"

#ifdef FATHOM_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace fathom::telemetry {

namespace {
#ifdef FATHOM_HAVE_CUDA
std::shared_ptr<void> record_now() {
  auto e = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);  // (timing on: not ATen's default)
  e->record(at::cuda::getCurrentCUDAStream());
  return e;
}
double ms_between(const std::shared_ptr<void>& a, const std::shared_ptr<void>& b) {
  return static_cast<const at::cuda::CUDAEvent*>(a.get())->elapsed_time(*static_cast<const at::cuda::CUDAEvent*>(b.get()));
}
#endif
}  // namespace

void StepClock::step_begins() {
#ifdef FATHOM_HAVE_CUDA
  if (begins_.size() == ends_.size()) begins_.push_back(record_now());
#endif
}

void StepClock::step_queued() {
#ifdef FATHOM_HAVE_CUDA
  if (ends_.size() + 1 == begins_.size()) ends_.push_back(record_now());
#endif
}

void StepClock::host_blocked(double seconds) { host_blocked_s_ += seconds; }

nlohmann::json StepClock::summary() const {
  nlohmann::json s = nlohmann::json::object();
#ifdef FATHOM_HAVE_CUDA
  const size_t n = ends_.size();
  if (n == 0) return s;
  double in = 0, between = 0;
  auto each = nlohmann::json::array();
  for (size_t i = 0; i < n; ++i) {
    const double t = ms_between(begins_[i], ends_[i]);
    each.push_back(t);
    in += t;
    if (i > 0) between += ms_between(ends_[i - 1], begins_[i]);
  }
  s["gpu_in_step_ms_each"] = each;  // (a trend here: the GPU's clocks settling under load)
  s["steps"] = n;
  s["gpu_in_step_ms"] = in / static_cast<double>(n);
  s["gpu_between_steps_ms"] = n > 1 ? between / static_cast<double>(n - 1) : 0.0;
  s["host_blocked_ms"] = 1e3 * host_blocked_s_ / static_cast<double>(n);
#endif
  return s;
}

}  // namespace fathom::telemetry
