// Numbers with units for people: 1.23 GiB, 124.4M, 917.5 MFLOP. Shared by the CLI and the workbench.
#pragma once
#include <cstdint>
#include <string>

namespace fathom::config {

std::string format_bytes(double bytes);    // binary units: "512 B", "1.23 GiB"
std::string format_count(double count);    // "950", "512.4K", "124.4M", "1.29B"
std::string format_flops(double flops);    // "917.5 MFLOP", "3.2 PFLOP"
std::string format_seconds(double s);      // "310 ms", "4.2 s", "3 min 10 s", "2.1 h"

}  // namespace fathom::config
