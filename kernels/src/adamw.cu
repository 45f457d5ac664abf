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
__device__ __forceinline__ float4 grad4_at(const AdamWTensor& t, int64_t i) {
  if (!t.g_bf16) return *reinterpret_cast<const float4*>(t.g + i);
  const uint2 b = *reinterpret_cast<const uint2*>(t.g_bf16 + i);
  return make_float4(bf16_bits_f32(b.x & 0xffffu), bf16_bits_f32(b.x >> 16), bf16_bits_f32(b.y & 0xffffu),
                     bf16_bits_f32(b.y >> 16));
}

// Element j: the update, then the model's bf16 copy where there is one.
__device__ __forceinline__ void update_at(const AdamWTensor& t, int64_t j, const AdamWHyper& h) {
  update(t.p[j], grad_at(t, j) * h.grad_scale, t.m[j], t.v[j], t.decay, h);
  if (t.model_bf16) t.model_bf16[j] = f32_bf16_bits(t.p[j]);
}

__global__ void __launch_bounds__(kThreads) adamw_kernel(const AdamWLaunch L) {
  const int64_t chunks = L.chunk_end[L.count - 1];
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int lo = 0, hi = L.count - 1;  // first tensor whose chunk_end > c
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (L.chunk_end[mid] > c) hi = mid;
      else lo = mid + 1;
    }
    const AdamWTensor& t = L.t[lo];
    const int64_t first = lo == 0 ? 0 : L.chunk_end[lo - 1];
    const int64_t begin = (c - first) * kChunk;
    const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
    if (!L.vec[lo]) {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) update_at(t, i, L.h);
      continue;
    }
    for (int64_t i = begin + threadIdx.x * 4; i < end; i += kThreads * 4) {
      if (i + 4 > end) {
        for (int64_t j = i; j < end; ++j) update_at(t, j, L.h);
        continue;
      }
      float4 p = *reinterpret_cast<float4*>(t.p + i);
      const float4 g = grad4_at(t, i);
      float4 m = *reinterpret_cast<float4*>(t.m + i);
      float4 v = *reinterpret_cast<float4*>(t.v + i);
      update(p.x, g.x * L.h.grad_scale, m.x, v.x, t.decay, L.h);
      update(p.y, g.y * L.h.grad_scale, m.y, v.y, t.decay, L.h);
      update(p.z, g.z * L.h.grad_scale, m.z, v.z, t.decay, L.h);
      update(p.w, g.w * L.h.grad_scale, m.w, v.w, t.decay, L.h);
      *reinterpret_cast<float4*>(t.p + i) = p;
      *reinterpret_cast<float4*>(t.m + i) = m;
      *reinterpret_cast<float4*>(t.v + i) = v;
      if (t.model_bf16) {
        uint2 out;
        out.x = static_cast<uint32_t>(f32_bf16_bits(p.x)) | (static_cast<uint32_t>(f32_bf16_bits(p.y)) << 16);
        out.y = static_cast<uint32_t>(f32_bf16_bits(p.z)) | (static_cast<uint32_t>(f32_bf16_bits(p.w)) << 16);
        *reinterpret_cast<uint2*>(t.model_bf16 + i) = out;
      }
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
bool aligned8(const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; }

}  // namespace

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h, cudaStream_t stream) {
  const int blocks_cap = sm_count() * 8;
  // One index across launches: empty tensors are skipped without taking a slot, so a launch that
  // skipped some must not hand its last tensors to the next launch again.
  int i = 0;
  while (i < count) {
    AdamWLaunch L{};
    L.h = h;
    int64_t chunks = 0;
    L.count = 0;
    for (; i < count && L.count < kMaxTensors; ++i) {
      const AdamWTensor& t = tensors[i];
      if (t.n <= 0) continue;
      L.t[L.count] = t;
      L.vec[L.count] = aligned16(t.p) && aligned16(t.m) && aligned16(t.v) &&
                       (t.g_bf16 ? aligned8(t.g_bf16) && aligned8(t.model_bf16) : aligned16(t.g));
      chunks += ceil_div(t.n, kChunk);
      L.chunk_end[L.count] = chunks;
      ++L.count;
    }
    if (L.count == 0) continue;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(chunks, blocks_cap));
    adamw_kernel<<<grid, kThreads, 0, stream>>>(L);
    check_launch("adamw_step");
  }
}

}  // namespace fathom::kernels
