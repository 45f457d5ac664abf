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

}  // namespace fathom::telemetry
