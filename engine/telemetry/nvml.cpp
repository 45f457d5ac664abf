// dlopen binding of NVML (see nvml.h). Prototypes are declared here from the public NVML API
// (nvml.h of the CUDA toolkit), so no header or link dependency is needed.
#include "engine/telemetry/nvml.h"

#include <dlfcn.h>

namespace fathom::telemetry {
namespace {

using nvmlReturn_t = int;
using nvmlDevice_t = void*;
struct nvmlUtilization_t { unsigned int gpu, memory; };
struct nvmlMemory_t { unsigned long long total, free, used; };

// GPM (nvml.h, "GPM Structs"): opaque sample buffers and a request that names metric ids.
using nvmlGpmSample_t = void*;
struct nvmlGpmSupport_t { unsigned int version, isSupportedDevice; };
struct nvmlGpmMetric_t {
  unsigned int metricId;
  nvmlReturn_t nvmlReturn;
  double value;
  struct { char *shortName, *longName, *unit; } metricInfo;
};
// NVML_GPM_METRIC_MAX varies between driver versions (98, then 210): the library reads numMetrics
// entries only, and the array is sized past any of them.
struct nvmlGpmMetricsGet_t {
  unsigned int version, numMetrics;
  nvmlGpmSample_t sample1, sample2;
  nvmlGpmMetric_t metrics[256];
};
constexpr unsigned int kGpmSupportVersion = 1, kGpmMetricsGetVersion = 1;
constexpr unsigned int kGpmSmUtil = 2, kGpmSmOccupancy = 3, kGpmAnyTensorUtil = 5, kGpmDramBwUtil = 10;

struct Fns {
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*count)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*util)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*energy)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*clock)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*gpm_support)(nvmlDevice_t, nvmlGpmSupport_t*) = nullptr;
  nvmlReturn_t (*gpm_alloc)(nvmlGpmSample_t*) = nullptr;
  nvmlReturn_t (*gpm_free)(nvmlGpmSample_t) = nullptr;
  nvmlReturn_t (*gpm_get)(nvmlDevice_t, nvmlGpmSample_t) = nullptr;
  nvmlReturn_t (*gpm_metrics)(nvmlGpmMetricsGet_t*) = nullptr;
};
Fns g;

constexpr int kNvmlTemperatureGpu = 0;
constexpr int kNvmlClockSm = 1;
constexpr int kNvmlClockMem = 2;

}  // namespace

Nvml& Nvml::instance() {
  static Nvml nvml;
  return nvml;
}

Nvml::Nvml() {
  lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib_) {
    error_ = "libnvidia-ml.so.1 not found (no NVIDIA driver): GPU telemetry off";
    return;
  }
  auto sym = [&](const char* n) { return dlsym(lib_, n); };
  g.init = reinterpret_cast<decltype(g.init)>(sym("nvmlInit_v2"));
  g.count = reinterpret_cast<decltype(g.count)>(sym("nvmlDeviceGetCount_v2"));
  g.handle = reinterpret_cast<decltype(g.handle)>(sym("nvmlDeviceGetHandleByIndex_v2"));
  g.util = reinterpret_cast<decltype(g.util)>(sym("nvmlDeviceGetUtilizationRates"));
  g.memory = reinterpret_cast<decltype(g.memory)>(sym("nvmlDeviceGetMemoryInfo"));
  g.temperature = reinterpret_cast<decltype(g.temperature)>(sym("nvmlDeviceGetTemperature"));
  g.power = reinterpret_cast<decltype(g.power)>(sym("nvmlDeviceGetPowerUsage"));
  g.energy = reinterpret_cast<decltype(g.energy)>(sym("nvmlDeviceGetTotalEnergyConsumption"));
  g.clock = reinterpret_cast<decltype(g.clock)>(sym("nvmlDeviceGetClockInfo"));
  g.name = reinterpret_cast<decltype(g.name)>(sym("nvmlDeviceGetName"));
  g.uuid = reinterpret_cast<decltype(g.uuid)>(sym("nvmlDeviceGetUUID"));
  g.gpm_support = reinterpret_cast<decltype(g.gpm_support)>(sym("nvmlGpmQueryDeviceSupport"));
  g.gpm_alloc = reinterpret_cast<decltype(g.gpm_alloc)>(sym("nvmlGpmSampleAlloc"));
  g.gpm_free = reinterpret_cast<decltype(g.gpm_free)>(sym("nvmlGpmSampleFree"));
  g.gpm_get = reinterpret_cast<decltype(g.gpm_get)>(sym("nvmlGpmSampleGet"));
  g.gpm_metrics = reinterpret_cast<decltype(g.gpm_metrics)>(sym("nvmlGpmMetricsGet"));
  if (!g.init || !g.count || !g.handle) {
    error_ = "libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2: GPU telemetry off";
    return;
  }
  if (g.init() != 0) {
    error_ = "nvmlInit_v2 failed: GPU telemetry off";
    return;
  }
  ok_ = true;
}

