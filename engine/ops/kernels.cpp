// The fused-kernel switch (see kernels.h).
#include "engine/ops/kernels.h"

#include <ATen/Context.h>
#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace fathom::ops {
namespace {
std::atomic<int> g_forced{-1};  // -1: the environment decides
bool from_env() {
  static const bool on = [] {
    const char* v = std::getenv("FATHOM_KERNELS");
    return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0));
  }();
  return on;
}
}  // namespace

bool kernels_built() {
#ifdef FATHOM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool kernels_enabled() {
  if (!kernels_built()) return false;
  const int f = g_forced.load(std::memory_order_relaxed);
  return f < 0 ? from_env() : f == 1;
}

void set_kernels_enabled(std::optional<bool> on) { g_forced.store(on ? (*on ? 1 : 0) : -1, std::memory_order_relaxed); }

bool prefer_cublaslt() {
#if defined(FATHOM_HAVE_CUDA) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3))
  if (std::getenv("TORCH_BLAS_PREFER_CUBLASLT") != nullptr) return false;  // the user's choice stands
  at::globalContext().setBlasPreferredBackend(at::BlasBackend::Cublaslt);
  return true;
#else
  return false;
#endif
}

}  // namespace fathom::ops
