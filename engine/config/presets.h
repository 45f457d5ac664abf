// The presets compiled into fathom_config (generated from resources/presets/*.yaml by
// embed_presets.cmake), so that an installed engine needs no resource files.
#pragma once
#include <cstddef>

namespace fathom::config::detail {

struct EmbeddedPreset {
  const char* name;  // file name without .yaml
  const char* text;  // the YAML, verbatim
};

extern const EmbeddedPreset k_embedded_presets[];  // ends with {nullptr, nullptr}
extern const std::size_t k_embedded_preset_count;

}  // namespace fathom::config::detail
