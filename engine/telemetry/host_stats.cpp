// /proc readers for HostStats (see host_stats.h).
#include "engine/telemetry/host_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace fathom::telemetry {

HostSample HostStats::sample() {
  HostSample s;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (stat >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal) {
    const uint64_t total = user + nice + sys + idle + iowait + irq + softirq + steal;
    const uint64_t idle_all = idle + iowait;
    if (last_total_ != 0 && total > last_total_) {
      s.cpu_util_pct = 100.0 * (1.0 - static_cast<double>(idle_all - last_idle_) / static_cast<double>(total - last_total_));
    }
    last_total_ = total;
    last_idle_ = idle_all;
  }
  std::ifstream mem("/proc/meminfo");
  std::string key, unit;
  int64_t value = 0, total_kb = -1, avail_kb = -1;
  while (mem >> key >> value >> unit) {
    if (key == "MemTotal:") total_kb = value;
    if (key == "MemAvailable:") avail_kb = value;
  }
  if (total_kb > 0) s.ram_total = total_kb * 1024;
  if (total_kb > 0 && avail_kb >= 0) s.ram_used = (total_kb - avail_kb) * 1024;
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, rss_pages = 0;
  if (statm >> size_pages >> rss_pages) s.process_rss = rss_pages * sysconf(_SC_PAGESIZE);
  return s;
}

}  // namespace fathom::telemetry
