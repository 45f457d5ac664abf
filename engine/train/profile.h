// A profile of a span of training steps, for `fathom-engine bench train --profile TRACE`: LibTorch's
// Kineto profiler (CUPTI on CUDA) records every operator and, on CUDA, every kernel; the summary
// says where a step's time goes. On CUDA: device time per kernel category (matrix products,
// attention, Fathom's own kernels, elementwise, reductions, copies, communication) and the kernels
// that take the most; on the CPU: operators by self time (their time minus the operators they
// called). The Chrome trace (chrome://tracing, Perfetto) goes to TRACE.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace fathom::train {

class StepProfiler {
 public:
  // Starts recording (throws std::runtime_error when this LibTorch cannot profile).
  explicit StepProfiler(bool cuda);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // Stops; writes the trace to `trace_path` (when not empty) and returns the summary over `steps`
  // steps: {"device", "steps", "total_ms_per_step", "categories": [...], "top": [...]}.
  nlohmann::json stop(const std::string& trace_path, int64_t steps, int top_n = 15);

 private:
  bool cuda_;
  bool running_ = false;
};

// The category of a CUDA kernel's name (see above); exposed for the tests.
std::string kernel_category(const std::string& name);

// The summary as an aligned table for a terminal.
std::string format_profile(const nlohmann::json& summary);

}  // namespace fathom::train
