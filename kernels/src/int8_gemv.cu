// Weight-only int8 GEMV (see fathom/kernels/int8_gemv.h). One warp per output channel: each lane
// reads 16 int8 weights (one 16-byte load) per step and the matching 16 activations of every batch
// row (x is small and shared by all warps: L1/L2 hits), accumulates B dot products in fp32, and the
// warp reduces them; lane 0 applies the channel's scale. BATCH is a template parameter so the
// accumulators stay in registers.
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/int8_gemv.h"

namespace fathom::kernels {
namespace {
using namespace detail;

constexpr int kWarps = 8;

template <typename T, int BATCH>
__global__ void __launch_bounds__(kWarps * 32)
int8_gemv_kernel(const T* __restrict__ x, const int8_t* __restrict__ q, const T* __restrict__ scale, T* __restrict__ y, int64_t N,
                 int64_t K) {
  constexpr int PN = Pack<T>::N;  // elements per 16-byte pack of x
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (n >= N) return;  // the whole warp leaves together
  float acc[BATCH];
#pragma unroll
  for (int b = 0; b < BATCH; ++b) acc[b] = 0.f;
  const int8_t* qr = q + n * K;
#pragma unroll 2
  for (int64_t k = static_cast<int64_t>(lane) * 16; k < K; k += 32 * 16) {
    const int4 wq = *reinterpret_cast<const int4*>(qr + k);
    const int8_t* wb = reinterpret_cast<const int8_t*>(&wq);
    float wf[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) wf[j] = static_cast<float>(wb[j]);
#pragma unroll
    for (int b = 0; b < BATCH; ++b) {
      const T* xr = x + b * K + k;
#pragma unroll
      for (int pp = 0; pp < 16 / PN; ++pp) {
        const Pack<T> px = load_pack(xr, pp);
#pragma unroll
        for (int j = 0; j < PN; ++j) acc[b] += to_f32(px.v[j]) * wf[pp * PN + j];
      }
    }
  }
#pragma unroll
  for (int b = 0; b < BATCH; ++b) acc[b] = warp_sum(acc[b]);
  if (lane == 0) {
    const float s = to_f32(scale[n]);
#pragma unroll
    for (int b = 0; b < BATCH; ++b) y[b * N + n] = from_f32<T>(acc[b] * s);
  }
}

template <typename T, int BATCH>
void launch(const void* x, const int8_t* q, const void* scale, void* y, int64_t N, int64_t K, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(ceil_div(N, kWarps));
  int8_gemv_kernel<T, BATCH><<<grid, kWarps * 32, 0, stream>>>(static_cast<const T*>(x), q, static_cast<const T*>(scale),
                                                               static_cast<T*>(y), N, K);
}

}  // namespace

bool int8_gemv_supported(DType dt, int64_t B, int64_t K) { return B >= 1 && B <= 8 && K > 0 && K % 16 == 0; }

void int8_gemv(DType dt, const void* x, const int8_t* q, const void* scale, void* y, int64_t B, int64_t N, int64_t K,
               cudaStream_t stream) {
  if (!int8_gemv_supported(dt, B, K)) throw std::invalid_argument("int8_gemv: needs 1 <= B <= 8 and K % 16 == 0");
  if (N <= 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    switch (B) {
      case 1: launch<T, 1>(x, q, scale, y, N, K, stream); break;
      case 2: launch<T, 2>(x, q, scale, y, N, K, stream); break;
      case 3: launch<T, 3>(x, q, scale, y, N, K, stream); break;
      case 4: launch<T, 4>(x, q, scale, y, N, K, stream); break;
      case 5: launch<T, 5>(x, q, scale, y, N, K, stream); break;
      case 6: launch<T, 6>(x, q, scale, y, N, K, stream); break;
      case 7: launch<T, 7>(x, q, scale, y, N, K, stream); break;
      default: launch<T, 8>(x, q, scale, y, N, K, stream); break;
    }
  });
  check_launch("int8_gemv");
}

}  // namespace fathom::kernels
