// Kernels for one decoding step (issue #10): a few rows (1 ≤ B ≤ 8, one new token per sequence)
// through a transformer layer with as few launches and as few bytes as possible. At batch 1 a
// step is memory bound on the weights, so these read each weight once at close to copy speed and
// fold the small elementwise work into the same pass:
//
//   gemv                 y = x · Wᵀ for up to three weight matrices side by side (q, k and v in one
//                        launch), bf16/fp16/fp32 weights or int8 with one scale per output row,
//                        optional bias; or the SwiGLU pair y = silu(x · W_gateᵀ) · (x · W_upᵀ).
//   decode_rope_append   rotary embedding of q and k at each row's position, and k and v written
//                        into the KV cache at that position (replaces two rotary launches and two
//                        index_put's).
//   decode_attention     softmax(q · Kᵀ / sqrt(hd)) · V over keys 0..position of each row, grouped-
//                        query heads read from the cache in place (no repeat_kv copy, no mask).
//
// Positions are read on the device, so one captured CUDA graph serves every step. On Hopper each is
// a programmatic dependent launch: it starts while the kernel before it finishes (the gemv pulling
// its weights into L2 meanwhile) and waits for that kernel's output only where it reads it.
// FATHOM_PDL=0 turns that off.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// One weight matrix of a gemv: rows × K, row-major, 16-byte aligned. For int8 weights `scale` is one
// value per row in x's type (W = q · scale); `bias` (x's type, `rows` values) may be null.
struct GemvSegment {
  const void* w = nullptr;
  const void* scale = nullptr;
  const void* bias = nullptr;
  int64_t rows = 0;
};

struct GemvArgs {
  const void* x = nullptr;  // (B, K), x's type, contiguous, 16-byte aligned
  void* y = nullptr;        // (B, Σ rows) — segments side by side — or (B, rows) with swiglu
  int64_t B = 0, K = 0;
  GemvSegment seg[3];
  int segments = 1;         // 1..3
  bool int8 = false;        // weights int8 (with scales) rather than x's type
  bool swiglu = false;      // segments 0 and 1 are gate and up (equal rows): y = silu(gate) · up
  const void* residual = nullptr;  // y = residual + x · Wᵀ (laid out as y); not with swiglu (unsupported)
};

// B in 1..8, K a multiple of 16 (so every row starts 16-byte aligned), 1..3 segments (2 for swiglu).
bool gemv_supported(DType dt, const GemvArgs& a);
void gemv(DType dt, const GemvArgs& a, cudaStream_t stream);

// The cache is (Bc, Hkv, S, hd) with any strides for its first three dimensions and a contiguous
// last one, as engine/model's KvCache holds it; row b of the step is cache row b.
struct KvCacheView {
  void* k = nullptr;
  void* v = nullptr;
  int64_t sb = 0, sh = 0, st = 0;  // strides in elements (the same for k and v)
};

struct DecodeRopeAppendArgs {
  void* qkv = nullptr;  // (B, (Hq + 2·Hkv) · hd), row stride `row_stride`: q heads, k heads, v heads
  int64_t row_stride = 0;
  int64_t B = 0, Hq = 0, Hkv = 0, hd = 0;
  const float* cos = nullptr;  // (T_max, hd) rotate-half tables (fathom/kernels/rope.h)
  const float* sin = nullptr;
  const int64_t* positions = nullptr;  // (B)
  KvCacheView cache;
};

// q is rotated in place in qkv; k rotated and v copied into the cache at each row's position.
void decode_rope_append(DType dt, const DecodeRopeAppendArgs& a, cudaStream_t stream);

struct DecodeAttentionArgs {
  const void* q = nullptr;  // (B, Hq · hd), row stride q_stride
  int64_t q_stride = 0;
  KvCacheView cache;
  const int64_t* positions = nullptr;  // (B): row b attends to keys 0..positions[b]
  void* y = nullptr;                   // (B, Hq · hd), contiguous
  int64_t B = 0, Hq = 0, Hkv = 0, hd = 0;
  float scale = 0.f;  // softmax scale, usually 1 / sqrt(hd)
  // Flash-decoding split: with max_keys (a host-side bound on positions + 1, e.g. the graph's span)
  // above 64, the keys are cut into stretches of ≥ 64 keys handled by separate blocks — enough
  // blocks for two per multiprocessor, and stretches of at most 512 keys, at most 32 of them — then
  // merged by a second launch.
  // Needs decode_attention_workspace(a) fp32 values of scratch in `workspace`.
  int64_t max_keys = 0;
  float* workspace = nullptr;
};

// fp32 values of scratch decode_attention needs for these arguments (0: a single launch).
int64_t decode_attention_workspace(const DecodeAttentionArgs& a);

// hd 64 or 128, Hq a multiple of Hkv.
bool decode_attention_supported(DType dt, int64_t hd);
void decode_attention(DType dt, const DecodeAttentionArgs& a, cudaStream_t stream);

namespace ref {
// fp32 everything; int8 weights as int8_t with fp32 scales.
void gemv(const GemvArgs& a);
void decode_rope_append(const DecodeRopeAppendArgs& a);
void decode_attention(const DecodeAttentionArgs& a);
}  // namespace ref

}  // namespace fathom::kernels
