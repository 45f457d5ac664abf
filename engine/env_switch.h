// On/off switches read from the environment, for A/B measurements and tests. default_on: on unless
// NAME=0; otherwise off unless NAME=1. Callers read each switch once (a function-local static).
#pragma once
#include <cstdlib>
#include <cstring>

namespace fathom {

inline bool env_switch(const char* name, bool default_on) {
  const char* e = std::getenv(name);
  if (!e) return default_on;
  return default_on ? std::strcmp(e, "0") != 0 : std::strcmp(e, "1") == 0;
}

}  // namespace fathom
