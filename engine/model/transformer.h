// Decoder-only transformer, LLaMA style: embedding, N × (RMSNorm → GQA attention with RoPE →
// residual, RMSNorm → SwiGLU MLP → residual), final RMSNorm, LM head (optionally tied).
// Parameter names follow Hugging Face's LlamaForCausalLM so checkpoints load elsewhere.
#pragma once
#include <torch/torch.h>

#include <string>

namespace fathom::model {

struct ModelArgs {
  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // ≤ n_heads, divides it (grouped-query attention)
  int64_t d_ff = 0;        // SwiGLU hidden width
  int64_t max_seq_len = 0;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  bool tie_embeddings = true;
  std::string activation_checkpointing = "none";  // none | full | selective

  int64_t head_dim() const { return d_model / n_heads; }
};

// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) · w, computed in fp32 whatever the
// input dtype (bf16 sums of squares lose too much), result cast back.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Rotary position embedding tables (Su et al. 2021), in the "rotate half" layout that Hugging Face
// LLaMA uses: the first and second halves of each head are the two coordinates of each rotation.
struct RopeTables {
  torch::Tensor cos;  // (T_max, head_dim) fp32
  torch::Tensor sin;  // (T_max, head_dim) fp32
};
RopeTables rope_tables(int64_t max_seq_len, int64_t head_dim, double theta);
// x: (B, H, T, hd); positions start at `offset`.
torch::Tensor rope_apply(const torch::Tensor& x, const RopeTables& rope, int64_t offset = 0);

// Causal attention over (B, H, T, hd) tensors; k/v may have fewer heads (they are repeated).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelArgs& args);
  // x: (B, T, C) → (B, T, C)
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  bool selective_checkpoint_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelArgs& args);
  // SwiGLU (Shazeer 2020): down(silu(gate(x)) ⊙ up(x))
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelArgs& args);
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

// The trunk, registered as "model" so names read model.layers.0.self_attn.q_proj.weight.
class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const ModelArgs& args);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelArgs& args);
  // idx: (B, T) int64 → logits (B, T, V) in the compute dtype
  torch::Tensor forward(const torch::Tensor& idx);
  // Mean next-token cross-entropy in fp32; targets (B, T) int64, -100 ignored.
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets);
  const ModelArgs& args() const { return args_; }
  // GPT-2 / LLaMA initialisation: N(0, init_std) for weights, residual output projections scaled
  // by 1/sqrt(2·n_layers) (GPT-2 paper §2.3), norms at 1. Deterministic given the torch seed.
  void init_weights();
  void to_device(const torch::Device& device);

  Decoder model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // shares model.embed_tokens.weight when tied

 private:
  torch::Tensor hidden(const torch::Tensor& idx);
  ModelArgs args_;
  RopeTables rope_;
};
TORCH_MODULE(Transformer);

// Weights that take part in matrix products (for MFU): every linear layer plus the LM head, even
// when tied; not the embedding lookup or norms.
int64_t matmul_parameter_count(const ModelArgs& args);

}  // namespace fathom::model
