// Where a CUDA training step's wall time goes, without a profiler (whose own per-operator cost
// changes what it measures): an event on the stream as each timed step begins, before its first
// work is queued, and one once its last work (the update) is queued. From the GPU's timestamps, per
// step: the time within the step (its first work reached → its last work done) and between steps
// (the previous step's last work done → this step's first reached: the GPU waiting for the host at
// the boundary). With the kernel time of `bench train --profile`, the first also bounds the idle
// time inside a step. Host side: the time the host was blocked reading each step's norm and loss.
// Without CUDA nothing is recorded and the summary is empty.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

namespace fathom::telemetry {

class StepClock {
 public:
  // Made for a CUDA run (the events go on the current CUDA stream).
  void step_begins();
  void step_queued();                // the step's last work is queued
  void host_blocked(double seconds);  // time the host spent waiting on the GPU in this step
  // Per-step means, in ms: gpu_in_step_ms, gpu_between_steps_ms (over steps after the first),
  // host_blocked_ms; each step's gpu_in_step_ms_each, and steps. Call after a device sync.
  nlohmann::json summary() const;

 private:
  std::vector<std::shared_ptr<void>> begins_, ends_;
  double host_blocked_s_ = 0;
};

}  // namespace fathom::telemetry
