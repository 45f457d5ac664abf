// Run configs (YAML): load_config_text with presets, extends, ${VAR}, --set overrides (the lines
// after a "#--set" line), the cross-key rules and, for a config that loads, the estimator (the
// Designer runs it on every edit) and the documented round trip: loading resolved_yaml again gives
// the same config (same hash).
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/config/estimate.h"
#include "fuzz/fuzz_util.h"

using namespace fathom::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // `extends: /dev/stdin` (or any device) would block or read forever: a file the user names is
  // trusted to be a file. Keep the fuzzer off the special file systems.
  for (const char* special : {"/dev", "/proc", "/sys", "/run"})
    if (text.find(special) != std::string::npos) return -1;

  LoadOptions options;
  options.check_paths = false;
  options.base_dir = "/nonexistent/fuzz";
  const size_t marker = text.find("\n#--set\n");
  if (marker != std::string::npos) {
    std::string rest = text.substr(marker + 8);
    text.resize(marker);
    size_t at = 0;
    while (at <= rest.size() && options.overrides.size() < 16) {
      size_t eol = rest.find('\n', at);
      if (eol == std::string::npos) eol = rest.size();
      options.overrides.push_back(rest.substr(at, eol - at));
      at = eol + 1;
    }
  }

  const LoadResult r = load_config_text(text, "fuzz.yaml", options);
  for (const auto& e : r.errors) (void)e.message();
  for (const auto& w : r.warnings) (void)w.message();
  if (!r.ok()) return 0;

  // The estimator on whatever sizes the config holds (huge ones included).
  const Estimate est = estimate(r.config, known_devices());
  (void)format_estimate(r.config, est);
  (void)estimate_to_json(est);

  LoadOptions again_opts;
  again_opts.check_paths = false;
  again_opts.base_dir = options.base_dir;
  const LoadResult again = load_config_text(r.resolved_yaml, "resolved.yaml", again_opts);
  if (!again.ok()) {
    fathom::fuzz::fail("resolved_yaml of a valid config does not load:",
                       again.errors.front().message() + "\n--- resolved:\n" + r.resolved_yaml);
  }
  if (config_hash(again) != config_hash(r)) {
    fathom::fuzz::fail("resolved_yaml loads as a different config:",
                       "\n--- first:\n" + r.resolved_yaml + "\n--- second:\n" + again.resolved_yaml);
  }
  return 0;
}
