// Fused residual add + RMSNorm forward and backward (see fathom/kernels/rmsnorm.h).
// Design: a persistent grid of blocks, one row at a time per block. Thread t owns the 16-byte
// packs t, t + blockDim, ... (at most MAXC of them) of every row, so the weight is loaded once per
// block and kept in registers, the row is read once, and in the backward each thread accumulates
// its columns' dw across all the block's rows in registers (fp32). The blocks' dw partials are
// then summed by a second kernel in a fixed order: deterministic, no atomics.
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/rmsnorm.h"

namespace fathom::kernels {
namespace {
using namespace detail;

constexpr int kMaxThreads = 256;
constexpr int kMaxPacks = 4;  // per thread

struct Shape {
  int threads = 0;  // multiple of 32
  int maxc = 0;     // packs per thread: 1, 2 or 4
};

Shape shape_for(DType dt, int64_t C) {
  const int64_t N = 16 / static_cast<int64_t>(dtype_size(dt));
  Shape s;
  if (C <= 0 || C % N != 0) return s;
  const int64_t packs = C / N;
  if (packs > int64_t{kMaxThreads} * kMaxPacks) return s;
  const int64_t threads = std::min<int64_t>(kMaxThreads, ceil_div(packs, 32) * 32);
  const int64_t per = ceil_div(packs, threads);
  s.threads = static_cast<int>(threads);
  s.maxc = per <= 1 ? 1 : per <= 2 ? 2 : 4;
  return s;
}

template <typename T, int MAXC>
__global__ void __launch_bounds__(kMaxThreads)
add_rmsnorm_fwd_kernel(const T* __restrict__ x, const T* __restrict__ r, const T* __restrict__ w, T* __restrict__ y,
                       T* __restrict__ h_out, float* __restrict__ rstd, int64_t rows, int C, float eps) {
  constexpr int N = Pack<T>::N;
  const int packs = C / N;
  // A programmatic dependent launch (device_util.cuh): the norm's weight is read while the kernel
  // before finishes; x and r (its output) only after pdl_wait().
  pdl_launch_dependents();
  float wv[MAXC][N];
#pragma unroll
  for (int k = 0; k < MAXC; ++k) {
    const int p = threadIdx.x + k * blockDim.x;
    if (p < packs) {
      const Pack<T> pw = load_pack(w, p);
#pragma unroll
      for (int j = 0; j < N; ++j) wv[k][j] = to_f32(pw.v[j]);
    }
  }
  pdl_wait();
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * static_cast<int64_t>(packs);
    float hv[MAXC][N];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < MAXC; ++k) {
      const int p = threadIdx.x + k * blockDim.x;
      if (p < packs) {
        const Pack<T> px = load_pack(x, base + p);
        if (r != nullptr) {
          const Pack<T> pr = load_pack(r, base + p);
          Pack<T> ph;
#pragma unroll
          for (int j = 0; j < N; ++j) {
            ph.v[j] = from_f32<T>(to_f32(px.v[j]) + to_f32(pr.v[j]));  // rounded like the unfused add
            hv[k][j] = to_f32(ph.v[j]);
          }
          store_pack(h_out, base + p, ph);
        } else {
#pragma unroll
          for (int j = 0; j < N; ++j) hv[k][j] = to_f32(px.v[j]);
        }
#pragma unroll
        for (int j = 0; j < N; ++j) ss += hv[k][j] * hv[k][j];
      }
    }
    ss = block_sum(ss);
    const float rs = rsqrtf(ss / static_cast<float>(C) + eps);
    if (rstd != nullptr && threadIdx.x == 0) rstd[row] = rs;
#pragma unroll
    for (int k = 0; k < MAXC; ++k) {
      const int p = threadIdx.x + k * blockDim.x;
      if (p < packs) {
        Pack<T> py;
#pragma unroll
        for (int j = 0; j < N; ++j) py.v[j] = from_f32<T>((hv[k][j] * rs) * wv[k][j]);
        store_pack(y, base + p, py);
      }
    }
  }
}

