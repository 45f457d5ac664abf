// LLaMA-style decoder (see transformer.h). Shapes: B batch, T time, C = d_model, H heads,
// Hkv key/value heads, hd = C / H head width, V vocabulary.
#include "engine/model/transformer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/env_switch.h"
#include "engine/model/checkpointing.h"
#include "engine/model/mla.h"
#include "engine/model/moe.h"
#include "engine/ops/cross_entropy.h"
#include "engine/ops/decode.h"
#include "engine/ops/rmsnorm.h"
#include "engine/ops/rope.h"
#include "engine/ops/swiglu.h"

namespace fathom::model {

namespace F = torch::nn::functional;

ModelArgs args_from_config(const config::ModelConfig& m, int64_t vocab_size) {
  ModelArgs a;
  a.family = m.family;
  a.vocab_size = m.vocab_size > 0 ? m.vocab_size : vocab_size;
  a.d_model = m.d_model;
  a.n_layers = m.n_layers;
  a.n_heads = m.n_heads;
  a.n_kv_heads = m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads;
  a.head_size = m.head_dim;
  a.d_ff = m.d_ff;
  a.max_seq_len = m.max_seq_len;
  a.rope_theta = m.rope_theta;
  a.norm_eps = m.norm_eps;
  a.init_std = m.init_std;
  a.tie_embeddings = m.tie_embeddings;
  a.attention_bias = m.attention_bias;
  a.attention = m.attention;
  a.activation_checkpointing = m.activation_checkpointing;
  a.moe.n_routed_experts = m.moe.n_routed_experts;
  a.moe.n_shared_experts = m.moe.n_shared_experts;
  a.moe.top_k = m.moe.top_k;
  a.moe.d_expert = m.moe.d_expert > 0 ? m.moe.d_expert : m.d_ff;
  a.moe.first_k_dense = m.moe.first_k_dense;
  a.moe.gate = m.moe.gate;
  a.moe.balance = m.moe.balance;
  a.moe.aux_loss_coef = m.moe.aux_loss_coef;
  a.moe.bias_update_rate = m.moe.bias_update_rate;
  a.moe.capacity_factor = m.moe.capacity_factor;
  a.moe.norm_topk_prob = m.moe.norm_topk_prob;
  a.moe.routed_scaling_factor = m.moe.routed_scaling_factor;
  a.moe.n_group = m.moe.n_group;
  a.moe.topk_group = m.moe.topk_group;
  a.mla.kv_lora_rank = m.mla.kv_lora_rank;
  a.mla.q_lora_rank = m.mla.q_lora_rank;
  a.mla.qk_rope_head_dim = m.mla.qk_rope_head_dim;
  a.mla.qk_nope_head_dim = m.mla.qk_nope_head_dim;
  a.mla.v_head_dim = m.mla.v_head_dim;
  a.mla.rope_interleave = m.mla.rope_interleave;
  return a;
}

int64_t KvCache::bytes() const {
  int64_t b = 0;
  for (const auto& [x, y] : layers) b += x.numel() * x.element_size() + y.numel() * y.element_size();
  return b;
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return ops::rmsnorm(x, weight, eps_); }

std::pair<torch::Tensor, torch::Tensor> RMSNormImpl::forward_add(const torch::Tensor& x, const torch::Tensor& r) {
  return ops::add_rmsnorm(x, r, weight, eps_);
}

RopeTables rope_tables(int64_t max_seq_len, int64_t head_dim, double theta) {
  // inv_freq_i = theta^(-2i/hd), i < hd/2; angle(t, i) = t · inv_freq_i; both halves share angles.
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto i = torch::arange(0, head_dim, 2, opts);
  auto inv_freq = torch::pow(theta, -i / static_cast<double>(head_dim));
  auto t = torch::arange(max_seq_len, opts);
  auto freqs = torch::outer(t, inv_freq);            // (T, hd/2)
  auto emb = torch::cat({freqs, freqs}, -1);         // (T, hd)
  return {emb.cos().to(torch::kFloat32), emb.sin().to(torch::kFloat32)};
}

SeqLayout SeqLayout::from_segments(const torch::Tensor& segments, const torch::Tensor& positions) {
  SeqLayout l;
  if (!segments.defined()) return l;
  const auto T = segments.size(1);
  auto same = segments.unsqueeze(2) == segments.unsqueeze(1);  // (B, T, T)
  auto causal = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(segments.device())).tril();
  l.mask = (same & causal).unsqueeze(1);
  l.positions = positions;
  return l;
}

