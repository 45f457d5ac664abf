// FP8 per-tensor quantisation (see fathom/kernels/fp8_cast.h): a max-reduction pass (grid-stride
// over 16-byte packs, block reduction, one atomicMax per block on the float's bits, which order as
// integers for non-negative values and put NaN above infinity), then a cast pass that reads the
// maximum, scales, clamps and converts with the hardware's round-to-nearest-even (cvt.rn.satfinite).
#include <cuda_fp8.h>

#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/fp8_cast.h"

namespace fathom::kernels {
namespace {
using namespace detail;

// max that keeps a NaN from either side.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

__device__ __forceinline__ float block_nan_max(float v) {
  __shared__ float scratch[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <typename T>
__global__ void absmax_kernel(const T* __restrict__ x, int64_t n, float* __restrict__ amax) {
  constexpr int N = Pack<T>::N;
  const int64_t packs = n / N;
  float m = 0.f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pack<T> p = load_pack(x, i);
#pragma unroll
    for (int j = 0; j < N; ++j) m = nan_max(m, fabsf(to_f32(p.v[j])));
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * N) m = nan_max(m, fabsf(to_f32(x[packs * N + threadIdx.x])));
  m = block_nan_max(m);
  if (threadIdx.x == 0) atomicMax(reinterpret_cast<int*>(amax), __float_as_int(m));
}

template <typename T>
struct alignas(Pack<T>::N) Bytes {
  __nv_fp8_storage_t v[Pack<T>::N];
};

__device__ __forceinline__ __nv_fp8_storage_t to_fp8(float s, float top, __nv_fp8_interpretation_t kind) {
  // clamp first (as the composite does; NaN passes through), then RNE with saturation.
  if (s == s) s = fminf(fmaxf(s, -top), top);
  return __nv_cvt_float_to_fp8(s, __NV_SATFINITE, kind);
}

template <typename T>
__global__ void quantize_kernel(const T* __restrict__ x, int64_t n, const float* __restrict__ amax, float top,
                                __nv_fp8_interpretation_t kind, __nv_fp8_storage_t* __restrict__ q, float* __restrict__ inv) {
  constexpr int N = Pack<T>::N;
  float a = *amax;
  if (a == a) a = fmaxf(a, 1e-12f);
  const float scale = (1.f / a) * top;
  if (blockIdx.x == 0 && threadIdx.x == 0) *inv = 1.f / scale;
  const int64_t packs = n / N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pack<T> p = load_pack(x, i);
    Bytes<T> b;
#pragma unroll
    for (int j = 0; j < N; ++j) b.v[j] = to_fp8(to_f32(p.v[j]) * scale, top, kind);
    reinterpret_cast<Bytes<T>*>(q)[i] = b;
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * N) {
    const int64_t i = packs * N + threadIdx.x;
    q[i] = to_fp8(to_f32(x[i]) * scale, top, kind);
  }
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t n, DType dt) { return elementwise_grid(n, dt, kThreads, /*per_sm=*/8); }

}  // namespace

void fp8_absmax(DType dt, const void* x, int64_t n, float* amax, cudaStream_t stream) {
  cudaMemsetAsync(amax, 0, sizeof(float), stream);
  if (n <= 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    absmax_kernel<T><<<grid_for(n, dt), kThreads, 0, stream>>>(static_cast<const T*>(x), n, amax);
  });
  check_launch("fp8_absmax");
}

void fp8_quantize(DType dt, const void* x, int64_t n, const float* amax, Fp8Format fmt, void* q, float* inv,
                  cudaStream_t stream) {
  const __nv_fp8_interpretation_t kind = fmt == Fp8Format::e4m3 ? __NV_E4M3 : __NV_E5M2;
  FATHOM_DISPATCH_DTYPE(dt, {
    quantize_kernel<T><<<grid_for(n, dt), kThreads, 0, stream>>>(static_cast<const T*>(x), n, amax, fp8_max(fmt), kind,
                                                                 static_cast<__nv_fp8_storage_t*>(q), inv);
  });
  check_launch("fp8_quantize");
}

}  // namespace fathom::kernels
