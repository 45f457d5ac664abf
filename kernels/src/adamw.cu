// Multi-tensor fused AdamW (see fathom/kernels/adamw.h), fp32 or mixed precision per tensor. The
// tensors of one launch travel in the kernel's parameters (48 at most: ~3.5 KB of the classic 4 KB
// limit, checked below) with a prefix sum of their
// chunk counts; each block takes chunks of kChunk elements in a grid-stride loop, finds its tensor by
// binary search, and updates four elements per thread per iteration with 16-byte loads where the
// tensor is 16-byte aligned.
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/adamw.h"

namespace fathom::kernels {
namespace {
using namespace detail;

constexpr int kMaxTensors = 48;
constexpr int64_t kChunk = 8192;  // elements per block iteration
constexpr int kThreads = 256;

struct AdamWLaunch {
  AdamWTensor t[kMaxTensors];
  int64_t chunk_end[kMaxTensors];  // inclusive prefix sum of chunks per tensor
  bool vec[kMaxTensors];           // all four pointers 16-byte aligned
  int count;
  AdamWHyper h;
};
static_assert(sizeof(AdamWLaunch) <= 4096, "AdamWLaunch must fit the classic 4 KB of kernel parameters");

// Chunk c of a launch (chunk_end: the inclusive prefix sum of each tensor's chunks): the tensor it
// falls in (binary search: the first whose chunk_end exceeds c), and its first element there.
__device__ __forceinline__ int locate_chunk(const int64_t* chunk_end, int count, int64_t c, int64_t& begin) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (chunk_end[mid] > c) hi = mid;
    else lo = mid + 1;
  }
  begin = (c - (lo == 0 ? 0 : chunk_end[lo - 1])) * kChunk;
  return lo;
}

__device__ __forceinline__ void update(float& p, float g, float& m, float& v, bool decay, const AdamWHyper& h) {
  if (decay) p *= 1.f - h.lr * h.weight_decay;
  m = fmaf(h.beta1, m, (1.f - h.beta1) * g);
  v = fmaf(h.beta2, v, (1.f - h.beta2) * g * g);
  const float denom = sqrtf(v) / h.bias_correction2_sqrt + h.eps;
  p -= h.step_size * m / denom;
}

