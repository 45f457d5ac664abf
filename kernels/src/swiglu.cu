// SwiGLU elementwise forward/backward (see fathom/kernels/swiglu.h): a grid-stride loop over
// 16-byte packs, the n % pack tail by the first threads of block 0. Memory bound: one read of g
// and u, one write (forward); three reads, two writes (backward).
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/swiglu.h"

namespace fathom::kernels {
namespace {
using namespace detail;

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <typename T>
__device__ __forceinline__ T swiglu_one(T g, T u) {
  const float x = to_f32(g);
  return from_f32<T>(x * sigmoid(x) * to_f32(u));
}

template <typename T>
__device__ __forceinline__ void swiglu_grad_one(T dout, T g, T u, T& dg, T& du) {
  const float x = to_f32(g), d = to_f32(dout), s = sigmoid(x);
  du = from_f32<T>(d * x * s);
  dg = from_f32<T>(d * to_f32(u) * s * (1.f + x * (1.f - s)));
}

template <typename T>
__global__ void swiglu_fwd_kernel(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ out, int64_t n) {
  constexpr int N = Pack<T>::N;
  const int64_t packs = n / N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pack<T> pg = load_pack(g, i), pu = load_pack(u, i);
    Pack<T> po;
#pragma unroll
    for (int j = 0; j < N; ++j) po.v[j] = swiglu_one(pg.v[j], pu.v[j]);
    store_pack(out, i, po);
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * N) {
    const int64_t i = packs * N + threadIdx.x;
    out[i] = swiglu_one(g[i], u[i]);
  }
}

template <typename T>
__global__ void swiglu_bwd_kernel(const T* __restrict__ dout, const T* __restrict__ g, const T* __restrict__ u,
                                  T* __restrict__ dg, T* __restrict__ du, int64_t n) {
  constexpr int N = Pack<T>::N;
  const int64_t packs = n / N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pack<T> pd = load_pack(dout, i), pg = load_pack(g, i), pu = load_pack(u, i);
    Pack<T> og, ou;
#pragma unroll
    for (int j = 0; j < N; ++j) swiglu_grad_one(pd.v[j], pg.v[j], pu.v[j], og.v[j], ou.v[j]);
    store_pack(dg, i, og);
    store_pack(du, i, ou);
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * N) {
    const int64_t i = packs * N + threadIdx.x;
    swiglu_grad_one(dout[i], g[i], u[i], dg[i], du[i]);
  }
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t n, DType dt) { return elementwise_grid(n, dt, kThreads, /*per_sm=*/16); }

}  // namespace

void swiglu_forward(DType dt, const void* g, const void* u, void* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    swiglu_fwd_kernel<T><<<grid_for(n, dt), kThreads, 0, stream>>>(static_cast<const T*>(g), static_cast<const T*>(u),
                                                                   static_cast<T*>(out), n);
  });
  check_launch("swiglu_forward");
}

void swiglu_backward(DType dt, const void* dout, const void* g, const void* u, void* dg, void* du, int64_t n,
                     cudaStream_t stream) {
  if (n <= 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    swiglu_bwd_kernel<T><<<grid_for(n, dt), kThreads, 0, stream>>>(static_cast<const T*>(dout), static_cast<const T*>(g),
                                                                   static_cast<const T*>(u), static_cast<T*>(dg),
                                                                   static_cast<T*>(du), n);
  });
  check_launch("swiglu_backward");
}

}  // namespace fathom::kernels