torch::Tensor rope_apply(const torch::Tensor& x, const RopeTables& rope, int64_t offset) {
  return ops::rope_apply(x, rope.cos, rope.sin, offset);
}

torch::Tensor deinterleave(const torch::Tensor& x) {
  // (..., d) viewed as (..., d/2, 2) → (..., 2, d/2): evens first, then odds.
  auto sizes = x.sizes().vec();
  const auto d = sizes.back();
  sizes.back() = d / 2;
  sizes.push_back(2);
  auto y = x.reshape(sizes).transpose(-1, -2);
  return y.reshape(x.sizes());
}

torch::Tensor rope_apply_at(const torch::Tensor& x, const RopeTables& rope, const torch::Tensor& positions) {
  return ops::rope_apply_at(x, rope.cos, rope.sin, positions);
}

static torch::Tensor repeat_kv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  // (B, Hkv, T, hd) → (B, Hkv·n_rep, T, hd), each kv head serving n_rep query heads
  const auto B = x.size(0), Hkv = x.size(1), T = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({B, Hkv, n_rep, T, hd}).reshape({B, Hkv * n_rep, T, hd});
}

namespace {
std::atomic<int> g_sdpa_gqa{-1};  // -1: the environment's choice
}  // namespace

void set_sdpa_gqa(std::optional<bool> on) { g_sdpa_gqa = on ? static_cast<int>(*on) : -1; }

bool sdpa_gqa() {
  static const bool from_env = env_switch("FATHOM_SDPA_GQA", true);
  const int v = g_sdpa_gqa.load();
  return v < 0 ? from_env : v == 1;
}

namespace {
// FATHOM_SDPA_CUDNN=0: SDPA without its cuDNN backend (then flash where it applies): A/B measurements.
void apply_sdpa_backend_choice() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
  static const bool done = [] {
    if (!env_switch("FATHOM_SDPA_CUDNN", true)) at::globalContext().setSDPUseCuDNN(false);
    return true;
  }();
  (void)done;
#endif
}
}  // namespace

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t past,
                               const torch::Tensor& mask) {
  apply_sdpa_backend_choice();
  const auto n_rep = q.size(1) / k.size(1);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
  if (n_rep > 1 && !mask.defined() && (past == 0 || q.size(2) == 1) && q.is_cuda() && q.size(-1) == v.size(-1) && sdpa_gqa())
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/past == 0 && q.size(2) > 1, std::nullopt,
                                            /*enable_gqa=*/true);
