// Multi-head latent attention (see mla.h).
#include "engine/model/mla.h"

#include <cmath>

namespace fathom::model {

namespace {
Linear linear(int64_t in, int64_t out) {
  return Linear(in, out, /*bias=*/false);
}
}  // namespace

MlaAttentionImpl::MlaAttentionImpl(const ModelArgs& args) : a_(args.mla), n_heads_(args.n_heads) {
  const int64_t C = args.d_model, H = args.n_heads;
  const int64_t qk = a_.qk_nope_head_dim + a_.qk_rope_head_dim;
  if (a_.q_lora_rank > 0) {
    q_a_proj = register_module("q_a_proj", linear(C, a_.q_lora_rank));
    q_a_layernorm = register_module("q_a_layernorm", RMSNorm(a_.q_lora_rank, args.norm_eps));
    q_b_proj = register_module("q_b_proj", linear(a_.q_lora_rank, H * qk));
  } else {
    q_proj = register_module("q_proj", linear(C, H * qk));
  }
  kv_a_proj_with_mqa = register_module("kv_a_proj_with_mqa", linear(C, a_.kv_lora_rank + a_.qk_rope_head_dim));
  kv_a_layernorm = register_module("kv_a_layernorm", RMSNorm(a_.kv_lora_rank, args.norm_eps));
  kv_b_proj = register_module("kv_b_proj", linear(a_.kv_lora_rank, H * (a_.qk_nope_head_dim + a_.v_head_dim)));
  o_proj = register_module("o_proj", linear(H * a_.v_head_dim, C));
}

torch::Tensor MlaAttentionImpl::queries(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1);
  auto q = a_.q_lora_rank > 0 ? q_b_proj(q_a_layernorm(q_a_proj(x))) : q_proj(x);
  return q.view({B, T, n_heads_, a_.qk_nope_head_dim + a_.qk_rope_head_dim}).transpose(1, 2);
}

namespace {
// RoPE on the decoupled rotary part; x (B, H, T, p).
torch::Tensor rope_part(const torch::Tensor& x, const RopeTables& rope, int64_t offset, bool interleave) {
  return rope_apply(interleave ? deinterleave(x) : x, rope, offset);
}
torch::Tensor rope_part(const torch::Tensor& x, const RopeTables& rope, const SeqLayout& layout, bool interleave) {
  if (!layout.positions.defined()) return rope_part(x, rope, 0, interleave);
  return rope_apply_at(interleave ? deinterleave(x) : x, rope, layout.positions);
}
}  // namespace

torch::Tensor MlaAttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope, const SeqLayout& layout) {
  const auto B = x.size(0), T = x.size(1), H = n_heads_;
  const int64_t n = a_.qk_nope_head_dim, p = a_.qk_rope_head_dim, r = a_.kv_lora_rank, v = a_.v_head_dim;
  auto q = queries(x);
  auto q_nope = q.narrow(-1, 0, n);
  auto q_pe = rope_part(q.narrow(-1, n, p), rope, layout, a_.rope_interleave);

  auto ckv = kv_a_proj_with_mqa(x);                                    // (B, T, r + p)
  auto k_pe = ckv.narrow(-1, r, p).view({B, 1, T, p});                 // one rotary key for all heads
  k_pe = rope_part(k_pe, rope, layout, a_.rope_interleave);
  auto kv = kv_b_proj(kv_a_layernorm(ckv.narrow(-1, 0, r)))            // (B, T, H·(n + v))
                .view({B, T, H, n + v})
                .transpose(1, 2);
  auto k_nope = kv.narrow(-1, 0, n);
  auto value = kv.narrow(-1, n, v);
  auto query = torch::cat({q_nope, q_pe}, -1);
  auto key = torch::cat({k_nope, k_pe.expand({B, H, T, p})}, -1);
  auto y = causal_attention(query, key, value, 0, layout.mask);        // scale 1/sqrt(n + p)
  return o_proj(y.transpose(1, 2).contiguous().view({B, T, H * v}));
}

