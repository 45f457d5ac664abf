// MoE dispatch and combine gathers (see fathom/kernels/moe.h). One block per output row
// (grid-stride), its threads over the row's 16-byte packs; a scalar kernel when rows are not
// whole packs. The weight gradient: one warp per assignment, a dot product of two rows.
// Memory bound: each kernel reads its inputs once and writes its output once.
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/moe.h"

namespace fathom::kernels {
namespace {
using namespace detail;

template <typename T, bool kVec>
__global__ void gather_rows_kernel(const T* __restrict__ x, const int64_t* __restrict__ src,
                                   const float* __restrict__ scale, T* __restrict__ out, int64_t rows, int64_t cols) {
  constexpr int N = Pack<T>::N;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* in = x + src[r] * cols;
    T* o = out + r * cols;
    const float s = scale ? scale[r] : 1.f;
    if constexpr (kVec) {
      const int64_t packs = cols / N;
      for (int64_t c = threadIdx.x; c < packs; c += blockDim.x) {
        Pack<T> p = load_pack(in, c);
        if (scale) {
#pragma unroll
          for (int j = 0; j < N; ++j) p.v[j] = from_f32<T>(s * to_f32(p.v[j]));
        }
        store_pack(o, c, p);
      }
    } else {
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = scale ? from_f32<T>(s * to_f32(in[c])) : in[c];
    }
  }
}

template <typename T, bool kVec>
__global__ void combine_rows_kernel(const T* __restrict__ y, const int64_t* __restrict__ pos, const float* __restrict__ w,
                                    T* __restrict__ out, int64_t tokens, int64_t k, int64_t cols) {
  constexpr int N = kVec ? Pack<T>::N : 1;
  const int64_t units = cols / N;  // packs (kVec) or elements
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int64_t* pt = pos + t * k;
    const float* wt = w ? w + t * k : nullptr;
    T* o = out + t * cols;
    for (int64_t c = threadIdx.x; c < units; c += blockDim.x) {
      float acc[N];
#pragma unroll
      for (int j = 0; j < N; ++j) acc[j] = 0.f;
      for (int64_t i = 0; i < k; ++i) {
        const int64_t p = pt[i];
        if (p < 0) continue;
        const float wi = wt ? wt[i] : 1.f;
        if constexpr (kVec) {
          const Pack<T> v = load_pack(y + p * cols, c);
#pragma unroll
          for (int j = 0; j < N; ++j) acc[j] += wi * to_f32(v.v[j]);
        } else {
          acc[0] += wi * to_f32(y[p * cols + c]);
        }
      }
      if constexpr (kVec) {
        Pack<T> r;
#pragma unroll
        for (int j = 0; j < N; ++j) r.v[j] = from_f32<T>(acc[j]);
        store_pack(o, c, r);
      } else {
        o[c] = from_f32<T>(acc[0]);
      }
    }
  }
}

template <typename T, bool kVec>
__global__ void combine_weight_grad_kernel(const T* __restrict__ dout, const T* __restrict__ y,
                                           const int64_t* __restrict__ pos, float* __restrict__ dw, int64_t tokens,
                                           int64_t k, int64_t cols) {
  constexpr int N = kVec ? Pack<T>::N : 1;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t units = cols / N;
  for (int64_t a = blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); a < tokens * k; a += warps) {
    const int64_t p = pos[a];
    float acc = 0.f;
    if (p >= 0) {
      const T* d = dout + (a / k) * cols;
      const T* yr = y + p * cols;
      for (int64_t c = lane; c < units; c += 32) {
        if constexpr (kVec) {
          const Pack<T> u = load_pack(d, c), v = load_pack(yr, c);
#pragma unroll
          for (int j = 0; j < N; ++j) acc += to_f32(u.v[j]) * to_f32(v.v[j]);
        } else {
          acc += to_f32(d[c]) * to_f32(yr[c]);
        }
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) dw[a] = acc;
  }
}

// How a row is walked: in 16-byte packs when it is whole packs and every row base is 16-byte
// aligned (vec), else element by element; units = packs or elements per row.
struct RowWalk {
  bool vec;
  int64_t units;
};
RowWalk row_walk(DType dt, int64_t cols, std::initializer_list<const void*> ptrs) {
  const int64_t per = 16 / static_cast<int64_t>(dtype_size(dt));
  bool vec = cols % per == 0;
  for (const void* p : ptrs) vec = vec && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  return {vec, vec ? cols / per : cols};
}

// Threads per block: the row's work units rounded up to whole warps, 32 to 256.
unsigned row_threads(int64_t units) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(units, 32) * 32, 32, 256));
}

unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, static_cast<int64_t>(sm_count()) * 32)));
}

}  // namespace

void moe_gather_rows(DType dt, const void* x, const int64_t* src, const float* scale, void* out, int64_t rows,
                     int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const RowWalk walk = row_walk(dt, cols, {x, out});
  FATHOM_DISPATCH_DTYPE(dt, {
    auto kernel = walk.vec ? gather_rows_kernel<T, true> : gather_rows_kernel<T, false>;
    kernel<<<row_grid(rows), row_threads(walk.units), 0, stream>>>(static_cast<const T*>(x), src, scale,
                                                                    static_cast<T*>(out), rows, cols);
  });
  check_launch("moe_gather_rows");
}

void moe_combine_rows(DType dt, const void* y, const int64_t* pos, const float* w, void* out, int64_t tokens, int64_t k,
                      int64_t cols, cudaStream_t stream) {
  if (tokens <= 0 || cols <= 0) return;
  const RowWalk walk = row_walk(dt, cols, {y, out});
  FATHOM_DISPATCH_DTYPE(dt, {
    auto kernel = walk.vec ? combine_rows_kernel<T, true> : combine_rows_kernel<T, false>;
    kernel<<<row_grid(tokens), row_threads(walk.units), 0, stream>>>(static_cast<const T*>(y), pos, w,
                                                                      static_cast<T*>(out), tokens, k, cols);
  });
  check_launch("moe_combine_rows");
}

void moe_combine_weight_grad(DType dt, const void* dout, const void* y, const int64_t* pos, float* dw, int64_t tokens,
                             int64_t k, int64_t cols, cudaStream_t stream) {
  if (tokens <= 0 || k <= 0) return;
  const bool vec = row_walk(dt, cols, {dout, y}).vec;
  constexpr int kThreads = 256;  // 8 warps, one assignment each
  const int64_t blocks = std::min<int64_t>(ceil_div(tokens * k, kThreads / 32), static_cast<int64_t>(sm_count()) * 16);
  FATHOM_DISPATCH_DTYPE(dt, {
    auto kernel = vec ? combine_weight_grad_kernel<T, true> : combine_weight_grad_kernel<T, false>;
    kernel<<<static_cast<unsigned>(std::max<int64_t>(1, blocks)), kThreads, 0, stream>>>(
        static_cast<const T*>(dout), static_cast<const T*>(y), pos, dw, tokens, k, cols);
  });
  check_launch("moe_combine_weight_grad");
}

}  // namespace fathom::kernels