// bf16 bits ↔ fp32: widening is exact; narrowing rounds to nearest even (as LibTorch's .to(bf16)).
__device__ __forceinline__ float bf16_bits_f32(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
__device__ __forceinline__ uint16_t f32_bf16_bits(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// A tensor's gradients as fp32, from fp32 or (mixed precision, AdamWTensor::g_bf16) bf16 bits.
__device__ __forceinline__ float grad_at(const AdamWTensor& t, int64_t j) {
  return t.g_bf16 ? bf16_bits_f32(t.g_bf16[j]) : t.g[j];
}
// Vector loads and stores, with evict-first ("streaming") cache hints when S: every byte the update
// touches is touched once, so nothing it caches is reused (AdamWHyper::streaming).
template <bool S, typename V>
__device__ __forceinline__ V load_v(const V* p) {
  if constexpr (S) return __ldcs(p);
  else return *p;
}
template <bool S, typename V>
__device__ __forceinline__ void store_v(V* p, const V& v) {
  if constexpr (S) __stcs(p, v);
  else *p = v;
}

template <bool S>
__device__ __forceinline__ float4 grad4_at(const AdamWTensor& t, int64_t i) {
  if (!t.g_bf16) return load_v<S>(reinterpret_cast<const float4*>(t.g + i));
  const uint2 b = load_v<S>(reinterpret_cast<const uint2*>(t.g_bf16 + i));
  return make_float4(bf16_bits_f32(b.x & 0xffffu), bf16_bits_f32(b.x >> 16), bf16_bits_f32(b.y & 0xffffu),
                     bf16_bits_f32(b.y >> 16));
}

// Element j: the update, then the model's bf16 copy where there is one.
__device__ __forceinline__ void update_at(const AdamWTensor& t, int64_t j, float gs, const AdamWHyper& h) {
  update(t.p[j], grad_at(t, j) * gs, t.m[j], t.v[j], t.decay, h);
  if (t.model_bf16) t.model_bf16[j] = f32_bf16_bits(t.p[j]);
}

template <bool S>
__global__ void __launch_bounds__(kThreads) adamw_kernel(const AdamWLaunch L) {
  float gs = L.h.grad_scale;
  if (L.h.grad_scale_dev) {
    gs = *L.h.grad_scale_dev;
    if (!isfinite(gs)) return;  // a non-finite step, found on the device: skipped
  }
  const int64_t chunks = L.chunk_end[L.count - 1];
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int64_t begin;
    const int lo = locate_chunk(L.chunk_end, L.count, c, begin);
    const AdamWTensor& t = L.t[lo];
    const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
    if (!L.vec[lo]) {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) update_at(t, i, gs, L.h);
      continue;
    }
    for (int64_t i = begin + threadIdx.x * 4; i < end; i += kThreads * 4) {
      if (i + 4 > end) {
        for (int64_t j = i; j < end; ++j) update_at(t, j, gs, L.h);
        continue;
      }
      float4 p = load_v<S>(reinterpret_cast<const float4*>(t.p + i));
      const float4 g = grad4_at<S>(t, i);
      float4 m = load_v<S>(reinterpret_cast<const float4*>(t.m + i));
      float4 v = load_v<S>(reinterpret_cast<const float4*>(t.v + i));
      update(p.x, g.x * gs, m.x, v.x, t.decay, L.h);
      update(p.y, g.y * gs, m.y, v.y, t.decay, L.h);
      update(p.z, g.z * gs, m.z, v.z, t.decay, L.h);
      update(p.w, g.w * gs, m.w, v.w, t.decay, L.h);
      store_v<S>(reinterpret_cast<float4*>(t.p + i), p);
      store_v<S>(reinterpret_cast<float4*>(t.m + i), m);
      store_v<S>(reinterpret_cast<float4*>(t.v + i), v);
      if (t.model_bf16) {
        uint2 out;
        out.x = static_cast<uint32_t>(f32_bf16_bits(p.x)) | (static_cast<uint32_t>(f32_bf16_bits(p.y)) << 16);
        out.y = static_cast<uint32_t>(f32_bf16_bits(p.z)) | (static_cast<uint32_t>(f32_bf16_bits(p.w)) << 16);
        store_v<S>(reinterpret_cast<uint2*>(t.model_bf16 + i), out);
      }
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
bool aligned8(const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; }

// Fills launch L (its t, vec, chunk_end and count) with the next non-empty tensors of
// tensors[i, count), kMaxTensors at most, and moves i past every tensor it looked at: one index
// across launches, so that empty tensors, skipped without taking a slot, never make a launch hand
// its last tensors to the next one again. vectorisable(t): t takes the 16-byte path. Returns the
// launch's chunks (0: nothing was left).
template <typename Launch, typename Tensor, typename Vec>
int64_t fill_launch(Launch& L, const Tensor* tensors, int count, int& i, Vec vectorisable) {
  int64_t chunks = 0;
  L.count = 0;
  for (; i < count && L.count < kMaxTensors; ++i) {
    const Tensor& t = tensors[i];
    if (t.n <= 0) continue;
    L.t[L.count] = t;
    L.vec[L.count] = vectorisable(t);
    chunks += ceil_div(t.n, kChunk);
    L.chunk_end[L.count] = chunks;
    ++L.count;
  }
  return chunks;
}

// ---- gradient norm and clip coefficient --------------------------------------------------------------

// Blocks (and partial sums) per launch: enough to fill every multiprocessor (H200, session 10: 256
// blocks read llama-1b's 2.6 GB of bf16 gradients at only 1.6 TB/s).
constexpr int kNormPartials = 1024;

struct NormLaunch {
  NormTensor t[kMaxTensors];
  int64_t chunk_end[kMaxTensors];  // inclusive prefix sum of chunks per tensor
  bool vec[kMaxTensors];           // 16-byte aligned: 16-byte loads
  int count;
};
static_assert(sizeof(NormLaunch) <= 4096, "NormLaunch must fit the classic 4 KB of kernel parameters");

__device__ __forceinline__ float sq_at(const NormTensor& t, int64_t j) {
  const float v = t.bf16 ? bf16_bits_f32(static_cast<const uint16_t*>(t.p)[j]) : static_cast<const float*>(t.p)[j];
  return v * v;
}

// Block b: Σ g² over the chunks b, b + grid, ... of the launch's tensors, into partial[b].
__global__ void __launch_bounds__(kThreads) sumsq_kernel(const NormLaunch L, float* __restrict__ partial) {
  const int64_t chunks = L.chunk_end[L.count - 1];
  float acc = 0.f;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int64_t begin;
    const int lo = locate_chunk(L.chunk_end, L.count, c, begin);
    const NormTensor& t = L.t[lo];
    const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
    const int per = t.bf16 ? 8 : 4;  // elements per 16-byte load
    if (!L.vec[lo]) {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) acc += sq_at(t, i);
      continue;
    }
    // Two 16-byte loads in flight per thread: packs i and i + kThreads·per.
    constexpr int kUnrollLoads = 2;
    for (int64_t i = begin + threadIdx.x * per; i < end; i += kThreads * per * kUnrollLoads) {
      uint4 raw[kUnrollLoads];
      bool whole[kUnrollLoads];
#pragma unroll
      for (int u = 0; u < kUnrollLoads; ++u) {
        const int64_t at = i + static_cast<int64_t>(u) * kThreads * per;
        whole[u] = at + per <= end;
        if (whole[u]) raw[u] = *reinterpret_cast<const uint4*>(static_cast<const char*>(t.p) + at * (t.bf16 ? 2 : 4));
        else
          for (int64_t j = at; j < end; ++j) acc += sq_at(t, j);  // the chunk's tail (none past it)
      }
#pragma unroll
      for (int u = 0; u < kUnrollLoads; ++u) {
        if (!whole[u]) continue;
        const uint32_t w[4] = {raw[u].x, raw[u].y, raw[u].z, raw[u].w};
        if (t.bf16) {
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float lo16 = bf16_bits_f32(w[k] & 0xffffu), hi16 = bf16_bits_f32(w[k] >> 16);
            acc = fmaf(lo16, lo16, acc);
            acc = fmaf(hi16, hi16, acc);
          }
        } else {
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float f = __uint_as_float(w[k]);
            acc = fmaf(f, f, acc);
          }
        }
      }
    }
  }
  acc = warp_sum(acc);
  __shared__ float warps[kThreads / 32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) warps[w] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int i = 0; i < kThreads / 32; ++i) t += warps[i];
    partial[blockIdx.x] = t;
  }
}

