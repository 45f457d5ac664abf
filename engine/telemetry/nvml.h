// NVIDIA Management Library, loaded with dlopen so the engine runs where libnvidia-ml is absent
// (CPU machines, CI). Only the handful of queries the Monitor charts are bound.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace fathom::telemetry {

struct NvmlSample {
  std::optional<double> util_pct, mem_util_pct, temperature_c, power_w, energy_j, clock_sm_mhz, clock_mem_mhz;
  std::optional<int64_t> mem_used, mem_total;
  std::string name, uuid;
};

class Nvml {
 public:
  static Nvml& instance();  // loads libnvidia-ml.so.1 once; available() is false where it cannot
  bool available() const { return ok_; }
  const std::string& error() const { return error_; }
  int device_count() const;
  NvmlSample sample(int index) const;

 private:
  Nvml();
  bool ok_ = false;
  std::string error_;
  void* lib_ = nullptr;
};

}  // namespace fathom::telemetry
