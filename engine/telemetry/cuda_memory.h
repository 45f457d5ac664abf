// The CUDA caching allocator's view of device memory (what NVML cannot see: allocated vs
// reserved, hence fragmentation). Empty on CPU builds.
#pragma once
#include <cstdint>
#include <optional>

namespace fathom::telemetry {

struct CudaMemoryStats {
  int64_t allocated = 0;       // bytes in live tensors
  int64_t reserved = 0;        // bytes held by the caching allocator
  int64_t peak_allocated = 0;  // since the last reset
  double fragmentation_pct = 0;  // (reserved − allocated) / reserved: cached but unusable for new blocks
};

std::optional<CudaMemoryStats> cuda_memory_stats(int device);
void cuda_reset_peak(int device);

}  // namespace fathom::telemetry
