// Online-softmax cross-entropy over vocabulary chunks (see fathom/kernels/cross_entropy.h). One
// block per row for the chunk kernels: each thread reads 16-byte packs of the row, keeps its own
// (max, sum of exp) pair, and the block merges the pairs; the backward is elementwise per row.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "device_util.cuh"
#include "fathom/kernels/cross_entropy.h"

namespace fathom::kernels {
namespace {
using namespace detail;

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // 16-byte packs a thread loads before using the first (chunk kernels)

// (m, s) pairs: s is a sum of exp(z − m). Merging rescales to the larger max.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) { m = m2; s = s2; return; }
  if (m2 > m) { s = s * __expf(m - m2) + s2; m = m2; }
  else s += s2 * __expf(m2 - m);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
ce_forward_kernel(const T* __restrict__ logits, int64_t ld, int Vc, int64_t v0, const int64_t* __restrict__ targets,
                  float* __restrict__ m_io, float* __restrict__ s_io, float* __restrict__ zt) {
  constexpr int N = Pack<T>::N;
  const int64_t row = blockIdx.x;
  const T* z = logits + row * ld;
  float m = -INFINITY, s = 0.f;
  const int packs = Vc / N;
  for (int p0 = threadIdx.x; p0 < packs; p0 += blockDim.x * kUnroll) {
    Pack<T> v[kUnroll];  // kUnroll loads in flight before any is used
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (p0 + u * static_cast<int>(blockDim.x) < packs) v[u] = load_pack(z, p0 + u * static_cast<int>(blockDim.x));
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (p0 + u * static_cast<int>(blockDim.x) >= packs) continue;
      float pm = -INFINITY;
#pragma unroll
      for (int j = 0; j < N; ++j) pm = fmaxf(pm, to_f32(v[u].v[j]));
      float ps = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) ps += __expf(to_f32(v[u].v[j]) - pm);
      merge(m, s, pm, ps);
    }
  }
  // Block merge: warps by shuffles, then warp 0 over the warps' results.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge(m, s, m2, s2);
  }
  __shared__ float sm[32], ss[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { sm[warp] = m; ss[warp] = s; }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    m = lane < warps ? sm[lane] : -INFINITY;
    s = lane < warps ? ss[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
      merge(m, s, m2, s2);
    }
    if (lane == 0) {
      float M = m_io[row], S = s_io[row];
      merge(M, S, m, s);
      m_io[row] = M;
      s_io[row] = S;
      const int64_t t = targets[row] - v0;
      if (t >= 0 && t < Vc) zt[row] = to_f32(z[t]);
    }
  }
}

__global__ void ce_init_kernel(int64_t rows, float* m, float* s, float* zt) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < rows) { m[i] = -INFINITY; s[i] = 0.f; zt[i] = 0.f; }
}

__global__ void ce_finish_kernel(int64_t rows, const int64_t* targets, int64_t ignore_index, const float* m, const float* s,
                                 const float* zt, float* lse, float* loss) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows) return;
  const float l = m[i] + logf(s[i]);
  lse[i] = l;
  loss[i] = targets[i] == ignore_index ? 0.f : l - zt[i];
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
ce_backward_kernel(const T* logits, int64_t ld, T* dlogits, int64_t ld_out, int Vc, int64_t v0, int64_t rows,
                   const int64_t* __restrict__ targets, int64_t ignore_index, const float* __restrict__ lse,
                   const float* __restrict__ scale) {
  // (logits and dlogits may be the same memory: no __restrict__ on them.)
  constexpr int N = Pack<T>::N;
  const float g = *scale;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t target = targets[row];
    const bool ignored = target == ignore_index;
    const float l = lse[row];
    const T* z = logits + row * ld;
    T* d = dlogits + row * ld_out;
    const int packs = Vc / N, stride = static_cast<int>(gridDim.x * blockDim.x);
    for (int p0 = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); p0 < packs; p0 += stride * kUnroll) {
      Pack<T> v[kUnroll];  // all loads first (in place: each thread reads, then writes, its own packs)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (p0 + u * stride < packs) v[u] = load_pack(z, p0 + u * stride);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int p = p0 + u * stride;
        if (p >= packs) continue;
        Pack<T> out;
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const int64_t col = v0 + static_cast<int64_t>(p) * N + j;
          const float prob = __expf(to_f32(v[u].v[j]) - l);
          out.v[j] = from_f32<T>(ignored ? 0.f : (prob - (col == target ? 1.f : 0.f)) * g);
        }
        store_pack(d, p, out);
      }
    }
  }
}

