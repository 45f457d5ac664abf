// Decode-step kernels (see fathom/kernels/decode.h).
//
// gemv: one warp per output row (per gate/up pair with swiglu), or 2-8 warps splitting K when the
// rows are few (a 2,048-row layer is 2,048 warps: too few loads in flight for HBM). Each lane
// streams 16-byte weight loads, kUnroll of them issued before any arithmetic, and reads the matching
// activations of every batch row from L1/L2 (x is a few KB shared by all warps). The warp reduces
// its fp32 sums; lane 0 applies scale, bias and SwiGLU and writes. Weights are read with
// cache-streaming loads: they are touched once per step and should not evict x.
//
// decode_attention: one block of 128 threads per (row, query head), and per stretch of 256 keys
// when the cache is longer (flash-decoding: a second launch merges the stretches). Keys are taken
// 128 at a time, one per thread (its score), with the online softmax of flash attention across
// chunks; the weighted sum of values is spread over the threads by dimension. The key count comes
// from the row's position on the device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <limits>
#include <stdexcept>

#include "device_util.cuh"
#include "fathom/kernels/decode.h"

namespace fathom::kernels {
namespace {
using namespace detail;

// ---- gemv -----------------------------------------------------------------------------------------

constexpr int kWarps = 8;   // warps (rows) per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane and row

__device__ __forceinline__ float w_to_f32(float v) { return v; }
__device__ __forceinline__ float w_to_f32(f16 v) { return __half2float(v); }
__device__ __forceinline__ float w_to_f32(bf16 v) { return __bfloat162float(v); }

// 16 int8 weights → fp32 without I2F (a quarter-rate instruction on Hopper, which would bound the
// int8 gemv below copy speed): each byte, offset to unsigned, becomes the low mantissa byte of
// 2^23 (one PRMT), and one FADD takes 2^23 + 128 off again. Exact for every int8.
__device__ __forceinline__ void unpack_int8(const int4& v, float (&out)[16]) {
  const uint32_t words[4] = {static_cast<uint32_t>(v.x) ^ 0x80808080u, static_cast<uint32_t>(v.y) ^ 0x80808080u,
                             static_cast<uint32_t>(v.z) ^ 0x80808080u, static_cast<uint32_t>(v.w) ^ 0x80808080u};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      out[i * 4 + j] = __uint_as_float(__byte_perm(words[i], 0x4B000000u, 0x7540u | j)) - 8388736.f;
}

struct GemvParams {
  GemvArgs a;
  int64_t y_stride;  // columns of y
  int ksplit;        // warps sharing one row, each over every ksplit-th stretch of K (1, 2, 4 or 8)
};

template <typename T, typename W, int BATCH, bool SWIGLU>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const GemvParams p) {
  constexpr int EW = 16 / sizeof(W);  // weights per 16-byte load
  constexpr int PN = Pack<T>::N;      // activations per 16-byte pack
  constexpr int XP = EW / PN;         // activation packs per weight load
  constexpr int R = SWIGLU ? 2 : 1;   // weight rows per warp
  constexpr bool kInt8 = sizeof(W) == 1;
  __shared__ float partial[kWarps][R][BATCH];
  const GemvArgs& a = p.a;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int ks = p.ksplit, part = warp % ks;
  // Row in the segments' concatenation; the ks warps of a row split K between them.
  const int64_t g = static_cast<int64_t>(blockIdx.x) * (kWarps / ks) + warp / ks;
  const int64_t K = a.K;
  const int B = static_cast<int>(a.B);

  // Which segment row g falls in (unrolled: the parameter struct stays in constant memory).
  int64_t n = g;
  int s = -1;
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    if (s < 0 && i < (SWIGLU ? 1 : a.segments)) {
      if (n < a.seg[i].rows) s = i;
      else n -= a.seg[i].rows;
    }
  }
  const bool valid = s >= 0;  // warps past the last row still meet the block's barrier below
  const GemvSegment& sg = s <= 0 ? a.seg[0] : (s == 1 ? a.seg[1] : a.seg[2]);
  const W* wr[R];
  wr[0] = static_cast<const W*>(sg.w) + n * K;
  if constexpr (SWIGLU) wr[R - 1] = static_cast<const W*>(a.seg[1].w) + n * K;
  const T* x = static_cast<const T*>(a.x);
  const int64_t lanes = 32 * static_cast<int64_t>(ks);  // lanes sharing the row
  const int64_t vlane = static_cast<int64_t>(part) * 32 + lane;

