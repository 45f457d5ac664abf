// Device helpers shared by the kernels: element conversions, 16-byte packs, block reductions,
// launch checks and the dtype switch. Private to kernels/src.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

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

// Multiprocessors of the current device (looked up once per device).
inline int sm_count() {
  static int cache[64] = {};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (cache[dev] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    cache[dev] = n > 0 ? n : 1;
  }
  return cache[dev];
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

}  // namespace fathom::kernels::detail

// Calls F.template operator()<T>() with the element type named by a DType.
#define FATHOM_DISPATCH_DTYPE(dt, ...)                                                         \
  switch (dt) {                                                                                \
    case ::fathom::kernels::DType::f32: { using T = float; __VA_ARGS__; break; }               \
    case ::fathom::kernels::DType::f16: { using T = ::fathom::kernels::detail::f16; __VA_ARGS__; break; } \
    case ::fathom::kernels::DType::bf16: { using T = ::fathom::kernels::detail::bf16; __VA_ARGS__; break; } \
  }
