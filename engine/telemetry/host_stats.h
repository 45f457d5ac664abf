// CPU utilisation and memory of this machine and process, from /proc (Linux).
#pragma once
#include <cstdint>
#include <optional>

namespace fathom::telemetry {

struct HostSample {
  std::optional<double> cpu_util_pct;  // whole machine, since the previous sample
  std::optional<int64_t> ram_used, ram_total, process_rss;
};

class HostStats {
 public:
  HostSample sample();

 private:
  uint64_t last_total_ = 0, last_idle_ = 0;
};

}  // namespace fathom::telemetry