  // Launched early (programmatic dependent launch): pull this block's weight rows into L2 while the
  // kernel before it finishes, then wait for it (x is its output).
  pdl_launch_dependents();
  if (valid)
#pragma unroll
    for (int r = 0; r < R; ++r) prefetch_l2(wr[r], K * static_cast<int64_t>(sizeof(W)), static_cast<int>(vlane), static_cast<int>(lanes));
  pdl_wait();

  float acc[R][BATCH];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < BATCH; ++b) acc[r][b] = 0.f;

  for (int64_t k0 = valid ? vlane * EW : K; k0 < K; k0 += lanes * EW * kUnroll) {
    int4 wv[R][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * lanes * EW;
#pragma unroll
      for (int r = 0; r < R; ++r)
        wv[r][u] = k < K ? __ldcs(reinterpret_cast<const int4*>(wr[r] + k)) : make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + u * lanes * EW;
      if (k < K) {
        float wf[R][EW];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if constexpr (kInt8) {
            unpack_int8(wv[r][u], wf[r]);
          } else {
            const W* wp = reinterpret_cast<const W*>(&wv[r][u]);
#pragma unroll
            for (int j = 0; j < EW; ++j) wf[r][j] = w_to_f32(wp[j]);
          }
        }
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
          if (b < B) {
            const T* xr = x + b * K + k;
#pragma unroll
            for (int xp = 0; xp < XP; ++xp) {
              const Pack<T> px = load_pack(xr, xp);
#pragma unroll
              for (int j = 0; j < PN; ++j) {
                const float xv = to_f32(px.v[j]);
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][b] = fmaf(xv, wf[r][xp * PN + j], acc[r][b]);
              }
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < BATCH; ++b) acc[r][b] = warp_sum(acc[r][b]);
  if (ks > 1) {
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) partial[warp][r][b] = acc[r][b];
    __syncthreads();
    if (part != 0) return;
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
          float t = 0.f;
          for (int i = 0; i < ks; ++i) t += partial[warp + i][r][b];
          acc[r][b] = t;
        }
  }
  if (lane != 0 || !valid) return;
  T* y = static_cast<T*>(a.y);
  const GemvSegment& s1 = a.seg[1];
#pragma unroll
  for (int b = 0; b < BATCH; ++b) {
    if (b >= B) break;
    float v0 = acc[0][b];
    if (kInt8) v0 *= to_f32(static_cast<const T*>(sg.scale)[n]);
    if (sg.bias) v0 += to_f32(static_cast<const T*>(sg.bias)[n]);
    if (!SWIGLU && a.residual) v0 += to_f32(static_cast<const T*>(a.residual)[b * p.y_stride + g]);
    if constexpr (SWIGLU) {
      float v1 = acc[R - 1][b];
      if (kInt8) v1 *= to_f32(static_cast<const T*>(s1.scale)[n]);
      if (s1.bias) v1 += to_f32(static_cast<const T*>(s1.bias)[n]);
      y[b * p.y_stride + n] = from_f32<T>(v0 / (1.f + __expf(-v0)) * v1);
    } else {
      y[b * p.y_stride + g] = from_f32<T>(v0);
    }
  }
}

// When a row's K is split over warps: while the rows give fewer than `warps` warps, and each lane
// keeps at least `loads` 16-byte weight loads. FATHOM_GEMV_SPLIT="warps,loads" overrides the
// defaults for measurements (read once).
struct GemvSplit {
  int64_t warps = 16384;
  int64_t loads = 2 * kUnroll;
};
const GemvSplit& gemv_split() {
  static const GemvSplit s = [] {
    GemvSplit g;
    if (const char* e = std::getenv("FATHOM_GEMV_SPLIT")) {
      long long w = 0, l = 0;
      if (std::sscanf(e, "%lld,%lld", &w, &l) == 2 && w > 0 && l > 0) {
        g.warps = w;
        g.loads = l;
      }
    }
    return g;
  }();
  return s;
}