int Nvml::device_count() const {
  if (!ok_) return 0;
  unsigned int n = 0;
  return g.count(&n) == 0 ? static_cast<int>(n) : 0;
}

NvmlSample Nvml::sample(int index) const {
  NvmlSample s;
  if (!ok_) return s;
  nvmlDevice_t dev = nullptr;
  if (g.handle(static_cast<unsigned int>(index), &dev) != 0) return s;
  nvmlUtilization_t u{};
  if (g.util && g.util(dev, &u) == 0) {
    s.util_pct = u.gpu;
    s.mem_util_pct = u.memory;
  }
  nvmlMemory_t m{};
  if (g.memory && g.memory(dev, &m) == 0) {
    s.mem_used = static_cast<int64_t>(m.used);
    s.mem_total = static_cast<int64_t>(m.total);
  }
  unsigned int v = 0;
  if (g.temperature && g.temperature(dev, kNvmlTemperatureGpu, &v) == 0) s.temperature_c = v;
  if (g.power && g.power(dev, &v) == 0) s.power_w = v / 1000.0;  // milliwatts
  unsigned long long mj = 0;
  if (g.energy && g.energy(dev, &mj) == 0) s.energy_j = static_cast<double>(mj) / 1000.0;  // millijoules
  if (g.clock && g.clock(dev, kNvmlClockSm, &v) == 0) s.clock_sm_mhz = v;
  if (g.clock && g.clock(dev, kNvmlClockMem, &v) == 0) s.clock_mem_mhz = v;
  char buf[96] = {0};
  if (g.name && g.name(dev, buf, sizeof(buf)) == 0) s.name = buf;
  if (g.uuid && g.uuid(dev, buf, sizeof(buf)) == 0) s.uuid = buf;
  return s;
}

Nvml::Gpm Nvml::gpm(int index) {
  Gpm out;
  if (!ok_) return out;
  std::lock_guard<std::mutex> lock(gpm_mu_);
  auto& status = gpm_status_[index];
  if (!status.empty() && status != "ok") return out;  // decided once per device
  nvmlDevice_t dev = nullptr;
  if (g.handle(static_cast<unsigned int>(index), &dev) != 0) {
    status = "no NVML handle for device " + std::to_string(index);
    return out;
  }
  if (status.empty()) {
    nvmlGpmSupport_t support{kGpmSupportVersion, 0};
    if (!g.gpm_support || !g.gpm_alloc || !g.gpm_get || !g.gpm_metrics || !g.gpm_free) {
      status = "this driver's NVML has no GPM functions";
      return out;
    }
    if (g.gpm_support(dev, &support) != 0 || !support.isSupportedDevice) {
      status = "GPM is not supported on this device (it needs Hopper or newer, not MIG)";
      return out;
    }
    status = "ok";
  }
  nvmlGpmSample_t now = nullptr;
  if (g.gpm_alloc(&now) != 0) return out;
  if (g.gpm_get(dev, now) != 0) {
    g.gpm_free(now);
    return out;
  }
  auto prev = gpm_prev_.find(index);
  if (prev == gpm_prev_.end()) {
    gpm_prev_[index] = now;  // the first sample only starts the interval
    return out;
  }
  nvmlGpmMetricsGet_t req{};
  req.version = kGpmMetricsGetVersion;
  req.sample1 = prev->second;
  req.sample2 = now;
  const unsigned int ids[] = {kGpmSmUtil, kGpmSmOccupancy, kGpmAnyTensorUtil, kGpmDramBwUtil};
  std::optional<double>* dst[] = {&out.sm_active_pct, &out.sm_occupancy_pct, &out.tensor_active_pct, &out.dram_bw_pct};
  req.numMetrics = 4;
  for (unsigned int i = 0; i < 4; ++i) req.metrics[i].metricId = ids[i];
  if (g.gpm_metrics(&req) == 0)
    for (unsigned int i = 0; i < 4; ++i)
      if (req.metrics[i].nvmlReturn == 0) *dst[i] = req.metrics[i].value;
  g.gpm_free(prev->second);
  prev->second = now;
  return out;
}

std::string Nvml::gpm_status(int index) {
  if (!ok_) return error_;
  gpm(index);  // decides the status on first use
  std::lock_guard<std::mutex> lock(gpm_mu_);
  return gpm_status_[index];
}

}  // namespace fathom::telemetry