// x *= *scale: 16-byte packs over [0, packs·N), then the elements after them one at a time.
template <typename T>
__global__ void __launch_bounds__(kThreads)
ce_scale_kernel(T* __restrict__ x, int64_t packs, int64_t n, const float* __restrict__ scale) {
  constexpr int N = Pack<T>::N;
  const float g = *scale;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = first; p < packs; p += stride) {
    Pack<T> v = load_pack(x, p);
#pragma unroll
    for (int j = 0; j < N; ++j) v.v[j] = from_f32<T>(to_f32(v.v[j]) * g);
    store_pack(x, p, v);
  }
  for (int64_t i = packs * N + first; i < n; i += stride) x[i] = from_f32<T>(to_f32(x[i]) * g);
}

}  // namespace

bool ce_chunk_supported(DType dt, int64_t Vc, int64_t ld) {
  const int64_t N = 16 / static_cast<int64_t>(dtype_size(dt));
  return Vc > 0 && Vc % N == 0 && ld % N == 0 && Vc <= (int64_t{1} << 30);
}

void ce_init(int64_t rows, float* m, float* s, float* zt, cudaStream_t stream) {
  if (rows <= 0) return;
  ce_init_kernel<<<static_cast<unsigned>(ceil_div(rows, 256)), 256, 0, stream>>>(rows, m, s, zt);
  check_launch("ce_init");
}

void ce_chunk_forward(DType dt, const void* logits, int64_t ld, int64_t rows, int64_t Vc, int64_t v0, const int64_t* targets,
                      float* m, float* s, float* zt, cudaStream_t stream) {
  if (!ce_chunk_supported(dt, Vc, ld)) throw std::invalid_argument("ce_chunk_forward: unsupported chunk width");
  if (rows <= 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    ce_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(static_cast<const T*>(logits), ld,
                                                                               static_cast<int>(Vc), v0, targets, m, s, zt);
  });
  check_launch("ce_chunk_forward");
}

void ce_finish(int64_t rows, const int64_t* targets, int64_t ignore_index, const float* m, const float* s, const float* zt,
               float* lse, float* loss, cudaStream_t stream) {
  if (rows <= 0) return;
  ce_finish_kernel<<<static_cast<unsigned>(ceil_div(rows, 256)), 256, 0, stream>>>(rows, targets, ignore_index, m, s, zt, lse, loss);
  check_launch("ce_finish");
}

void ce_chunk_backward(DType dt, const void* logits, int64_t ld, void* dlogits, int64_t ld_out, int64_t rows, int64_t Vc,
                       int64_t v0, const int64_t* targets, int64_t ignore_index, const float* lse, const float* scale,
                       cudaStream_t stream) {
  if (!ce_chunk_supported(dt, Vc, ld) || !ce_chunk_supported(dt, Vc, ld_out))
    throw std::invalid_argument("ce_chunk_backward: unsupported chunk width");
  if (rows <= 0) return;
  const int64_t packs = Vc / (16 / static_cast<int64_t>(dtype_size(dt)));
  // Blocks across a row: each thread ~kUnroll packs. (Measured at the bf16 logits' bandwidth either way:
  // ~3.6 TB/s read + write, sessions 10 and 11.)
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(packs, kThreads * kUnroll), 64)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  FATHOM_DISPATCH_DTYPE(dt, {
    ce_backward_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(logits), ld, static_cast<T*>(dlogits), ld_out,
                                                         static_cast<int>(Vc), v0, rows, targets, ignore_index, lse, scale);
  });
  check_launch("ce_chunk_backward");
}

void ce_scale(DType dt, void* x, int64_t n, const float* scale, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t N = 16 / static_cast<int64_t>(dtype_size(dt));
  const int64_t packs = reinterpret_cast<uintptr_t>(x) % 16 == 0 ? n / N : 0;
  const unsigned grid = elementwise_grid(n, dt, kThreads, 8);
  FATHOM_DISPATCH_DTYPE(dt, { ce_scale_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<T*>(x), packs, n, scale); });
  check_launch("ce_scale");
}

}  // namespace fathom::kernels
