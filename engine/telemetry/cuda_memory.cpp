// CUDA caching allocator statistics (see cuda_memory.h).
#include "engine/telemetry/cuda_memory.h"

#ifdef FATHOM_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace fathom::telemetry {

std::optional<CudaMemoryStats> cuda_memory_stats(int device) {
#ifdef FATHOM_HAVE_CUDA
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto stats = alloc::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  constexpr size_t kAggregate = 0;  // StatType::AGGREGATE
  CudaMemoryStats s;
  s.allocated = stats.allocated_bytes[kAggregate].current;
  s.reserved = stats.reserved_bytes[kAggregate].current;
  s.peak_allocated = stats.allocated_bytes[kAggregate].peak;
  s.fragmentation_pct = s.reserved > 0 ? 100.0 * static_cast<double>(s.reserved - s.allocated) / static_cast<double>(s.reserved) : 0.0;
  return s;
#else
  (void)device;
  return std::nullopt;
#endif
}

void cuda_reset_peak(int device) {
#ifdef FATHOM_HAVE_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
  (void)device;
#endif
}

}  // namespace fathom::telemetry
