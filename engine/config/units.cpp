// Formatting of sizes, counts, FLOPs and durations with three significant digits.
#include "engine/config/units.h"

#include <cmath>
#include <cstdio>

namespace fathom::config {
namespace {
std::string sig3(double v) {
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : "%.2f", v);
  return buf;
}
std::string scaled(double v, double base, const char* const* units, int n, const char* sep) {
  int i = 0;
  while (i + 1 < n && std::fabs(v) >= base * 0.9995) {
    v /= base;
    ++i;
  }
  return sig3(v) + sep + units[i];
}
}  // namespace

std::string format_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (std::fabs(bytes) < 1024) return std::to_string(static_cast<long long>(bytes)) + " B";
  return scaled(bytes, 1024, units, 6, " ");
}

std::string format_count(double count) {
  static const char* const units[] = {"", "K", "M", "B", "T"};
  if (std::fabs(count) < 1000) return std::to_string(static_cast<long long>(std::llround(count)));
  // One decimal for counts (124.4M), as people quote parameter counts.
  int i = 0;
  while (i + 1 < 5 && std::fabs(count) >= 999.95) {
    count /= 1000;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(count) < 10 ? "%.2f%s" : "%.1f%s", count, units[i]);
  return buf;
}

std::string format_flops(double flops) {
  static const char* const units[] = {"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP", "ZFLOP"};
  return scaled(flops, 1000, units, 8, " ");
}

std::string format_seconds(double s) {
  char buf[48];
  if (s < 0.001) std::snprintf(buf, sizeof buf, "<1 ms");
  else if (s < 1) std::snprintf(buf, sizeof buf, "%.0f ms", s * 1000);
  else if (s < 60) std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%d min %d s", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  else if (s < 86400 * 2) std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  else if (s < 86400 * 60) std::snprintf(buf, sizeof buf, "%.1f days", s / 86400);
  else if (s < 86400 * 365 * 2) std::snprintf(buf, sizeof buf, "%.0f days", s / 86400);
  else std::snprintf(buf, sizeof buf, "%.1f years", s / (86400 * 365.25));
  return buf;
}

}  // namespace fathom::config
