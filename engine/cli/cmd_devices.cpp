// `fathom-engine devices`: what this machine can run on, as JSON (for the workbench's Launch
// dialog and for SSH host probes) or as a table.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/cli/commands.h"
#include "engine/telemetry/nvml.h"

namespace {

int cmd_devices(int argc, char** argv) {
  CLI::App app{"List the devices this engine can use (CPU and CUDA GPUs).", "fathom-engine devices"};
  bool as_json = false;
  app.add_flag("--json", as_json, "print JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like every other command
  }
  nlohmann::json out = nlohmann::json::array();
  out.push_back({{"index", 0},
                 {"kind", "cpu"},
                 {"name", "CPU"},
                 {"threads", std::thread::hardware_concurrency()},
                 {"memory_total", static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE)}});
  const int n = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  auto& nvml = fathom::telemetry::Nvml::instance();
  for (int i = 0; i < n; ++i) {
    nlohmann::json d{{"index", i}, {"kind", "cuda"}, {"name", "CUDA device " + std::to_string(i)}};
    if (nvml.available()) {
      auto s = nvml.sample(i);
      if (!s.name.empty()) d["name"] = s.name;
      if (s.mem_total) d["memory_total"] = *s.mem_total;
      if (!s.uuid.empty()) d["uuid"] = s.uuid;
      d["gpm"] = nvml.gpm_status(i);  // "ok" where SM activity can be measured
    }
    out.push_back(d);
  }
  if (as_json) {
    std::cout << out.dump() << "\n";
    return 0;
  }
  for (const auto& d : out) {
    const double gib = d.value("memory_total", int64_t{0}) / double(1ull << 30);
    std::cout << d["kind"].get<std::string>() << ":" << d["index"].get<int>() << "  " << d["name"].get<std::string>()
              << "  " << std::fixed << std::setprecision(1) << gib << " GiB"
              << (d.contains("gpm") ? "  SM activity: " + std::string(d["gpm"] == "ok" ? "measured (GPM)" : d["gpm"].get<std::string>()) : std::string())
              << "\n";
  }
  if (n == 0 && !nvml.available()) std::cout << "(no CUDA devices: " << nvml.error() << ")\n";
  return 0;
}

}  // namespace

FATHOM_REGISTER_COMMAND("devices", "list CPU and CUDA devices (--json for tools)", cmd_devices);