template <typename T, int MAXC>
__global__ void __launch_bounds__(kMaxThreads)
rmsnorm_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ h, const T* __restrict__ w, const float* __restrict__ rstd,
                   const T* __restrict__ dh_in, T* __restrict__ dh, float* __restrict__ partial, int64_t rows, int C) {
  constexpr int N = Pack<T>::N;
  const int packs = C / N;
  float wv[MAXC][N], dw[MAXC][N];
#pragma unroll
  for (int k = 0; k < MAXC; ++k) {
    const int p = threadIdx.x + k * blockDim.x;
#pragma unroll
    for (int j = 0; j < N; ++j) dw[k][j] = 0.f;
    if (p < packs) {
      const Pack<T> pw = load_pack(w, p);
#pragma unroll
      for (int j = 0; j < N; ++j) wv[k][j] = to_f32(pw.v[j]);
    }
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * static_cast<int64_t>(packs);
    const float rs = rstd[row];
    float n[MAXC][N], dn[MAXC][N];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < MAXC; ++k) {
      const int p = threadIdx.x + k * blockDim.x;
      if (p < packs) {
        const Pack<T> pdy = load_pack(dy, base + p);
        const Pack<T> ph = load_pack(h, base + p);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float g = to_f32(pdy.v[j]);
          n[k][j] = to_f32(ph.v[j]) * rs;
          dn[k][j] = g * wv[k][j];
          dot += dn[k][j] * n[k][j];
          dw[k][j] += g * n[k][j];
        }
      }
    }
    const float mean = block_sum(dot) / static_cast<float>(C);
#pragma unroll
    for (int k = 0; k < MAXC; ++k) {
      const int p = threadIdx.x + k * blockDim.x;
      if (p < packs) {
        Pack<T> out;
        if (dh_in != nullptr) {
          const Pack<T> pin = load_pack(dh_in, base + p);
#pragma unroll
          for (int j = 0; j < N; ++j) out.v[j] = from_f32<T>(rs * (dn[k][j] - n[k][j] * mean) + to_f32(pin.v[j]));
        } else {
#pragma unroll
          for (int j = 0; j < N; ++j) out.v[j] = from_f32<T>(rs * (dn[k][j] - n[k][j] * mean));
        }
        store_pack(dh, base + p, out);
      }
    }
  }
  // This block's dw partial: row blockIdx.x of (grid, C).
#pragma unroll
  for (int k = 0; k < MAXC; ++k) {
    const int p = threadIdx.x + k * blockDim.x;
    if (p < packs) {
      float* dst = partial + static_cast<int64_t>(blockIdx.x) * C + static_cast<int64_t>(p) * N;
#pragma unroll
      for (int j = 0; j < N; ++j) dst[j] = dw[k][j];
    }
  }
}

// dw[c] = Σ_g partial[g][c], a (32 columns × 16 row-groups) tile per block, fixed order.
template <typename T>
__global__ void column_sum_kernel(const float* __restrict__ partial, int grid_rows, int C, T* __restrict__ dw) {
  __shared__ float tile[16][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.f;
  if (c < C)
    for (int g = threadIdx.y; g < grid_rows; g += 16) s += partial[static_cast<int64_t>(g) * C + c];
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < 16; ++i) t += tile[i][threadIdx.x];
    dw[c] = from_f32<T>(t);
  }
}

template <typename T, int MAXC>
int backward_grid(int64_t rows, int threads) {
  const int64_t g = static_cast<int64_t>(sm_count()) * blocks_per_sm<rmsnorm_bwd_kernel<T, MAXC>>(threads);
  return static_cast<int>(std::max<int64_t>(1, std::min(rows, g)));
}

template <typename T>
int backward_grid_for(int maxc, int64_t rows, int threads) {
  switch (maxc) {
    case 1: return backward_grid<T, 1>(rows, threads);
    case 2: return backward_grid<T, 2>(rows, threads);
    default: return backward_grid<T, 4>(rows, threads);
  }
}

