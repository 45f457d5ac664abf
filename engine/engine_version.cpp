// Build identity of the engine, reported by `fathom-engine --version` and the hello record.
#include "engine/engine_version.h"

#include <torch/version.h>

namespace fathom {

std::string engine_version() { return FATHOM_VERSION; }

std::string torch_version() { return TORCH_VERSION; }

bool engine_built_with_cuda() {
#ifdef FATHOM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace fathom
