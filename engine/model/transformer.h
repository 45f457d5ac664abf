// Decoder-only transformer, LLaMA style: embedding, N × (RMSNorm → attention with RoPE →
// residual, RMSNorm → feed-forward → residual), final RMSNorm, LM head (optionally tied).
// Attention is GQA (LLaMA, Qwen2 with q/k/v biases) or DeepSeek's multi-head latent attention
// (mla.h); the feed-forward is SwiGLU or, past the first k dense layers, DeepSeekMoE (moe.h).
// Parameter names follow Hugging Face's LlamaForCausalLM / Qwen2ForCausalLM /
// DeepseekV3ForCausalLM so checkpoints load elsewhere.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "engine/config/config.h"
#include "engine/model/linear.h"

namespace fathom::model {

// DeepSeekMoE (Dai et al. 2024) / DeepSeek-V3 routing: see moe.h.
struct MoeArgs {
  int64_t n_routed_experts = 0;  // 0 = dense model
  int64_t n_shared_experts = 0;
  int64_t top_k = 2;
  int64_t d_expert = 0;
  int64_t first_k_dense = 0;
  std::string gate = "softmax";      // softmax | sigmoid
  std::string balance = "aux_loss";  // aux_loss | bias_update | none
  double aux_loss_coef = 0.01;
  double bias_update_rate = 0.001;
  double capacity_factor = 0.0;      // 0 = no token dropped
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t n_group = 1, topk_group = 1;
};

// Multi-head latent attention (DeepSeek-V2 §2.1): see mla.h.
struct MlaArgs {
  int64_t kv_lora_rank = 0, q_lora_rank = 0, qk_rope_head_dim = 0, qk_nope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = false;
};

struct ModelArgs {
  std::string family = "llama";  // llama | qwen2 | deepseek
  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // ≤ n_heads, divides it (grouped-query attention)
  int64_t head_size = 0;   // 0 = d_model / n_heads
  int64_t d_ff = 0;        // SwiGLU hidden width (dense layers)
  int64_t max_seq_len = 0;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  bool tie_embeddings = true;
  bool attention_bias = false;  // q/k/v/o biases (LLaMA option); qwen2 has q/k/v biases always
  std::string attention = "mha";  // mha | mla
  std::string activation_checkpointing = "none";  // none | full | selective
  MoeArgs moe;
  MlaArgs mla;

  int64_t head_dim() const { return head_size > 0 ? head_size : d_model / n_heads; }
  bool qkv_bias() const { return attention_bias || family == "qwen2"; }
  bool is_moe_layer(int64_t layer) const { return moe.n_routed_experts > 0 && layer >= moe.first_k_dense; }
  // Width of the rotary tables: the whole head for mha, the decoupled rope part for mla.
  int64_t rope_dim() const { return attention == "mla" ? mla.qk_rope_head_dim : head_dim(); }
};

// The model arguments a run config describes; vocab_size is used when model.vocab_size is 0.
ModelArgs args_from_config(const config::ModelConfig& model, int64_t vocab_size);

// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) · w, computed in fp32 whatever the
// input dtype (bf16 sums of squares lose too much), result cast back.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  // (norm(x + r), x + r): the residual add fused with the norm on CUDA.
  std::pair<torch::Tensor, torch::Tensor> forward_add(const torch::Tensor& x, const torch::Tensor& r);
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
// x: (B, H, T, hd) at explicit positions (B, T) int64.
torch::Tensor rope_apply_at(const torch::Tensor& x, const RopeTables& rope, const torch::Tensor& positions);

// Several documents packed into one row (instruction tuning): positions restart at 0 in each and
// attention never crosses them. Both tensors undefined = one causal document per row.
struct SeqLayout {
  torch::Tensor positions;  // (B, T) int64
  torch::Tensor mask;       // (B, 1, T, T) bool, true = may attend (causal and same document)
  static SeqLayout from_segments(const torch::Tensor& segments, const torch::Tensor& positions);
  bool packed() const { return mask.defined(); }
};

// DeepSeek-V3 checkpoints rotate interleaved pairs (0,1), (2,3)...: reorder the last dimension to
// evens then odds so rope_apply's halves layout applies (q and k both, so q·k is unchanged).
torch::Tensor deinterleave(const torch::Tensor& x);

// Causal attention over (B, H, T, hd) tensors; k/v may have fewer heads (they are repeated) and
// v may be narrower than q/k. With past > 0, q holds positions past.. past+T-1 and k/v hold
// positions 0.. past+T-1 (a KV cache): query i sees keys ≤ past + i.
// With `mask` (B, 1, T, S) bool it replaces the causal rule.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t past = 0,
                               const torch::Tensor& mask = {});

