// Decode-step ops (issue #10): a transformer layer's work for a few rows (≤ 8, one new token per
// sequence) in few launches, through kernels/decode on CUDA with the kernels on. Each has a
// *_fusable check; where it says no (CPU, training, more rows, unsupported shapes) the caller keeps
// its composite, so these never change results off the GPU.
//
//   y = decode_linear(x, {q, k, v});                 // one pass over three weights → (B, Σ rows)
//   y = decode_linear(x, {gate, up}, /*swiglu=*/true); // silu(x·gateᵀ) · (x·upᵀ) → (B, d_ff)
//   attn = decode_attend(qkv, cos, sin, positions, k_cache, v_cache, Hq, Hkv, hd);
#pragma once
#include <torch/types.h>

#include <vector>

namespace fathom::ops {

// A linear layer's weight: `scale` defined means `w` is int8 with one scale per output row.
struct DecodeWeight {
  torch::Tensor w, scale, bias;
};

// x (..., K) with at most 8 rows (at most 2 for bf16/fp16/fp32 weights, other than three weights at
// once, where cuBLAS is faster), no gradient wanted, weights on x's device in x's dtype (or int8
// with scales in x's dtype), all int8 or none, K % 16 == 0; swiglu: exactly two of equal size.
bool decode_linear_fusable(const torch::Tensor& x, const std::vector<DecodeWeight>& ws, bool swiglu = false);
// (..., Σ rows) — or (..., rows) with swiglu. Call only where decode_linear_fusable said yes.
// residual (not with swiglu): added as the result is written, y = residual + x·Wᵀ; it has y's shape.
torch::Tensor decode_linear(const torch::Tensor& x, const std::vector<DecodeWeight>& ws, bool swiglu = false,
                            const torch::Tensor& residual = {});

// qkv (B, (Hq + 2·Hkv)·hd) contiguous, from decode_linear over q, k and v; caches (Bc ≥ B, Hkv, S, hd)
// with a contiguous last dimension; positions (B) int64 (< S and < the tables' rows: not checked on
// the device); cos/sin (T_max, hd) fp32.
bool decode_attend_fusable(const torch::Tensor& qkv, const torch::Tensor& k_cache, const torch::Tensor& positions, int64_t Hq,
                           int64_t Hkv, int64_t hd);
// Rotates q and k at each row's position, writes k and v into the caches there, and returns
// softmax(q·Kᵀ/sqrt(hd))·V over keys 0..position: (B, Hq·hd). qkv's q part is overwritten.
// max_keys: a bound on position + 1 known on the host (the decode step's span); above 256 the keys
// are split over more blocks (flash-decoding). 0 or less: one block per head whatever the length.
torch::Tensor decode_attend(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                            const torch::Tensor& positions, torch::Tensor& k_cache, torch::Tensor& v_cache, int64_t Hq,
                            int64_t Hkv, int64_t hd, int64_t max_keys = 0);

}  // namespace fathom::ops