#endif
  auto kk = repeat_kv(k, n_rep);
  auto vv = repeat_kv(v, n_rep);
  const auto T = q.size(2), S = kk.size(2);
  if (mask.defined()) {
#if TORCH_VERSION_MAJOR >= 2
    return at::scaled_dot_product_attention(q, kk, vv, mask, 0.0, /*is_causal=*/false);
#else
    auto att = torch::matmul(q, kk.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
    att = att.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
    att = torch::softmax(att.to(torch::kFloat32), -1).to(q.scalar_type());
    return torch::matmul(att, vv);
#endif
  }
#if TORCH_VERSION_MAJOR >= 2
  // Fused flash / memory-efficient kernels where available (equal q/k/v widths for flash).
  if (past == 0 || T == 1) return at::scaled_dot_product_attention(q, kk, vv, {}, 0.0, /*is_causal=*/past == 0 && T > 1);
#endif
  // softmax(q kᵀ / sqrt(hd) + causal mask) v, softmax in fp32. Query i is position past + i. The
  // scale and the additive mask (0, or −inf where a key is in the query's future) go into one
  // baddbmm: no separate scaling or masking pass over the (B, H, T, S) scores, forward or backward
  // (on the CPU those two passes were ~7% of a training step).
  const auto B = q.size(0), H = q.size(1), hd = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto scores_q = q.reshape({B * H, T, hd});
  auto keys_t = kk.transpose(-2, -1).reshape({B * H, hd, S});
  torch::Tensor att;
  if (T > 1) {
    auto additive = torch::full({T, S}, -std::numeric_limits<float>::infinity(), q.options()).triu(S - T + 1);
    att = torch::baddbmm(additive, scores_q, keys_t, /*beta=*/1.0, /*alpha=*/scale);
  } else {
    att = torch::bmm(scores_q, keys_t) * scale;
  }
  att = torch::softmax(att.view({B, H, T, S}).to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::matmul(att, vv);
}

AttentionImpl::AttentionImpl(const ModelArgs& a)
    : n_heads_(a.n_heads), n_kv_heads_(a.n_kv_heads), head_dim_(a.head_dim()),
      selective_checkpoint_(a.activation_checkpointing == "selective") {
  auto lin = [](int64_t in, int64_t out, bool bias) { return Linear(in, out, bias); };
  q_proj = register_module("q_proj", lin(a.d_model, n_heads_ * head_dim_, a.qkv_bias()));
  k_proj = register_module("k_proj", lin(a.d_model, n_kv_heads_ * head_dim_, a.qkv_bias()));
  v_proj = register_module("v_proj", lin(a.d_model, n_kv_heads_ * head_dim_, a.qkv_bias()));
  o_proj = register_module("o_proj", lin(n_heads_ * head_dim_, a.d_model, a.attention_bias));
}

torch::Tensor AttentionImpl::forward_cached(const torch::Tensor& x, const RopeTables& rope,
                                            std::pair<torch::Tensor, torch::Tensor>& slot, int64_t past) {
  const auto B = x.size(0), T = x.size(1);
  auto q = rope_apply(q_proj(x).view({B, T, n_heads_, head_dim_}).transpose(1, 2), rope, past);
  auto k = rope_apply(k_proj(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2), rope, past);
  auto v = v_proj(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  slot.first.narrow(2, past, T).copy_(k);
  slot.second.narrow(2, past, T).copy_(v);
  auto y = causal_attention(q, slot.first.narrow(2, 0, past + T), slot.second.narrow(2, 0, past + T), past);
  return o_proj(y.transpose(1, 2).contiguous().view({B, T, n_heads_ * head_dim_}));
}

DecodeStep DecodeStep::make(const std::vector<int64_t>& positions, const torch::Device& device) {
  DecodeStep d;
  const auto B = static_cast<int64_t>(positions.size());
  d.span = positions.empty() ? 0 : *std::max_element(positions.begin(), positions.end()) + 1;
  auto pos = torch::tensor(positions, torch::kInt64);
  d.mask = (torch::arange(d.span, torch::kInt64).view({1, d.span}) <= pos.view({B, 1})).view({B, 1, 1, d.span}).to(device);
  d.positions = pos.to(device);
  return d;
}

torch::Tensor AttentionImpl::forward_decode(const torch::Tensor& x, const RopeTables& rope,
                                            std::pair<torch::Tensor, torch::Tensor>& slot, const DecodeStep& step) {
  using torch::indexing::Slice;
  const auto B = x.size(0);
  const int64_t nq = n_heads_ * head_dim_, nkv = n_kv_heads_ * head_dim_;
  torch::Tensor q, k, v;
  auto qd = q_proj->decode_weight(), kd = k_proj->decode_weight(), vd = v_proj->decode_weight();
  if (qd && kd && vd && rope.cos.device() == x.device()) {
    // CUDA, a few rows: q, k and v in one pass over their weights; then rotary, the cache append
    // and attention over the cache in two more launches (engine/ops/decode.h).
    auto x2 = x.reshape({B, x.size(-1)});
    const std::vector<ops::DecodeWeight> ws{*qd, *kd, *vd};
    if (ops::decode_linear_fusable(x2, ws)) {
      auto qkv = ops::decode_linear(x2, ws);
      if (ops::decode_attend_fusable(qkv, slot.first, step.positions, n_heads_, n_kv_heads_, head_dim_)) {
        auto y = ops::decode_attend(qkv, rope.cos, rope.sin, step.positions, slot.first, slot.second, n_heads_, n_kv_heads_,
                                    head_dim_, step.span);
        return o_proj(y.view({B, 1, nq}));
      }
      q = qkv.narrow(1, 0, nq).reshape({B, 1, nq});
      k = qkv.narrow(1, nq, nkv).reshape({B, 1, nkv});
      v = qkv.narrow(1, nq + nkv, nkv).reshape({B, 1, nkv});
    }
  }
  if (!q.defined()) {
    q = q_proj(x);
    k = k_proj(x);
    v = v_proj(x);
  }
  auto pos = step.positions.view({B, 1});
  q = rope_apply_at(q.view({B, 1, n_heads_, head_dim_}).transpose(1, 2), rope, pos);
  k = rope_apply_at(k.view({B, 1, n_kv_heads_, head_dim_}).transpose(1, 2), rope, pos);
  v = v.view({B, 1, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto rows = torch::arange(B, step.positions.options());
  slot.first.index_put_({rows, Slice(), step.positions}, k.squeeze(2));
  slot.second.index_put_({rows, Slice(), step.positions}, v.squeeze(2));
  auto y = causal_attention(q, slot.first.narrow(2, 0, step.span), slot.second.narrow(2, 0, step.span), 0, step.mask);
  return o_proj(y.transpose(1, 2).contiguous().view({B, 1, n_heads_ * head_dim_}));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope, const SeqLayout& layout) {
  const auto B = x.size(0), T = x.size(1);
  const auto qkv = forward_shared_input({q_proj.get(), k_proj.get(), v_proj.get()}, x);
  auto q = qkv[0].view({B, T, n_heads_, head_dim_}).transpose(1, 2);     // (B, H, T, hd)
  auto k = qkv[1].view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // (B, Hkv, T, hd)
  auto v = qkv[2].view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = layout.positions.defined() ? rope_apply_at(q, rope, layout.positions) : rope_apply(q, rope);
  k = layout.positions.defined() ? rope_apply_at(k, rope, layout.positions) : rope_apply(k, rope);
  torch::Tensor y;
  if (selective_checkpoint_ && is_training() && torch::GradMode::is_enabled()) {
    // Selective recomputation (Korthikanti et al. 2022): drop the T×T attention activations,
    // the largest per-layer term, and recompute only the attention core in backward.
    auto mask = layout.mask;
    y = checkpoint([mask](const torch::autograd::variable_list& in) {
          return torch::autograd::variable_list{causal_attention(in[0], in[1], in[2], 0, mask)};
        }, {q, k, v})[0];
  } else {
    y = causal_attention(q, k, v, 0, layout.mask);
  }
  y = y.transpose(1, 2).contiguous().view({B, T, n_heads_ * head_dim_});  // (B, T, C)
  return o_proj(y);
}

MlpImpl::MlpImpl(int64_t d_model, int64_t hidden) {
  auto lin = [](int64_t in, int64_t out) { return Linear(in, out, /*bias=*/false); };
  gate_proj = register_module("gate_proj", lin(d_model, hidden));
  up_proj = register_module("up_proj", lin(d_model, hidden));
  down_proj = register_module("down_proj", lin(hidden, d_model));
}

std::optional<torch::Tensor> MlpImpl::fused_gate_up(const torch::Tensor& x) {
  auto g = x.is_cuda() ? gate_proj->decode_weight() : std::nullopt;
  auto u = g ? up_proj->decode_weight() : std::nullopt;
  if (!g || !u) return std::nullopt;
  // Decoding on CUDA: gate, up and SwiGLU in one pass over both weights (engine/ops/decode.h).
  const std::vector<ops::DecodeWeight> ws{*g, *u};
  if (!ops::decode_linear_fusable(x, ws, /*swiglu=*/true)) return std::nullopt;
  return ops::decode_linear(x, ws, /*swiglu=*/true);
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (auto a = fused_gate_up(x)) return down_proj(*a);
  const auto gu = forward_shared_input({gate_proj.get(), up_proj.get()}, x);
  return down_proj(ops::swiglu(gu[0], gu[1]));
}

torch::Tensor MlpImpl::forward_residual(const torch::Tensor& x, const torch::Tensor& h) {
  auto a = fused_gate_up(x);
  if (!a) return h + forward(x);
  if (auto d = down_proj->decode_weight();
      d && ops::decode_linear_fusable(*a, {*d}) && h.sizes() == x.sizes() && h.scalar_type() == x.scalar_type())
    return ops::decode_linear(*a, {*d}, /*swiglu=*/false, h);
  return h + down_proj(*a);
}

BlockImpl::BlockImpl(const ModelArgs& a, int64_t layer) {
  if (a.attention == "mla") mla = register_module("self_attn", std::make_shared<MlaAttentionImpl>(a));
  else self_attn = register_module("self_attn", Attention(a));
  if (a.is_moe_layer(layer)) moe = register_module("mlp", std::make_shared<MoeImpl>(a));
  else mlp = register_module("mlp", Mlp(a.d_model, a.d_ff));
  input_layernorm = register_module("input_layernorm", RMSNorm(a.d_model, a.norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(a.d_model, a.norm_eps));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> BlockImpl::forward(const torch::Tensor& h_in, const torch::Tensor& m_in,
                                                                           const RopeTables& rope, const SeqLayout& layout) {
  // x = h_in + m_in and a = norm(x) in one pass, as h = x + attention and f = norm(h) below.
  torch::Tensor a, x;
  if (m_in.defined()) std::tie(a, x) = input_layernorm->forward_add(h_in, m_in);
  else std::tie(a, x) = std::make_pair(input_layernorm(h_in), h_in);
  auto [f, h] = post_attention_layernorm->forward_add(x, mla ? mla->forward(a, rope, layout) : self_attn->forward(a, rope, layout));
  torch::Tensor aux;
  auto m = moe ? moe->forward(f, &aux) : mlp(f);
  return {h, m, aux};
}

torch::Tensor BlockImpl::forward_cached(const torch::Tensor& x, const RopeTables& rope,
                                        std::pair<torch::Tensor, torch::Tensor>& slot, int64_t past) {
  auto a = input_layernorm(x);
  auto [f, h] = post_attention_layernorm->forward_add(
      x, mla ? mla->forward_cached(a, rope, slot, past) : self_attn->forward_cached(a, rope, slot, past));
  return h + (moe ? moe->forward(f) : mlp(f));
}

torch::Tensor BlockImpl::forward_decode(const torch::Tensor& x, const RopeTables& rope,
                                        std::pair<torch::Tensor, torch::Tensor>& slot, const DecodeStep& step) {
  auto a = input_layernorm(x);
  auto [f, h] = post_attention_layernorm->forward_add(
      x, mla ? mla->forward_decode(a, rope, slot, step) : self_attn->forward_decode(a, rope, slot, step));
  return moe ? h + moe->forward(f) : mlp->forward_residual(f, h);
}

DecoderImpl::DecoderImpl(const ModelArgs& a) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(a.vocab_size, a.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < a.n_layers; ++i) layers->push_back(Block(a, i));
  norm = register_module("norm", RMSNorm(a.d_model, a.norm_eps));
}

TransformerImpl::TransformerImpl(const ModelArgs& a) : args_(a) {
  TORCH_CHECK(a.vocab_size > 0 && a.d_model > 0 && a.n_layers > 0 && a.n_heads > 0, "model shape not set");
  if (a.attention == "mla") {
    TORCH_CHECK(a.mla.kv_lora_rank > 0 && a.mla.qk_rope_head_dim > 0 && a.mla.qk_nope_head_dim > 0 && a.mla.v_head_dim > 0,
                "attention mla needs kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim and v_head_dim");
  } else {
    TORCH_CHECK(a.head_size > 0 || a.d_model % a.n_heads == 0, "d_model must be divisible by n_heads");
    TORCH_CHECK(a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0, "n_heads must be divisible by n_kv_heads");
  }
  TORCH_CHECK(a.rope_dim() % 2 == 0, "the rotary dimension must be even");
  if (a.moe.n_routed_experts > 0)
    TORCH_CHECK(a.moe.top_k <= a.moe.n_routed_experts && a.moe.n_routed_experts % a.moe.n_group == 0 && a.moe.d_expert > 0,
                "MoE shape: top_k <= n_routed_experts, n_group divides n_routed_experts, d_expert > 0");
  model = register_module("model", Decoder(a));
  if (!a.tie_embeddings) {
    lm_head = register_module("lm_head", Linear(a.d_model, a.vocab_size, /*bias=*/false));
  }
  rope_ = rope_tables(a.max_seq_len, a.rope_dim(), a.rope_theta);
  init_weights();
}

void TransformerImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = args_.init_std;
  const double residual_std = std / std::sqrt(2.0 * static_cast<double>(args_.n_layers));
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.zero_();     // linear biases (qwen2 q/k/v)
    } else if (p.dim() == 1) {
      p.fill_(1.0);  // RMSNorm gains
    } else if (name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos) {
      p.normal_(0.0, residual_std);
    } else {
      p.normal_(0.0, std);
    }
  }
}

void TransformerImpl::to_device(const torch::Device& device) {
  to(device);
  rope_.cos = rope_.cos.to(device);
  rope_.sin = rope_.sin.to(device);
  // Routing biases stay fp32 whatever the compute dtype: their updates are ~1e-3 steps.
  for (auto& m : moe_layers()) m->gate->e_score_correction_bias = m->gate->e_score_correction_bias.to(torch::kFloat32);
}

std::vector<std::shared_ptr<MoeImpl>> TransformerImpl::moe_layers() const {
  std::vector<std::shared_ptr<MoeImpl>> out;
  for (const auto& layer : *model->layers)
    if (auto m = layer->as<BlockImpl>()->moe) out.push_back(m);
  return out;
}

KvCache TransformerImpl::new_cache(int64_t batch, int64_t capacity) const {
  TORCH_CHECK(capacity <= args_.max_seq_len, "cache capacity ", capacity, " exceeds model.max_seq_len ", args_.max_seq_len);
  const auto& w = model->embed_tokens->weight;
  auto opts = w.options().requires_grad(false);
  KvCache cache;
  cache.capacity = capacity;
  for (int64_t i = 0; i < args_.n_layers; ++i) {
    if (args_.attention == "mla") {
      cache.layers.emplace_back(torch::zeros({batch, capacity, args_.mla.kv_lora_rank}, opts),
                                torch::zeros({batch, capacity, args_.mla.qk_rope_head_dim}, opts));
    } else {
      cache.layers.emplace_back(torch::zeros({batch, args_.n_kv_heads, capacity, args_.head_dim()}, opts),
                                torch::zeros({batch, args_.n_kv_heads, capacity, args_.head_dim()}, opts));
    }
  }
  return cache;
}

torch::Tensor TransformerImpl::forward_cached(const torch::Tensor& idx, KvCache& cache) {
  const int64_t T = idx.size(1);
  TORCH_CHECK(cache.length + T <= cache.capacity, "KV cache full: ", cache.length, " + ", T, " tokens exceed its capacity ",
              cache.capacity);
  auto x = model->embed_tokens(idx);
  int64_t i = 0;
  for (const auto& layer : *model->layers)
    x = layer->as<BlockImpl>()->forward_cached(x, rope_, cache.layers[static_cast<size_t>(i++)], cache.length);
  cache.length += T;
  return logits(model->norm(x));
}

torch::Tensor TransformerImpl::logits(const torch::Tensor& h) {
  if (args_.tie_embeddings) return torch::matmul(h, model->embed_tokens->weight.t());
  return lm_head(h);
}

torch::Tensor TransformerImpl::forward_decode(const torch::Tensor& idx, KvCache& cache, const DecodeStep& step) {
  const int64_t B = idx.size(0);
  TORCH_CHECK(idx.dim() == 2 && idx.size(1) == 1, "forward_decode takes one token per row, (B, 1)");
  TORCH_CHECK(step.positions.numel() == B, "forward_decode: ", B, " rows but ", step.positions.numel(), " positions");
  TORCH_CHECK(!cache.layers.empty() && B <= cache.layers[0].first.size(0), "forward_decode: ", B, " rows exceed the cache's batch");
  TORCH_CHECK(step.span <= cache.capacity, "KV cache full: position ", step.span - 1, " exceeds its capacity ", cache.capacity);
  auto x = model->embed_tokens(idx);
  size_t i = 0;
  for (const auto& layer : *model->layers) {
    auto& full = cache.layers[i++];
    std::pair<torch::Tensor, torch::Tensor> rows{full.first.narrow(0, 0, B), full.second.narrow(0, 0, B)};
    x = layer->as<BlockImpl>()->forward_decode(x, rope_, rows, step);
  }
  auto h = model->norm(x);
  if (head_q_.defined() && head_is_plain_product()) {  // (re-checked: an adapter may come after)
    const std::vector<ops::DecodeWeight> head{{head_q_, head_scale_, {}}};
    if (ops::decode_linear_fusable(h, head)) return ops::decode_linear(h, head).squeeze(1);
  }
  return logits(h).squeeze(1);
}

bool TransformerImpl::head_is_plain_product() const {
  // An untied head with an adapter, a bias or int8 weights of its own is more than x · Wᵀ.
  return args_.tie_embeddings || (!lm_head->has_lora() && !lm_head->has_adapter_bank() && !lm_head->bias.defined() &&
                                  !lm_head->quantized() && !lm_head->dynamic_int8());
}

int64_t TransformerImpl::quantize_head_for_decode() {
  if (!head_is_plain_product()) return 0;
  const auto& w = args_.tie_embeddings ? model->embed_tokens->weight : lm_head->weight;
  if (!w.defined() || !w.is_cuda()) return 0;
  std::tie(head_q_, head_scale_) = quantize_rows_int8(w);  // one scale per vocabulary row
  return head_q_.numel() + head_scale_.numel() * head_scale_.element_size();
}

torch::Tensor TransformerImpl::hidden(const torch::Tensor& idx, torch::Tensor* aux, const SeqLayout& layout) {
  TORCH_CHECK(idx.size(1) <= args_.max_seq_len, "sequence length ", idx.size(1), " exceeds model.max_seq_len ",
              args_.max_seq_len);
  if (param_wait_) param_wait_(0);
  // The residual stream as h + m (BlockImpl::forward), m undefined before the first block.
  torch::Tensor h = model->embed_tokens(idx), m;  // (B, T, C)
  int layer_index = 0;
  const bool full_ckpt = args_.activation_checkpointing == "full" && is_training() && torch::GradMode::is_enabled();
  for (const auto& layer : *model->layers) {
    auto block = layer->as<BlockImpl>();
    if (param_wait_) param_wait_(++layer_index);
    torch::Tensor layer_aux;
    if (full_ckpt) {
      // Keep only each block's input, one tensor (its output summed here, not h and m: half the
      // memory kept); recompute the block in backward. The MoE auxiliary loss is a second output so
      // its gradient flows through the recomputation too.
      const bool has_aux = block->moe != nullptr;
      auto out = checkpoint([block, has_aux, layout, this](const torch::autograd::variable_list& in) {
            auto [y, ym, a] = block->forward(in[0], torch::Tensor(), rope_, layout);
            torch::autograd::variable_list r{y + ym};
            if (has_aux) r.push_back(a.defined() ? a : torch::zeros({}, y.options().dtype(torch::kFloat32)));
            return r;
          }, {h});  // (m stays undefined on this path: every block's output comes back summed)
      h = out[0];
      if (has_aux) layer_aux = out[1];
    } else {
      std::tie(h, m, layer_aux) = block->forward(h, m, rope_, layout);
    }
    if (aux && layer_aux.defined()) *aux = aux->defined() ? *aux + layer_aux : layer_aux;
  }
  if (param_wait_) param_wait_(layer_index + 1);
  return m.defined() ? model->norm->forward_add(h, m).first : model->norm(h);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& idx) {
  auto h = hidden(idx, nullptr);
  if (args_.tie_embeddings) return torch::matmul(h, model->embed_tokens->weight.t());
  return lm_head(h);
}

torch::Tensor TransformerImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets, const torch::Tensor& segments,
                                    const torch::Tensor& positions) {
  torch::Tensor aux;
  auto h = hidden(idx, &aux, SeqLayout::from_segments(segments, positions));
  torch::Tensor ce;
  // On CUDA, the LM head and the loss fused, chunked over the vocabulary (engine/ops/cross_entropy.h):
  // no (B, T, V) logits. Only for a plain head (no adapter, int8 base or bias).
  const bool plain_head = args_.tie_embeddings || (!lm_head->has_lora() && !lm_head->quantized() && !lm_head->bias.defined() &&
                                                   !lm_head->has_adapter_bank());
  if (plain_head) {
    const auto& w = args_.tie_embeddings ? model->embed_tokens->weight : lm_head->weight;
    auto h2 = h.reshape({-1, h.size(-1)});
    auto t1 = targets.reshape({-1});
    if (ops::linear_cross_entropy_fusable(h2, w, t1)) {
      auto sum = ops::linear_cross_entropy_sum(h2, w, t1, -100);
      auto count = (t1 != -100).sum().to(torch::kFloat32);
      ce = segments.defined() ? sum / count.clamp_min(1) : sum / count;  // as F::cross_entropy's mean (NaN if none)
    }
  }
  if (!ce.defined()) {
    auto logits = args_.tie_embeddings ? torch::matmul(h, model->embed_tokens->weight.t()) : lm_head(h);  // (B, T, V)
    const auto V = logits.size(-1);
    if (segments.defined()) {
      // Instruction data: most targets are ignored; a batch with none left gives 0, not NaN.
      auto sum = F::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), targets.reshape({-1}),
                                  F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
      ce = sum / (targets != -100).sum().clamp_min(1).to(torch::kFloat32);
    } else {
      ce = F::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), targets.reshape({-1}),
                            F::CrossEntropyFuncOptions().ignore_index(-100));
    }
  }
  last_aux_loss_ = 0.0;
  if (!aux.defined()) return ce;
  last_aux_loss_ = aux.detach().item<double>();
  return ce + aux;
}