// One block: the partial sums (in double, fixed order) → norm and coefficient.
__global__ void __launch_bounds__(kThreads) clip_finish_kernel(const float* __restrict__ partial, int64_t n, float max_norm,
                                                               const float* __restrict__ loss, float* __restrict__ out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) acc += static_cast<double>(partial[i]);
  __shared__ double sums[kThreads];
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sums[threadIdx.x] += sums[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const double norm = sqrt(sums[0]);
  const bool finite = isfinite(norm) && (loss == nullptr || isfinite(*loss));
  double coef = 1.0;
  if (max_norm > 0.f) coef = fmin(1.0, static_cast<double>(max_norm) / (norm + 1e-6));
  out[0] = static_cast<float>(norm);
  out[1] = finite ? static_cast<float>(coef) : __int_as_float(0x7fc00000);  // quiet NaN: the update skips
}

}  // namespace

int64_t grad_norm_clip_workspace(int count) {
  return static_cast<int64_t>(std::max(1, (count + kMaxTensors - 1) / kMaxTensors)) * kNormPartials;
}

void grad_norm_clip(const NormTensor* tensors, int count, float* workspace, float max_norm, const float* loss, float* out,
                    cudaStream_t stream) {
  // Each launch writes all its kNormPartials partials (zeros where it has no chunks), so the finish
  // reads a fully written workspace of launches · kNormPartials floats (none: a norm of 0).
  int64_t launches = 0;
  for (int i = 0; i < count;) {
    NormLaunch L{};
    if (fill_launch(L, tensors, count, i, [](const NormTensor& t) { return aligned16(t.p); }) == 0) continue;
    sumsq_kernel<<<kNormPartials, kThreads, 0, stream>>>(L, workspace + launches * kNormPartials);
    check_launch("grad_norm_clip");
    ++launches;
  }
  clip_finish_kernel<<<1, kThreads, 0, stream>>>(workspace, launches * kNormPartials, max_norm, loss, out);
  check_launch("grad_norm_clip finish");
}

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h, cudaStream_t stream) {
  const int blocks_cap = sm_count() * 8;
  for (int i = 0; i < count;) {
    AdamWLaunch L{};
    L.h = h;
    const int64_t chunks = fill_launch(L, tensors, count, i, [](const AdamWTensor& t) {
      return aligned16(t.p) && aligned16(t.m) && aligned16(t.v) &&
             (t.g_bf16 ? aligned8(t.g_bf16) && aligned8(t.model_bf16) : aligned16(t.g));
    });
    if (chunks == 0) continue;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(chunks, blocks_cap));
    if (h.streaming) adamw_kernel<true><<<grid, kThreads, 0, stream>>>(L);
    else adamw_kernel<false><<<grid, kThreads, 0, stream>>>(L);
    check_launch("adamw_step");
  }
}

}  // namespace fathom::kernels