template <typename T, typename W, bool SWIGLU>
void launch_gemv(GemvParams p, int64_t rows, cudaStream_t stream) {
  // Enough warps in flight for HBM: split K over up to 8 warps a row while the rows alone give
  // fewer than ~16K warps (a 2,048-row layer gives 2,048) and each lane keeps ≥ 2 rounds of loads.
  constexpr int64_t EW = 16 / sizeof(W);
  const GemvSplit& split = gemv_split();
  int ks = 1;
  while (ks < kWarps && rows * ks < split.warps && p.a.K >= 32 * EW * ks * split.loads) ks *= 2;
  p.ksplit = ks;
  const unsigned grid = static_cast<unsigned>(ceil_div(rows, kWarps / ks));
  const int B = static_cast<int>(p.a.B);
  const dim3 block(kWarps * 32);
  if (B <= 1) launch_pdl(gemv_kernel<T, W, 1, SWIGLU>, dim3(grid), block, stream, p);
  else if (B <= 2) launch_pdl(gemv_kernel<T, W, 2, SWIGLU>, dim3(grid), block, stream, p);
  else if (B <= 4) launch_pdl(gemv_kernel<T, W, 4, SWIGLU>, dim3(grid), block, stream, p);
  else launch_pdl(gemv_kernel<T, W, 8, SWIGLU>, dim3(grid), block, stream, p);
}

// ---- rotary + cache append --------------------------------------------------------------------------

template <typename T>
__global__ void rope_append_kernel(const DecodeRopeAppendArgs a) {
  pdl_launch_dependents();
  pdl_wait();  // qkv is the gemv's output
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const int64_t half = a.hd / 2;
  T* row = static_cast<T*>(a.qkv) + b * a.row_stride + h * a.hd;
  const int64_t pos = a.positions[b];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float x1 = to_f32(row[i]), x2 = to_f32(row[i + half]);
    if (h < a.Hq + a.Hkv) {
      const float* c = a.cos + pos * a.hd;
      const float* sn = a.sin + pos * a.hd;
      const float y1 = x1 * c[i] - x2 * sn[i];
      const float y2 = x2 * c[i + half] + x1 * sn[i + half];
      T* dst = h < a.Hq ? row : static_cast<T*>(a.cache.k) + b * a.cache.sb + (h - a.Hq) * a.cache.sh + pos * a.cache.st;
      dst[i] = from_f32<T>(y1);
      dst[i + half] = from_f32<T>(y2);
    } else {
      T* dst = static_cast<T*>(a.cache.v) + b * a.cache.sb + (h - a.Hq - a.Hkv) * a.cache.sh + pos * a.cache.st;
      dst[i] = row[i];
      dst[i + half] = row[i + half];
    }
  }
}

// ---- attention over the cache -----------------------------------------------------------------------

constexpr int kAttnThreads = 128;