int TransformerImpl::param_group(const std::string& name) const {
  static const std::string embed = "model.embed_tokens.", prefix = "model.layers.";
  const int rest = static_cast<int>(args_.n_layers) + 1;
  if (name.compare(0, embed.size(), embed) == 0) return 0;
  if (name.compare(0, prefix.size(), prefix) != 0) return rest;
  size_t i = prefix.size();
  int layer = 0;
  bool digits = false;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i, digits = true) layer = layer * 10 + (name[i] - '0');
  return digits && i < name.size() && name[i] == '.' && layer < args_.n_layers ? layer + 1 : rest;
}

int64_t matmul_parameter_count(const ModelArgs& a) {
  const int64_t C = a.d_model;
  int64_t attn = 0;
  if (a.attention == "mla") {
    const auto& m = a.mla;
    const int64_t qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
    attn = m.q_lora_rank > 0 ? C * m.q_lora_rank + m.q_lora_rank * a.n_heads * qk : C * a.n_heads * qk;
    attn += C * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * a.n_heads * (m.qk_nope_head_dim + m.v_head_dim) +
            a.n_heads * m.v_head_dim * C;
  } else {
    const int64_t hd = a.head_dim();
    attn = C * (a.n_heads * hd) * 2 + C * (a.n_kv_heads * hd) * 2;
  }
  int64_t total = C * a.vocab_size;
  for (int64_t i = 0; i < a.n_layers; ++i) {
    total += attn;
    if (a.is_moe_layer(i)) {
      total += a.moe.n_routed_experts * C  // router
               + 3 * C * a.moe.d_expert * (a.moe.top_k + a.moe.n_shared_experts);
    } else {
      total += 3 * C * a.d_ff;
    }
  }
  return total;
}

}  // namespace fathom::model