torch::Tensor MlaAttentionImpl::forward_cached(const torch::Tensor& x, const RopeTables& rope,
                                               std::pair<torch::Tensor, torch::Tensor>& slot, int64_t past) {
  const auto B = x.size(0), T = x.size(1);
  const int64_t n = a_.qk_nope_head_dim, p = a_.qk_rope_head_dim, r = a_.kv_lora_rank;
  auto q = queries(x);
  auto q_pe = rope_part(q.narrow(-1, n, p), rope, past, a_.rope_interleave);  // (B, H, T, p)
  auto ckv = kv_a_proj_with_mqa(x);
  auto latent = kv_a_layernorm(ckv.narrow(-1, 0, r));                   // (B, T, r)
  auto k_pe = rope_part(ckv.narrow(-1, r, p).view({B, 1, T, p}), rope, past, a_.rope_interleave).view({B, T, p});
  slot.first.narrow(1, past, T).copy_(latent);
  slot.second.narrow(1, past, T).copy_(k_pe);
  const int64_t S = past + T;
  torch::Tensor mask;
  if (T > 1) mask = torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).tril(past);
  return absorbed_attention(x, q.narrow(-1, 0, n), q_pe, slot.first.narrow(1, 0, S), slot.second.narrow(1, 0, S), mask);
}

torch::Tensor MlaAttentionImpl::forward_decode(const torch::Tensor& x, const RopeTables& rope,
                                               std::pair<torch::Tensor, torch::Tensor>& slot, const DecodeStep& step) {
  const auto B = x.size(0);
  const int64_t n = a_.qk_nope_head_dim, p = a_.qk_rope_head_dim, r = a_.kv_lora_rank;
  auto pos = step.positions.view({B, 1});
  auto q = queries(x);
  auto q_pe = q.narrow(-1, n, p);
  q_pe = rope_apply_at(a_.rope_interleave ? deinterleave(q_pe) : q_pe, rope, pos);
  auto ckv = kv_a_proj_with_mqa(x);
  auto latent = kv_a_layernorm(ckv.narrow(-1, 0, r));                   // (B, 1, r)
  auto k_pe = ckv.narrow(-1, r, p).view({B, 1, 1, p});
  k_pe = rope_apply_at(a_.rope_interleave ? deinterleave(k_pe) : k_pe, rope, pos).view({B, p});
  auto rows = torch::arange(B, step.positions.options());
  slot.first.index_put_({rows, step.positions}, latent.squeeze(1));
  slot.second.index_put_({rows, step.positions}, k_pe);
  return absorbed_attention(x, q.narrow(-1, 0, n), q_pe, slot.first.narrow(1, 0, step.span), slot.second.narrow(1, 0, step.span),
                            step.mask);
}

torch::Tensor MlaAttentionImpl::absorbed_attention(const torch::Tensor& x, const torch::Tensor& q_nope, const torch::Tensor& q_pe,
                                                   const torch::Tensor& latent, const torch::Tensor& k_pe, const torch::Tensor& mask) {
  const auto B = x.size(0), T = x.size(1), H = n_heads_;
  const int64_t n = a_.qk_nope_head_dim, p = a_.qk_rope_head_dim, r = a_.kv_lora_rank, v = a_.v_head_dim;
  auto c = latent.unsqueeze(1);                                         // (B, 1, S, r)
  auto kp = k_pe.unsqueeze(1);                                          // (B, 1, S, p)
  // kv_b_proj.weight (H·(n + v), r) → W_uk (H, n, r), W_uv (H, v, r).
  auto w = kv_b_proj->effective_weight().to(x.scalar_type()).view({H, n + v, r});  // with an unmerged LoRA adapter too
  auto w_uk = w.narrow(1, 0, n);
  auto w_uv = w.narrow(1, n, v);
  auto q_lat = torch::matmul(q_nope, w_uk);                             // (B, H, T, r): q_nope · W_uk
  // Scores in fp32: q_lat·cᵀ + q_pe·k_peᵀ, scaled as the expanded form (1/sqrt(n + p)).
  auto scores = torch::matmul(q_lat.to(torch::kFloat32), c.to(torch::kFloat32).transpose(-2, -1)) +
                torch::matmul(q_pe.to(torch::kFloat32), kp.to(torch::kFloat32).transpose(-2, -1));
  scores = scores * (1.0 / std::sqrt(static_cast<double>(n + p)));
  // mask: (T, S) or (B, 1, T, S), true = may attend.
  if (mask.defined()) scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
  auto att = torch::softmax(scores, -1).to(x.scalar_type());            // (B, H, T, S)
  auto o_lat = torch::matmul(att, c);                                   // (B, H, T, r)
  auto y = torch::matmul(o_lat, w_uv.transpose(-2, -1));                // (B, H, T, v)
  return o_proj(y.transpose(1, 2).contiguous().view({B, T, H * v}));
}

}  // namespace fathom::model