__device__ __forceinline__ float block_max(float v) {
  __shared__ float scratch[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float t = lane < warps ? scratch[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

// The flash-decoding split: at least kMinKeysPerSplit keys a block; enough blocks to give every
// multiprocessor two (a batch-1 step of a 32-head model is only 32 blocks), and at most
// kMaxKeysPerSplit keys a block however many blocks the rows already give; at most kMaxSplits.
constexpr int64_t kMinKeysPerSplit = 64;
constexpr int64_t kMaxKeysPerSplit = 512;
constexpr int64_t kMaxSplits = 32;

int64_t attention_splits(const DecodeAttentionArgs& a) {
  const int64_t heads = std::max<int64_t>(1, a.B * a.Hq);
  const int64_t fill = ceil_div(2 * sm_count(), heads), length = ceil_div(std::max<int64_t>(a.max_keys, 1), kMaxKeysPerSplit);
  const int64_t want = std::min(kMaxSplits, std::max<int64_t>(1, std::max(fill, length)));
  const int64_t per = std::max(kMinKeysPerSplit, ceil_div(std::max<int64_t>(a.max_keys, 1), want));
  return std::min(kMaxSplits, std::max<int64_t>(1, ceil_div(a.max_keys, per)));
}

// Block (h, b, split): keys [split · per, (split + 1) · per) ∩ [0, n). With one split it writes y;
// otherwise its running max, sum and unnormalised output go to the workspace for the merge.
template <typename T, int HD>
__global__ void __launch_bounds__(kAttnThreads) decode_attention_kernel(const DecodeAttentionArgs a, int64_t splits, int64_t per) {
  constexpr int PN = Pack<T>::N;
  constexpr int G = kAttnThreads / HD;  // threads per output dimension
  __shared__ float qs[HD];
  __shared__ float ps[kAttnThreads];
  __shared__ float part[kAttnThreads];
  pdl_launch_dependents();
  pdl_wait();  // q and this step's key and value come from the kernel before
  const int tid = threadIdx.x;
  const int64_t h = blockIdx.x, b = blockIdx.y, split = blockIdx.z;
  const int64_t hk = h / (a.Hq / a.Hkv);
  const T* q = static_cast<const T*>(a.q) + b * a.q_stride + h * HD;
  for (int i = tid; i < HD; i += kAttnThreads) qs[i] = to_f32(q[i]) * a.scale;
  __syncthreads();
  const int64_t n_all = a.positions[b] + 1;
  const int64_t begin = split * per;
  const int64_t n = n_all < begin + per ? n_all : begin + per;  // keys [begin, n)
  const T* kb = static_cast<const T*>(a.cache.k) + b * a.cache.sb + hk * a.cache.sh;
  const T* vb = static_cast<const T*>(a.cache.v) + b * a.cache.sb + hk * a.cache.sh;
  const int d = tid % HD, gi = tid / HD;
  float m = -INFINITY, l = 0.f, acc = 0.f;
  for (int64_t c0 = begin; c0 < n; c0 += kAttnThreads) {
    const int64_t t = c0 + tid;
    float s = -INFINITY;
    if (t < n) {
      const T* kr = kb + t * a.cache.st;
      float dot = 0.f;
#pragma unroll
      for (int pk = 0; pk < HD / PN; ++pk) {
        const Pack<T> kv = load_pack(kr, pk);
#pragma unroll
        for (int j = 0; j < PN; ++j) dot = fmaf(qs[pk * PN + j], to_f32(kv.v[j]), dot);
      }
      s = dot;
    }
    const float m_new = fmaxf(m, block_max(s));
    const float pr = t < n ? __expf(s - m_new) : 0.f;
    const float corr = __expf(m - m_new);  // 0 on the first chunk (m = −inf)
    ps[tid] = pr;
    const float psum = block_sum(pr);  // its barriers also publish ps
    l = l * corr + psum;
    acc *= corr;
    m = m_new;
    const int chunk = static_cast<int>(n - c0 < kAttnThreads ? n - c0 : kAttnThreads);
    for (int j = gi; j < chunk; j += G) acc = fmaf(ps[j], to_f32(vb[(c0 + j) * a.cache.st + d]), acc);
    __syncthreads();  // ps is rewritten by the next chunk
  }
  part[tid] = acc;
  __syncthreads();
  if (tid < HD) {
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < G; ++i) sum += part[i * HD + tid];
    if (splits == 1) {
      static_cast<T*>(a.y)[b * a.Hq * HD + h * HD + tid] = from_f32<T>(sum / l);
    } else {
      // Workspace per (b, h): splits × (m, l) then splits × HD partial outputs. An empty split
      // (every key past the row's position) leaves m = −inf, l = 0.
      float* w = a.workspace + (b * a.Hq + h) * splits * (2 + HD);
      if (tid == 0) {
        w[split * 2] = m;
        w[split * 2 + 1] = l;
      }
      w[splits * 2 + split * HD + tid] = sum;
    }
  }
}

// Merges the splits of decode_attention_kernel: y = Σ_i e^(m_i − M) acc_i / Σ_i e^(m_i − M) l_i.
template <typename T, int HD>
__global__ void decode_attention_merge_kernel(const DecodeAttentionArgs a, int64_t splits) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const int tid = threadIdx.x;
  const float* w = a.workspace + (b * a.Hq + h) * splits * (2 + HD);
  float M = -INFINITY;
  for (int64_t i = 0; i < splits; ++i) M = fmaxf(M, w[i * 2]);
  float L = 0.f, y = 0.f;
  for (int64_t i = 0; i < splits; ++i) {
    const float mi = w[i * 2];
    if (mi == -INFINITY) continue;
    const float f = __expf(mi - M);
    L += f * w[i * 2 + 1];
    y += f * w[splits * 2 + i * HD + tid];
  }
  static_cast<T*>(a.y)[b * a.Hq * HD + h * HD + tid] = from_f32<T>(y / L);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

namespace detail {
bool pdl_enabled() {
#ifdef FATHOM_KERNELS_PDL
  static const bool off = [] {
    const char* env = std::getenv("FATHOM_PDL");
    return env && (std::string(env) == "0" || std::string(env) == "off" || std::string(env) == "false");
  }();
  static int major[64] = {};
  return !off && current_device_attribute(cudaDevAttrComputeCapabilityMajor, major) >= 9;
#else
  return false;  // built for an architecture before sm_90 too (kernels/CMakeLists.txt)
#endif
}
}  // namespace detail

bool gemv_supported(DType dt, const GemvArgs& a) {
  if (a.B < 1 || a.B > 8 || a.K <= 0 || a.K % 16 != 0) return false;
  if (a.swiglu ? a.segments != 2 : (a.segments < 1 || a.segments > 3)) return false;
  if (a.swiglu && (a.seg[0].rows != a.seg[1].rows || a.residual)) return false;
  if (!aligned16(a.x)) return false;
  for (int i = 0; i < a.segments; ++i) {
    if (!a.seg[i].w || a.seg[i].rows < 0 || !aligned16(a.seg[i].w)) return false;
    if (a.int8 && !a.seg[i].scale) return false;
  }
  return true;
}

void gemv(DType dt, const GemvArgs& a, cudaStream_t stream) {
  if (!gemv_supported(dt, a)) throw std::invalid_argument("gemv: needs 1 <= B <= 8, K % 16 == 0, 16-byte aligned x and weights");
  GemvParams p{a, 0, 1};
  int64_t rows = 0;
  for (int i = 0; i < a.segments; ++i) rows += a.seg[i].rows;
  if (a.swiglu) rows = a.seg[0].rows;
  p.y_stride = rows;
  if (rows == 0) return;
  FATHOM_DISPATCH_DTYPE(dt, {
    if (a.int8) {
      if (a.swiglu) launch_gemv<T, int8_t, true>(p, rows, stream);
      else launch_gemv<T, int8_t, false>(p, rows, stream);
    } else {
      if (a.swiglu) launch_gemv<T, T, true>(p, rows, stream);
      else launch_gemv<T, T, false>(p, rows, stream);
    }
  });
  check_launch("gemv");
}

void decode_rope_append(DType dt, const DecodeRopeAppendArgs& a, cudaStream_t stream) {
  if (a.hd <= 0 || a.hd % 2 != 0 || a.Hkv <= 0 || a.Hq <= 0) throw std::invalid_argument("decode_rope_append: bad shape");
  if (a.B == 0) return;
  const dim3 grid(static_cast<unsigned>(a.Hq + 2 * a.Hkv), static_cast<unsigned>(a.B));
  const int threads = static_cast<int>(std::min<int64_t>(std::max<int64_t>(32, ceil_div(a.hd / 2, 32) * 32), 256));
  FATHOM_DISPATCH_DTYPE(dt, { launch_pdl(rope_append_kernel<T>, grid, dim3(threads), stream, a); });
  check_launch("decode_rope_append");
}

bool decode_attention_supported(DType dt, int64_t hd) { return hd == 64 || hd == 128; }

int64_t decode_attention_workspace(const DecodeAttentionArgs& a) {
  const int64_t splits = attention_splits(a);
  return splits == 1 ? 0 : a.B * a.Hq * splits * (2 + a.hd);
}

void decode_attention(DType dt, const DecodeAttentionArgs& a, cudaStream_t stream) {
  if (!decode_attention_supported(dt, a.hd) || a.Hkv <= 0 || a.Hq % a.Hkv != 0)
    throw std::invalid_argument("decode_attention: needs head size 64 or 128 and Hq a multiple of Hkv");
  const int64_t pn = 16 / static_cast<int64_t>(dtype_size(dt));
  if (!aligned16(a.cache.k) || !aligned16(a.cache.v) || a.cache.st % pn != 0 || a.cache.sh % pn != 0 || a.cache.sb % pn != 0)
    throw std::invalid_argument("decode_attention: the cache rows must be 16-byte aligned");
  const int64_t splits = attention_splits(a);
  if (splits > 1 && !a.workspace) throw std::invalid_argument("decode_attention: the split path needs its workspace");
  if (a.B == 0) return;
  const int64_t per = splits == 1 ? std::numeric_limits<int64_t>::max() / 2 : ceil_div(a.max_keys, splits);
  const dim3 grid(static_cast<unsigned>(a.Hq), static_cast<unsigned>(a.B), static_cast<unsigned>(splits));
  const dim3 merge_grid(static_cast<unsigned>(a.Hq), static_cast<unsigned>(a.B));
  FATHOM_DISPATCH_DTYPE(dt, {
    if (a.hd == 64) {
      launch_pdl(decode_attention_kernel<T, 64>, grid, dim3(kAttnThreads), stream, a, splits, per);
      if (splits > 1) launch_pdl(decode_attention_merge_kernel<T, 64>, merge_grid, dim3(64), stream, a, splits);
    } else {
      launch_pdl(decode_attention_kernel<T, 128>, grid, dim3(kAttnThreads), stream, a, splits, per);
      if (splits > 1) launch_pdl(decode_attention_merge_kernel<T, 128>, merge_grid, dim3(128), stream, a, splits);
    }
  });
  check_launch("decode_attention");
}

}  // namespace fathom::kernels