// Grouped-query attention without the repeat (LibTorch ≥ 2.5 on CUDA): the key/value heads go to
// SDPA as they are (enable_gqa) instead of a copy repeated for every query head (+2.5% tokens/s on
// llama-1b's training step, H200). On unless FATHOM_SDPA_GQA=0 (read once) or set_sdpa_gqa(false);
// set_sdpa_gqa(nullopt) returns to the environment's choice.
void set_sdpa_gqa(std::optional<bool> on);
bool sdpa_gqa();

// Inference cache, preallocated for `capacity` positions. Per layer, mha keeps k and v
// (B, Hkv, S, hd); mla keeps the compressed latent (B, S, kv_lora_rank) and the shared rotary key
// (B, S, qk_rope_head_dim) — DeepSeek-V2's small KV cache.
struct KvCache {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> layers;
  int64_t length = 0;    // positions filled
  int64_t capacity = 0;
  int64_t bytes() const;
};

// One decode step of a continuous batch: row b of the batch holds its next token at position
// positions[b] and attends to cache positions 0..positions[b] (mask (B, 1, 1, span), span =
// max position + 1); its key/value goes into row b of the cache. Rows are independent sequences of
// different lengths (padded slots, masked), the cache's first B rows.
struct DecodeStep {
  torch::Tensor positions;  // (B) int64, on the model's device
  torch::Tensor mask;       // (B, 1, 1, span) bool
  int64_t span = 0;
  static DecodeStep make(const std::vector<int64_t>& positions, const torch::Device& device);
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelArgs& args);
  // x: (B, T, C) → (B, T, C)
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope, const SeqLayout& layout = {});
  // x holds positions cache.length.. ; appends its k/v to `slot` (this layer's cache tensors).
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               int64_t past);
  // x (B, 1, C): one token per row (see DecodeStep); slot: this layer's cache rows 0..B-1.
  torch::Tensor forward_decode(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               const DecodeStep& step);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  bool selective_checkpoint_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t d_model, int64_t hidden);
  // SwiGLU (Shazeer 2020): down(silu(gate(x)) ⊙ up(x))
  torch::Tensor forward(const torch::Tensor& x);
  // h + forward(x): decoding on CUDA, down_proj's gemv adds h as it writes (one launch less).
  torch::Tensor forward_residual(const torch::Tensor& x, const torch::Tensor& h);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  // silu(gate(x)) ⊙ up(x) from the decode gemv in one pass, where it takes x (CUDA, few rows,
  // plain weights); nullopt otherwise.
  std::optional<torch::Tensor> fused_gate_up(const torch::Tensor& x);
};
TORCH_MODULE(Mlp);

