// Build identity of the engine (no torch in this header).
#pragma once
#include <string>

namespace fathom {
std::string engine_version();
std::string torch_version();
bool engine_built_with_cuda();
}  // namespace fathom
