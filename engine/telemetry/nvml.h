// NVIDIA Management Library, loaded with dlopen so the engine runs where libnvidia-ml is absent
// (CPU machines, CI). Only the handful of queries the Monitor charts are bound, plus GPU Performance
// Monitoring (GPM, Hopper and newer) for SM activity.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
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
  // GPM metrics averaged since the previous call for this device (the first call only takes the
  // starting sample and returns nothing); nothing where GPM is unsupported (pre-Hopper, MIG, old
  // drivers). Percentages 0–100.
  struct Gpm {
    std::optional<double> sm_active_pct, sm_occupancy_pct, tensor_active_pct, dram_bw_pct;
  };
  Gpm gpm(int index);
  std::string gpm_status(int index);  // "ok", or why GPM gives nothing on this device

 private:
  Nvml();
  bool ok_ = false;
  std::string error_;
  void* lib_ = nullptr;
  std::mutex gpm_mu_;
  std::map<int, void*> gpm_prev_;          // device → its previous GPM sample
  std::map<int, std::string> gpm_status_;  // device → "ok" or the reason it is off
};

}  // namespace fathom::telemetry
