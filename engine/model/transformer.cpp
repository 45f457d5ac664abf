// LLaMA-style decoder (see transformer.h). Shapes: B batch, T time, C = d_model, H heads,
// Hkv key/value heads, hd = C / H head width, V vocabulary.
#include "engine/model/transformer.h"

#include <cmath>

#include "engine/model/checkpointing.h"

namespace fathom::model {

namespace F = torch::nn::functional;

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return (y * weight.to(torch::kFloat32)).to(x.scalar_type());
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

static torch::Tensor rotate_half(const torch::Tensor& x) {
  auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  return torch::cat({-x2, x1}, -1);
}

torch::Tensor rope_apply(const torch::Tensor& x, const RopeTables& rope, int64_t offset) {
  const auto T = x.size(2);
  auto cos = rope.cos.narrow(0, offset, T).to(x.scalar_type());  // (T, hd), broadcast over (B, H)
  auto sin = rope.sin.narrow(0, offset, T).to(x.scalar_type());
  return x * cos + rotate_half(x) * sin;
}

static torch::Tensor repeat_kv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  // (B, Hkv, T, hd) → (B, Hkv·n_rep, T, hd), each kv head serving n_rep query heads
  const auto B = x.size(0), Hkv = x.size(1), T = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({B, Hkv, n_rep, T, hd}).reshape({B, Hkv * n_rep, T, hd});
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto n_rep = q.size(1) / k.size(1);
  auto kk = repeat_kv(k, n_rep);
  auto vv = repeat_kv(v, n_rep);
#if TORCH_VERSION_MAJOR >= 2
  // Fused flash / memory-efficient kernels where available.
  return at::scaled_dot_product_attention(q, kk, vv, {}, 0.0, /*is_causal=*/true);
#else
  // softmax(q kᵀ / sqrt(hd) + causal mask) v, softmax in fp32.
  const auto T = q.size(2), S = kk.size(2);
  auto att = torch::matmul(q, kk.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  auto mask = torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(S - T + 1);
  att = att.masked_fill(mask, -std::numeric_limits<float>::infinity());
  att = torch::softmax(att.to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::matmul(att, vv);
#endif
}

AttentionImpl::AttentionImpl(const ModelArgs& a)
    : n_heads_(a.n_heads), n_kv_heads_(a.n_kv_heads), head_dim_(a.head_dim()),
      selective_checkpoint_(a.activation_checkpointing == "selective") {
  auto lin = [](int64_t in, int64_t out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)); };
  q_proj = register_module("q_proj", lin(a.d_model, n_heads_ * head_dim_));
  k_proj = register_module("k_proj", lin(a.d_model, n_kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", lin(a.d_model, n_kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", lin(n_heads_ * head_dim_, a.d_model));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope) {
  const auto B = x.size(0), T = x.size(1);
  auto q = q_proj(x).view({B, T, n_heads_, head_dim_}).transpose(1, 2);     // (B, H, T, hd)
  auto k = k_proj(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // (B, Hkv, T, hd)
  auto v = v_proj(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = rope_apply(q, rope);
  k = rope_apply(k, rope);
  torch::Tensor y;
  if (selective_checkpoint_ && is_training() && torch::GradMode::is_enabled()) {
    // Selective recomputation (Korthikanti et al. 2022): drop the T×T attention activations,
    // the largest per-layer term, and recompute only the attention core in backward.
    y = checkpoint([](const torch::autograd::variable_list& in) {
          return torch::autograd::variable_list{causal_attention(in[0], in[1], in[2])};
        }, {q, k, v})[0];
  } else {
    y = causal_attention(q, k, v);
  }
  y = y.transpose(1, 2).contiguous().view({B, T, n_heads_ * head_dim_});  // (B, T, C)
  return o_proj(y);
}

MlpImpl::MlpImpl(const ModelArgs& a) {
  auto lin = [](int64_t in, int64_t out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)); };
  gate_proj = register_module("gate_proj", lin(a.d_model, a.d_ff));
  up_proj = register_module("up_proj", lin(a.d_model, a.d_ff));
  down_proj = register_module("down_proj", lin(a.d_ff, a.d_model));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(F::silu(gate_proj(x)) * up_proj(x));
}

BlockImpl::BlockImpl(const ModelArgs& a) {
  self_attn = register_module("self_attn", Attention(a));
  mlp = register_module("mlp", Mlp(a));
  input_layernorm = register_module("input_layernorm", RMSNorm(a.d_model, a.norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(a.d_model, a.norm_eps));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const RopeTables& rope) {
  auto h = x + self_attn(input_layernorm(x), rope);
  return h + mlp(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const ModelArgs& a) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(a.vocab_size, a.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < a.n_layers; ++i) layers->push_back(Block(a));
  norm = register_module("norm", RMSNorm(a.d_model, a.norm_eps));
}

TransformerImpl::TransformerImpl(const ModelArgs& a) : args_(a) {
  TORCH_CHECK(a.vocab_size > 0 && a.d_model > 0 && a.n_layers > 0 && a.n_heads > 0, "model shape not set");
  TORCH_CHECK(a.d_model % a.n_heads == 0, "d_model must be divisible by n_heads");
  TORCH_CHECK(a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0, "n_heads must be divisible by n_kv_heads");
  TORCH_CHECK(a.head_dim() % 2 == 0, "head_dim must be even for rotary embeddings");
  model = register_module("model", Decoder(a));
  if (!a.tie_embeddings) {
    lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(a.d_model, a.vocab_size).bias(false)));
  }
  rope_ = rope_tables(a.max_seq_len, a.head_dim(), a.rope_theta);
  init_weights();
}

void TransformerImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = args_.init_std;
  const double residual_std = std / std::sqrt(2.0 * static_cast<double>(args_.n_layers));
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    if (p.dim() == 1) {
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
}

torch::Tensor TransformerImpl::hidden(const torch::Tensor& idx) {
  TORCH_CHECK(idx.size(1) <= args_.max_seq_len, "sequence length ", idx.size(1), " exceeds model.max_seq_len ",
              args_.max_seq_len);
  auto x = model->embed_tokens(idx);  // (B, T, C)
  const bool full_ckpt = args_.activation_checkpointing == "full" && is_training() && torch::GradMode::is_enabled();
  for (const auto& layer : *model->layers) {
    auto block = layer->as<BlockImpl>();
    if (full_ckpt) {
      // Keep only each block's input; recompute the block in backward.
      x = checkpoint([block, this](const torch::autograd::variable_list& in) {
            return torch::autograd::variable_list{block->forward(in[0], rope_)};
          }, {x})[0];
    } else {
      x = block->forward(x, rope_);
    }
  }
  return model->norm(x);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& idx) {
  auto h = hidden(idx);
  if (args_.tie_embeddings) return torch::matmul(h, model->embed_tokens->weight.t());
  return lm_head(h);
}

torch::Tensor TransformerImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets) {
  auto logits = forward(idx);  // (B, T, V)
  const auto V = logits.size(-1);
  return F::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), targets.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(-100));
}

int64_t matmul_parameter_count(const ModelArgs& a) {
  const int64_t hd = a.head_dim();
  const int64_t attn = a.d_model * (a.n_heads * hd) * 2 + a.d_model * (a.n_kv_heads * hd) * 2;
  const int64_t mlp = 3 * a.d_model * a.d_ff;
  return a.n_layers * (attn + mlp) + a.d_model * a.vocab_size;
}

}  // namespace fathom::model
