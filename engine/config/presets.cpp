// Lookup of the presets embedded at build time (see presets.h).
#include "engine/config/presets.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace fathom::config {

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < detail::k_embedded_preset_count; ++i) names.emplace_back(detail::k_embedded_presets[i].name);
  std::sort(names.begin(), names.end());
  return names;
}

std::string preset_text(const std::string& name) {
  for (std::size_t i = 0; i < detail::k_embedded_preset_count; ++i)
    if (name == detail::k_embedded_presets[i].name) return detail::k_embedded_presets[i].text;
  return "";
}

}  // namespace fathom::config
