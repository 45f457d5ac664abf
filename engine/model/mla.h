// Multi-head latent attention (DeepSeek-V2 §2.1, Liu et al. 2024), with Hugging Face's
// DeepseekV3Attention parameter names. Shapes: B batch, T time, C = d_model, H heads, r =
// kv_lora_rank, n = qk_nope_head_dim, p = qk_rope_head_dim, v = v_head_dim.
//   q          = q_b(norm(q_a(x)))  (or q_proj(x) without query compression)  → (B, H, T, n + p)
//   [c, k_pe]  = kv_a_proj_with_mqa(x)                                         → (B, T, r + p)
//   [k_n, val] = kv_b_proj(kv_a_layernorm(c))                                  → (B, H, T, n + v)
//   key        = [k_n, rope(k_pe) shared by every head], query = [q_n, rope(q_pe)]
// Training runs the expanded form. Cached inference keeps only norm(c) and rope(k_pe) per
// position and absorbs kv_b_proj into the query and output ("weight absorption", §2.1.2), so the
// cache holds (r + p) numbers per token instead of 2·H·(n + v).
#pragma once
#include <torch/torch.h>

#include <utility>

#include "engine/model/transformer.h"

namespace fathom::model {

class MlaAttentionImpl : public torch::nn::Module {
 public:
  explicit MlaAttentionImpl(const ModelArgs& args);
  // x: (B, T, C) → (B, T, C); rope tables are qk_rope_head_dim wide.
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope, const SeqLayout& layout = {});
  // slot.first: (B, S, r) latent cache, slot.second: (B, S, p) rotary key cache.
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               int64_t past);
  // One token per row at its own position (continuous batching; see DecodeStep in transformer.h).
  torch::Tensor forward_decode(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               const DecodeStep& step);

  Linear q_proj{nullptr}, q_a_proj{nullptr}, q_b_proj{nullptr};
  RMSNorm q_a_layernorm{nullptr};
  Linear kv_a_proj_with_mqa{nullptr}, kv_b_proj{nullptr}, o_proj{nullptr};
  RMSNorm kv_a_layernorm{nullptr};

 private:
  torch::Tensor queries(const torch::Tensor& x);  // (B, H, T, n + p), before rope
  // Attention against the compressed cache with kv_b_proj absorbed (DeepSeek-V2 §2.1.2):
  // latent (B, S, r), k_pe (B, S, p); mask (T, S) or (B, 1, T, S), true = may attend; undefined = all.
  torch::Tensor absorbed_attention(const torch::Tensor& x, const torch::Tensor& q_nope, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent, const torch::Tensor& k_pe, const torch::Tensor& mask);
  MlaArgs a_;
  int64_t n_heads_;
};

}  // namespace fathom::model