class MlaAttentionImpl;
class MoeImpl;

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelArgs& args, int64_t layer);
  // The block on the residual stream x = h_in + m_in (m_in undefined: x = h_in), its own residual
  // sum left to whatever normalises it next: returns (h, m, aux) with the block's output h + m, and
  // for an MoE block in training its load-balancing loss (undefined otherwise). So every residual add
  // runs inside an RMSNorm (engine/ops/rmsnorm.h's add_rmsnorm, one fused pass on CUDA, forward and
  // backward) instead of as an add of its own and, in backward, a sum of the stream's two gradients.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> forward(const torch::Tensor& h_in, const torch::Tensor& m_in,
                                                                  const RopeTables& rope, const SeqLayout& layout = {});
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               int64_t past);
  torch::Tensor forward_decode(const torch::Tensor& x, const RopeTables& rope, std::pair<torch::Tensor, torch::Tensor>& slot,
                               const DecodeStep& step);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  // Registered as "self_attn" / "mlp" whichever kind the layer has; the others stay null.
  Attention self_attn{nullptr};
  std::shared_ptr<MlaAttentionImpl> mla;
  Mlp mlp{nullptr};
  std::shared_ptr<MoeImpl> moe;
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
  // Mean next-token cross-entropy in fp32; targets (B, T) int64, -100 ignored. In training, MoE
  // models add their load-balancing losses (see last_aux_loss()).
  // segments/positions (B, T): packed documents (see SeqLayout); undefined = one per row.
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets, const torch::Tensor& segments = {},
                     const torch::Tensor& positions = {});
  // The summed MoE auxiliary loss of the last loss() call in training (0 otherwise).
  double last_aux_loss() const { return last_aux_loss_; }

  // Incremental decoding: a cache for `batch` sequences of up to `capacity` tokens, in the
  // model's dtype and device; forward_cached appends idx (B, T) at positions cache.length.. and
  // returns the logits of those positions (prefill with T > 1, then T = 1 per decode step).
  KvCache new_cache(int64_t batch, int64_t capacity) const;
  torch::Tensor forward_cached(const torch::Tensor& idx, KvCache& cache);
  // Continuous batching: idx (B, 1), one token per independent sequence; sequence b lives in row b
  // of `cache` (B ≤ the cache's batch) at position step.positions[b] (cache.length is not used).
  // Returns logits (B, V).
  torch::Tensor forward_decode(const torch::Tensor& idx, KvCache& cache, const DecodeStep& step);
  // The final hidden state → logits (B, T, V).
  torch::Tensor logits(const torch::Tensor& h);

  // MoE layers, in layer order (empty for a dense model).
  std::vector<std::shared_ptr<MoeImpl>> moe_layers() const;
  const ModelArgs& args() const { return args_; }
  // GPT-2 / LLaMA initialisation: N(0, init_std) for weights, residual output projections scaled
  // by 1/sqrt(2·n_layers) (GPT-2 paper §2.3), norms at 1. Deterministic given the torch seed.
  void init_weights();
  void to_device(const torch::Device& device);
  // Serving with int8 weights: an int8 copy of the LM head (one scale per vocabulary row) that
  // forward_decode reads instead of the head itself wherever the decode gemv takes the step (CUDA,
  // ≤ 8 rows). Prefill and the CPU keep the exact head, which stays (it is also the tied embedding),
  // so this costs vocab × d_model bytes more memory and halves the head's bytes per token. Returns
  // those bytes; 0 (nothing made) when the model is not on a CUDA device.
  // Call once the weights are final: the copy does not follow later changes to the head's weight.
  // It is not used while the head is more than a plain product (an adapter, a bias: checked at each
  // step). The batcher's steps of more than 8 rows, and decoding without CUDA graphs or with
  // FATHOM_KERNELS=0, use the exact head, so their logits differ from these by int8 rounding.
  int64_t quantize_head_for_decode();
  bool head_quantized_for_decode() const { return head_q_.defined(); }

  // Parameter groups for an update that overlaps the next forward (ops::OverlappedUpdate), in the
  // order the forward reads them: 0 the embedding ("model.embed_tokens."; with tied embeddings also
  // the LM head), i + 1 block i ("model.layers.<i>."), n_layers + 1 the rest (final norm, an untied
  // LM head). The forward calls wait(g) before it reads group g; an empty function (the default)
  // waits for nothing.
  int param_group(const std::string& name) const;
  int param_groups() const { return static_cast<int>(args_.n_layers) + 2; }
  void set_param_wait(std::function<void(int)> wait) { param_wait_ = std::move(wait); }

  Decoder model{nullptr};
  Linear lm_head{nullptr};  // shares model.embed_tokens.weight when tied

 private:
  torch::Tensor hidden(const torch::Tensor& idx, torch::Tensor* aux, const SeqLayout& layout = {});
  bool head_is_plain_product() const;
  ModelArgs args_;
  double last_aux_loss_ = 0.0;
  RopeTables rope_;
  torch::Tensor head_q_, head_scale_;  // quantize_head_for_decode's int8 head and scales
  std::function<void(int)> param_wait_;
};
TORCH_MODULE(Transformer);

// Weights that take part in matrix products per token (for MFU): every linear layer plus the LM
// head, even when tied; for MoE layers the router, shared experts and top_k routed experts only
// (the active ones); not the embedding lookup or norms.
int64_t matmul_parameter_count(const ModelArgs& args);

}  // namespace fathom::model