template <typename T, int MAXC>
void launch_forward(const void* x, const void* r, const void* w, void* y, void* h_out, float* rstd, int64_t rows, int C,
                    float eps, int threads, cudaStream_t stream) {
  const int64_t per_sm = blocks_per_sm<add_rmsnorm_fwd_kernel<T, MAXC>>(threads);
  const int64_t grid = std::max<int64_t>(1, std::min(rows, static_cast<int64_t>(sm_count()) * per_sm));
  launch_pdl(add_rmsnorm_fwd_kernel<T, MAXC>, dim3(static_cast<unsigned>(grid)), dim3(threads), stream, static_cast<const T*>(x),
             static_cast<const T*>(r), static_cast<const T*>(w), static_cast<T*>(y), static_cast<T*>(h_out), rstd, rows, C, eps);
}

template <typename T, int MAXC>
void launch_backward(const void* dy, const void* h, const void* w, const float* rstd, const void* dh_in, void* dh, void* dw,
                     float* ws, int64_t rows, int C, int threads, cudaStream_t stream) {
  const int grid = backward_grid<T, MAXC>(rows, threads);
  rmsnorm_bwd_kernel<T, MAXC><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(h), static_cast<const T*>(w), rstd, static_cast<const T*>(dh_in),
      static_cast<T*>(dh), ws, rows, C);
  check_launch("rmsnorm_backward");
  column_sum_kernel<T><<<static_cast<unsigned>(ceil_div(C, 32)), dim3(32, 16), 0, stream>>>(ws, grid, C, static_cast<T*>(dw));
}

}  // namespace

bool rmsnorm_supported(DType dt, int64_t C) { return shape_for(dt, C).threads > 0; }

void add_rmsnorm_forward(DType dt, const void* x, const void* r, const void* w, void* y, void* h_out, float* rstd,
                         int64_t rows, int64_t C, float eps, cudaStream_t stream) {
  const Shape s = shape_for(dt, C);
  if (s.threads == 0) throw std::invalid_argument("add_rmsnorm_forward: unsupported width C=" + std::to_string(C));
  if (rows <= 0) return;
  if (r != nullptr && h_out == nullptr) throw std::invalid_argument("add_rmsnorm_forward: r given without h_out");
  const int c = static_cast<int>(C);
  FATHOM_DISPATCH_DTYPE(dt, {
    switch (s.maxc) {
      case 1: launch_forward<T, 1>(x, r, w, y, h_out, rstd, rows, c, eps, s.threads, stream); break;
      case 2: launch_forward<T, 2>(x, r, w, y, h_out, rstd, rows, c, eps, s.threads, stream); break;
      default: launch_forward<T, 4>(x, r, w, y, h_out, rstd, rows, c, eps, s.threads, stream); break;
    }
  });
  check_launch("add_rmsnorm_forward");
}

size_t rmsnorm_backward_workspace_bytes(DType dt, int64_t rows, int64_t C) {
  const Shape s = shape_for(dt, C);
  if (s.threads == 0 || rows <= 0) return 0;
  int grid = 1;
  FATHOM_DISPATCH_DTYPE(dt, { grid = backward_grid_for<T>(s.maxc, rows, s.threads); });
  return static_cast<size_t>(grid) * static_cast<size_t>(C) * sizeof(float);
}

void rmsnorm_backward(DType dt, const void* dy, const void* h, const void* w, const float* rstd, const void* dh_in, void* dh,
                      void* dw, float* workspace, int64_t rows, int64_t C, cudaStream_t stream) {
  const Shape s = shape_for(dt, C);
  if (s.threads == 0) throw std::invalid_argument("rmsnorm_backward: unsupported width C=" + std::to_string(C));
  const int c = static_cast<int>(C);
  if (rows <= 0) {
    cudaMemsetAsync(dw, 0, static_cast<size_t>(C) * dtype_size(dt), stream);
    return;
  }
  FATHOM_DISPATCH_DTYPE(dt, {
    switch (s.maxc) {
      case 1: launch_backward<T, 1>(dy, h, w, rstd, dh_in, dh, dw, workspace, rows, c, s.threads, stream); break;
      case 2: launch_backward<T, 2>(dy, h, w, rstd, dh_in, dh, dw, workspace, rows, c, s.threads, stream); break;
      default: launch_backward<T, 4>(dy, h, w, rstd, dh_in, dh, dw, workspace, rows, c, s.threads, stream); break;
    }
  });
  check_launch("rmsnorm_backward (dw sum)");
}

}  // namespace fathom::kernels
