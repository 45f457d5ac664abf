// Device helpers shared by the kernels: element conversions, 16-byte packs, block reductions,
// launch checks and the dtype switch. Private to kernels/src.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "fathom/kernels/common.h"

namespace fathom::kernels::detail {

using bf16 = __nv_bfloat16;
using f16 = __half;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(f16 v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// 16 bytes of T: one vectorised load or store (pointers must be 16-byte aligned).
template <typename T>
struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* base, int64_t pack_index) {
  return reinterpret_cast<const Pack<T>*>(base)[pack_index];
}
template <typename T>
__device__ __forceinline__ void store_pack(T* base, int64_t pack_index, const Pack<T>& p) {
  reinterpret_cast<Pack<T>*>(base)[pack_index] = p;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the total. Safe to
// call repeatedly in a loop (the leading barrier protects the scratch from the previous call).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float scratch[32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float t = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(t);
}

inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// `attr` of the current device, looked up once per device in the caller's `cache` (one slot a
// device; -1 where the lookup gave nothing).
inline int current_device_attribute(cudaDeviceAttr attr, int (&cache)[64]) {
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (cache[dev] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, attr, dev);
    cache[dev] = n > 0 ? n : -1;
  }
  return cache[dev];
}

// Multiprocessors of the current device.
inline int sm_count() {
  static int cache[64] = {};
  return std::max(1, current_device_attribute(cudaDevAttrMultiProcessorCount, cache));
}

// Resident blocks per multiprocessor of `kernel` at `threads` (≤ 1024) threads, looked up once
// per (kernel instantiation, block size): the launchers size their persistent grids with it.
template <auto Kernel>
int blocks_per_sm(int threads) {
  static int cache[33] = {};
  const int slot = std::min(threads / 32, 32);
  if (cache[slot] == 0) {
    int n = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, Kernel, threads, 0);
    cache[slot] = n > 0 ? n : 1;
  }
  return cache[slot];
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid of a grid-stride loop over n elements in 16-byte packs, `threads` a block: enough blocks to
// fill the GPU `per_sm` times over (the loop takes the rest), at least one.
inline unsigned elementwise_grid(int64_t n, DType dt, int threads, int per_sm) {
  const int64_t packs = std::max<int64_t>(1, n / (16 / static_cast<int64_t>(dtype_size(dt))));
  const int64_t cap = static_cast<int64_t>(sm_count()) * per_sm;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(packs, threads), cap)));
}

// ---- programmatic dependent launch (Hopper and later) ----------------------------------------------
// A kernel launched with launch_pdl() may start while the kernel before it on the stream is still
// running: as soon as every block of that one has called pdl_launch_dependents() (or exited). Before
// pdl_wait() it may only read what no earlier kernel writes (weights) and write nothing; pdl_wait()
// returns once the earlier kernels have finished and their writes are visible. The decode kernels
// use the time to pull their weights into L2 while the small kernels before them run, and the
// launch latency between kernels overlaps. Works inside CUDA graph capture (CUDA ≥ 12.3). Before
// sm_90 both calls compile to nothing, and launch_pdl() is a plain launch on such devices and in any
// build that targets them too (FATHOM_KERNELS_PDL, kernels/CMakeLists.txt).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Pulls [p, p + bytes) into L2 (one prefetch per 128-byte line, spread over `threads` threads).
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes, int thread, int threads) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = static_cast<int64_t>(thread) * 128; o < bytes; o += static_cast<int64_t>(threads) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + o));
}

// Whether launch_pdl() asks for programmatic serialisation: a device of compute capability ≥ 9.0 and
// FATHOM_PDL not 0 (the switch for A/B measurements). Looked up once per device.
bool pdl_enabled();

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
#if CUDART_VERSION >= 12030
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) {
    cudaGetLastError();  // (cleared: the next launch check should not report it again)
    throw std::runtime_error(std::string("kernel launch: ") + cudaGetErrorString(e));
  }
#else
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
#endif
}

}  // namespace fathom::kernels::detail

// Calls F.template operator()<T>() with the element type named by a DType.
#define FATHOM_DISPATCH_DTYPE(dt, ...)                                                         \
  switch (dt) {                                                                                \
    case ::fathom::kernels::DType::f32: { using T = float; __VA_ARGS__; break; }               \
    case ::fathom::kernels::DType::f16: { using T = ::fathom::kernels::detail::f16; __VA_ARGS__; break; } \
    case ::fathom::kernels::DType::bf16: { using T = ::fathom::kernels::detail::bf16; __VA_ARGS__; break; } \
  }
