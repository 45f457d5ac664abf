// The estimator's formulas. Sources:
//  - FLOPs: PaLM (Chowdhery et al. 2022), appendix B: training FLOPs per token = 6N + 12·L·H·Q·T.
//  - Training-state bytes: ZeRO (Rajbhandari et al. 2020) §3: Adam keeps 2 moments per parameter;
//    stage 1 partitions optimizer state, stage 2 also gradients, over the data-parallel ranks.
//  - Activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
//    Models", §4: count the tensors each layer saves for backward; full recomputation keeps only
//    the layer input; selective recomputation drops the attention-core (s² sized) tensors.
// Notation: b micro-batch, s = T sequence length, n = b·s tokens, d d_model, L layers, H heads,
// Hkv key/value heads, h head size, V vocab, f d_ff, E routed experts, S shared, k top_k, e d_expert.
#include "engine/config/estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/config/detail.h"
#include "engine/config/rules.h"
#include "engine/config/schema.h"
#include "engine/config/units.h"

namespace fathom::config {

// ---- devices -------------------------------------------------------------------------------------

namespace {

constexpr int64_t MiB = 1024ll * 1024;
constexpr double kCpuFlopsPerCore = 50e9;  // rough sustained-peak of one AVX2/AVX-512 core, fp32

DeviceSpec cpu_device() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  DeviceSpec d{"cpu", pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0,
               kCpuFlopsPerCore * cores, kCpuFlopsPerCore * cores};
  return d;
}

// Memory as nvidia-smi reports it; dense (not 2:4 sparse) peaks from the datasheets.
const std::vector<DeviceSpec>& gpu_table() {
  static const std::vector<DeviceSpec> table = {
      {"b200", 183359 * MiB, 2250e12, 80e12},
      {"h200", 143771 * MiB, 989e12, 67e12},
      {"h100", 81559 * MiB, 989e12, 67e12},        // SXM
      {"h100-pcie", 81559 * MiB, 756e12, 51e12},
      {"a100-80g", 81920 * MiB, 312e12, 19.5e12},
      {"a100-40g", 40960 * MiB, 312e12, 19.5e12},
      {"l40s", 46068 * MiB, 362e12, 91.6e12},
      {"v100-32g", 32768 * MiB, 125e12, 15.7e12},  // fp16 tensor peak: V100 has no bf16
      {"v100-16g", 16384 * MiB, 125e12, 15.7e12},
      {"rtx4090", 24564 * MiB, 165e12, 82.6e12},
      {"rtx3090", 24576 * MiB, 71e12, 35.6e12},
      {"t4", 15360 * MiB, 65e12, 8.1e12},
  };
  return table;
}

const std::vector<std::pair<std::string, std::string>>& aliases() {
  static const std::vector<std::pair<std::string, std::string>> a = {
      {"a100", "a100-80g"}, {"v100", "v100-32g"}, {"h100-sxm", "h100"}, {"4090", "rtx4090"}, {"3090", "rtx3090"}};
  return a;
}

bool parse_size(const std::string& text, int64_t* out) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !(v > 0)) return false;
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::vector<std::pair<std::string, double>> units = {
      {"", 1}, {"b", 1}, {"k", 1024.0}, {"kib", 1024.0}, {"kb", 1e3}, {"m", 1024.0 * 1024}, {"mib", 1024.0 * 1024},
      {"mb", 1e6}, {"g", 1024.0 * 1024 * 1024}, {"gib", 1024.0 * 1024 * 1024}, {"gb", 1e9},
      {"t", 1024.0 * 1024 * 1024 * 1024}, {"tib", 1024.0 * 1024 * 1024 * 1024}, {"tb", 1e12}};
  for (const auto& [name, scale] : units)
    if (unit == name) {
      *out = static_cast<int64_t>(v * scale);
      return true;
    }
  return false;
}

}  // namespace

std::vector<DeviceSpec> known_devices() {
  std::vector<DeviceSpec> out = gpu_table();
  out.push_back(cpu_device());
  return out;
}

std::vector<DeviceSpec> parse_devices(const std::string& text, std::string* error) {
  std::vector<DeviceSpec> out;
  auto fail = [&](const std::string& message) {
    if (error) *error = message;
    return std::vector<DeviceSpec>{};
  };
  std::vector<std::string> names;
  for (const auto& d : gpu_table()) names.push_back(d.name);
  names.push_back("cpu");
  std::string item;
  std::stringstream ss(text);
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char ch) { return std::isspace(ch) != 0; }), item.end());
    if (item.empty()) continue;
    std::string spec = item;
    int64_t count = 1;
    if (const size_t colon = item.rfind(':'); colon != std::string::npos) {
      spec = item.substr(0, colon);
      const std::string n = item.substr(colon + 1);
      char* end = nullptr;
      count = std::strtoll(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || count < 1 || count > 4096)
        return fail("device count '" + n + "' in '" + item + "' is not a whole number from 1 to 4096");
    }
    DeviceSpec device;
    std::string lower = spec;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("mem=", 0) == 0) {
      int64_t bytes = 0;
      const std::string size_text = spec.substr(4);
      if (!size_text.empty() && std::all_of(size_text.begin(), size_text.end(), [](unsigned char ch) { return std::isdigit(ch) != 0; }))
        return fail("the size in '" + item + "' has no unit: write e.g. mem=24GiB or mem=80GB");
      if (!parse_size(size_text, &bytes))
        return fail("cannot read the size in '" + item + "': write e.g. mem=24GiB or mem=80GB");
      device = DeviceSpec{"mem=" + spec.substr(4), bytes, 0, 0};
    } else {
      for (const auto& [alias, target] : aliases())
        if (lower == alias) lower = target;
      bool found = false;
      if (lower == "cpu") {
        device = cpu_device();
        found = true;
      }
      for (const auto& d : gpu_table())
        if (d.name == lower) {
          device = d;
          found = true;
        }
      if (!found) {
        const std::string guess = detail::closest_match(lower, names);
        return fail("unknown device '" + spec + "'" + (guess.empty() ? "" : " (did you mean " + guess + "?)") +
                    "; known: " + detail::join(names, ", ") + ", or mem=SIZE");
      }
    }
    for (int64_t i = 0; i < count; ++i) out.push_back(device);
  }
  if (out.empty()) return fail("no device given: write e.g. h200:2, cpu or mem=24GiB");
  return out;
}

// ---- parameters ----------------------------------------------------------------------------------

namespace {

int64_t vocab_of(const RunConfig& c, bool* assumed) {
  *assumed = false;
  if (c.model.vocab_size > 0) return c.model.vocab_size;
  if (c.tokenizer.kind == "bpe") return c.tokenizer.vocab_size;
  if (c.tokenizer.kind == "gpt2") return 50257;
  *assumed = true;  // an hf tokenizer's size is known only once its file is read
  return 32000;
}

// Derived values may be 0 when the caller built a RunConfig by hand without loading it.
struct Shape {
  int64_t V, d, L, H, Hkv, h, f, E, S, k, e, dense_layers, moe_layers;
  bool mla;
  int64_t qk_head, v_head;  // per-head sizes of q·k and of v
};

Shape shape_of(const RunConfig& c, bool* vocab_assumed) {
  const auto& m = c.model;
  Shape s{};
  s.V = vocab_of(c, vocab_assumed);
  s.d = m.d_model;
  s.L = m.n_layers;
  s.H = m.n_heads;
  s.Hkv = m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads;
  s.h = m.head_dim > 0 ? m.head_dim : m.d_model / std::max<int64_t>(1, m.n_heads);
  s.f = m.d_ff > 0 ? m.d_ff : swiglu_hidden_dim(m.d_model, m.multiple_of);
  s.E = m.moe.n_routed_experts;
  s.S = m.moe.n_shared_experts;
  s.k = std::min(m.moe.top_k, std::max<int64_t>(s.E, 0));
  s.e = m.moe.d_expert > 0 ? m.moe.d_expert : s.f;
  s.moe_layers = s.E > 0 ? std::max<int64_t>(0, s.L - m.moe.first_k_dense) : 0;
  s.dense_layers = s.L - s.moe_layers;
  s.mla = m.attention == "mla";
  s.qk_head = s.mla ? m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim : s.h;
  s.v_head = s.mla ? m.mla.v_head_dim : s.h;
  return s;
}

// Weights of one attention block (all are matrices except the MLA latent norms).
void attention_params(const RunConfig& c, const Shape& s, int64_t* matrices, int64_t* norms) {
  if (!s.mla) {
    // q: d x H·h, k and v: d x Hkv·h (GQA), o: H·h x d.
    *matrices = s.d * s.H * s.h + 2 * s.d * s.Hkv * s.h + s.H * s.h * s.d;
    *norms = 0;
    return;
  }
  // DeepSeek-V2 MLA: q = W_qb·norm(W_qa·x) (or W_q·x without q compression);
  // [c_kv, k_rope] = W_kva·x; [k_nope, v] = W_kvb·norm(c_kv); out = W_o·attn.
  const auto& a = c.model.mla;
  int64_t m = 0, n = 0;
  if (a.q_lora_rank > 0) {
    m += s.d * a.q_lora_rank + a.q_lora_rank * s.H * s.qk_head;
    n += a.q_lora_rank;
  } else {
    m += s.d * s.H * s.qk_head;
  }
  m += s.d * (a.kv_lora_rank + a.qk_rope_head_dim);
  n += a.kv_lora_rank;
  m += a.kv_lora_rank * s.H * (a.qk_nope_head_dim + a.v_head_dim);
  m += s.H * a.v_head_dim * s.d;
  *matrices = m;
  *norms = n;
}

// LoRA adapter parameters: r·(in + out) per adapted linear layer.
int64_t lora_params(const RunConfig& c, const Shape& s) {
  const int64_t r = c.lora.r;
  auto linear = [&](const std::string& name, int64_t* in, int64_t* out, int64_t* copies) {
    *copies = s.L;
    const auto& a = c.model.mla;
    if (name == "q_proj") { *in = s.d; *out = s.H * s.qk_head; return true; }
    if (name == "k_proj") { *in = s.d; *out = s.Hkv * s.h; return !s.mla; }
    if (name == "v_proj") { *in = s.d; *out = s.Hkv * s.h; return !s.mla; }
    if (name == "o_proj") { *in = s.H * s.v_head; *out = s.d; return true; }
    if (name == "q_a_proj") { *in = s.d; *out = a.q_lora_rank; return s.mla && a.q_lora_rank > 0; }
    if (name == "q_b_proj") { *in = a.q_lora_rank; *out = s.H * s.qk_head; return s.mla && a.q_lora_rank > 0; }
    if (name == "kv_a_proj_with_mqa") { *in = s.d; *out = a.kv_lora_rank + a.qk_rope_head_dim; return s.mla; }
    if (name == "kv_b_proj") { *in = a.kv_lora_rank; *out = s.H * (a.qk_nope_head_dim + a.v_head_dim); return s.mla; }
    return false;
  };
  int64_t total = 0;
  for (const auto& name : c.lora.target_modules) {
    int64_t in = 0, out = 0, copies = 0;
    if (name == "query_key_value") {
      for (const char* n : {"q_proj", "k_proj", "v_proj"})
        if (linear(n, &in, &out, &copies)) total += copies * r * (in + out);
      continue;
    }
    if (name == "gate_proj" || name == "up_proj" || name == "down_proj") {
      // Dense layers, every routed expert and the shared experts (one MLP S·e wide).
      total += s.dense_layers * r * (s.d + s.f);
      total += s.moe_layers * (s.E * r * (s.d + s.e) + (s.S > 0 ? r * (s.d + s.S * s.e) : 0));
      continue;
    }
    if (linear(name, &in, &out, &copies)) total += copies * r * (in + out);
  }
  return total;
}

}  // namespace

ParamCounts count_parameters(const RunConfig& c) {
  ParamCounts p;
  const Shape s = shape_of(c, &p.vocab_assumed);
  p.vocab_size = s.V;
  int64_t attn_matrices = 0, attn_norms = 0;
  attention_params(c, s, &attn_matrices, &attn_norms);
  p.embedding = s.V * s.d;
  p.lm_head = c.model.tie_embeddings ? 0 : s.V * s.d;
  p.attention = s.L * attn_matrices;
  // RMSNorm weights: 2 per layer (attention, FFN) + the final norm + MLA's latent norms.
  p.norms = s.L * (2 * s.d + attn_norms) + s.d;
  // SwiGLU: w1 (gate) and w3 (up) are d x f, w2 (down) is f x d: 3·d·f.
  const int64_t dense_ffn = 3 * s.d * s.f;
  const int64_t expert = 3 * s.d * s.e;
  p.feed_forward = s.dense_layers * dense_ffn + s.moe_layers * (s.E + s.S) * expert;
  // Router: a d x E matrix; balance bias_update adds an E-sized bias buffer (not trained by SGD).
  const int64_t router_matrix = s.d * s.E;
  const int64_t router_bias = c.model.moe.balance == "bias_update" ? s.E : 0;
  p.router = s.moe_layers * (router_matrix + router_bias);
  p.total = p.embedding + p.lm_head + p.attention + p.norms + p.feed_forward + p.router;
  p.non_embedding = p.total - p.embedding - p.lm_head;
  // A token visits k of the E routed experts in each MoE layer.
  p.active_per_token = p.total - s.moe_layers * (s.E - s.k) * expert;
  // 6N counts weights in matrix products: attention, FFN (active experts), router and the LM
  // head (V·d even when tied to the embedding). The embedding lookup and norms are not matmuls.
  p.matmul_active = p.attention + s.dense_layers * dense_ffn + s.moe_layers * ((s.k + s.S) * expert + router_matrix) +
                    s.V * s.d;
  p.lora = lora_params(c, s);
  p.trainable = c.lora.enabled ? p.lora : p.total - s.moe_layers * router_bias;
  return p;
}

// ---- memory --------------------------------------------------------------------------------------

namespace {

struct ActivationParts {
  double per_layer_saved = 0;  // elements one layer keeps for backward, without recomputation
  double per_layer_core = 0;   // of which the attention core (softmax probabilities, b·H·s²)
  double largest_layer = 0;    // the layer with most saved elements (an MoE layer if any)
  double layer_input = 0;      // elements of one layer's input (b·s·d)
  double head_bytes = 0;       // final norm + logits + fp32 log-probs and their gradient, bytes
};

ActivationParts activation_parts(const RunConfig& c, int64_t micro_batch, double act_bytes, bool fused_attention) {
  bool assumed = false;
  const Shape sh = shape_of(c, &assumed);
  const double b = static_cast<double>(micro_batch), s = static_cast<double>(c.data.seq_len);
  const double n = b * s;
  const double d = sh.d;
  ActivationParts a;
  // Attention core: softmax output b·H·s² (used by both the softmax and the A·V backward). Assumes
  // the scores are materialised (the composite attention LibTorch runs on CPU); a fused kernel
  // (flash attention) saves only O(b·H·s) instead.
  a.per_layer_core = fused_attention ? 0.0 : b * sh.H * s * s;
  double attention = 0;
  if (!sh.mla) {
    // norm input, norm output (= q/k/v input), q, k, v after RoPE, attention output (o_proj input).
    attention = n * (2 * d + (sh.H + 2 * sh.Hkv) * sh.h + sh.H * sh.h);
  } else {
    const auto& m = c.model.mla;
    const double q_path = m.q_lora_rank > 0 ? 2.0 * m.q_lora_rank : 0.0;  // q_a output + its norm
    attention = n * (2 * d + q_path + sh.H * sh.qk_head /*q*/ + (m.kv_lora_rank + m.qk_rope_head_dim) /*kv_a out*/ +
                     m.kv_lora_rank /*latent norm*/ + sh.H * sh.qk_head /*k*/ + 2.0 * sh.H * m.v_head_dim /*v, out*/);
  }
  // SwiGLU saves its input, w1·x (for SiLU'), w3·x, silu(w1·x) and the product (w2 input): 4·f.
  const double dense_ffn = n * (2 * d + 4.0 * sh.f);
  // MoE: norm in/out, router logits (E), then per routed copy the gathered input, 4·e inside the
  // expert and its output; shared experts act as one MLP S·e wide.
  const double moe_ffn = n * (2 * d + sh.E + sh.k * (2 * d + 4.0 * sh.e) + 4.0 * sh.S * sh.e);
  const double layers_dense = static_cast<double>(sh.dense_layers), layers_moe = static_cast<double>(sh.moe_layers);
  a.per_layer_saved = attention + a.per_layer_core +
                      (layers_dense * dense_ffn + layers_moe * moe_ffn) / std::max<double>(1, sh.L);
  a.largest_layer = attention + a.per_layer_core + std::max(sh.dense_layers > 0 ? dense_ffn : 0.0, sh.moe_layers > 0 ? moe_ffn : 0.0);
  a.layer_input = n * d;
  // Final norm (in, out) at activation precision. Logits: fp32 logits, fp32 log-softmax kept for
  // the loss and their fp32 gradient at the start of backward (12 B); in bf16/fp16 also the
  // half-precision logits and their gradient (2 + 2 B). Checked against measured peaks on an H200
  // (docs/benchmarks.md): the head dominates activations for large vocabularies.
  const double head_per_logit = act_bytes >= 4 ? 12.0 : 12.0 + 2.0 * act_bytes;
  a.head_bytes = n * 2 * d * act_bytes + n * sh.V * head_per_logit;
  return a;
}

int64_t activation_bytes(const RunConfig& c, int64_t micro_batch, const std::string& mode, bool fused_attention) {
  const double p = c.train.precision == "fp32" ? 4 : 2;
  const ActivationParts a = activation_parts(c, micro_batch, p, fused_attention);
  const double L = static_cast<double>(c.model.n_layers);
  const double shards = c.model.activation_sharding.enabled ? std::max<int64_t>(1, c.model.activation_sharding.num_shards) : 1;
  double layers = 0;
  if (mode == "none") {
    layers = L * a.per_layer_saved / shards;
  } else if (mode == "selective") {
    layers = L * (a.per_layer_saved - a.per_layer_core) / shards;
  } else {  // full: keep each layer's input; recompute one layer at a time in backward (its full set)
    layers = L * a.layer_input / shards + a.largest_layer;
  }
  return static_cast<int64_t>(layers * p + a.head_bytes);
}

}  // namespace

MemoryBreakdown estimate_memory(const RunConfig& c, int64_t world_size, bool fused_attention) {
  MemoryBreakdown m;
  const ParamCounts p = count_parameters(c);
  const bool mixed = c.train.precision != "fp32";
  const double ws = static_cast<double>(std::max<int64_t>(1, world_size));
  const int64_t stage = c.optimizer.zero.stage;
  // Trainable weights: fp32 master copy (4 B) + for bf16/fp16 autocast a 2 B working copy cast for
  // the matmuls and saved for backward. Frozen LoRA base: compute dtype, or 1 B with int8.
  const double trainable = static_cast<double>(p.trainable);
  double params = trainable * (mixed ? 6 : 4);
  if (c.lora.enabled) params += static_cast<double>(p.total) * (c.lora.quantize_base == "int8" ? 1 : (mixed ? 2 : 4));
  // Gradients fp32 (4 B); ZeRO-2 keeps 1/world_size of them per rank.
  const double grads = trainable * 4 / (stage >= 2 ? ws : 1);
  // AdamW: first and second moment, fp32 (8 B); ZeRO-1 and -2 keep 1/world_size per rank.
  const double optim = trainable * 8 / (stage >= 1 ? ws : 1);
  m.parameters = static_cast<int64_t>(params);
  m.gradients = static_cast<int64_t>(grads);
  m.optimizer_state = static_cast<int64_t>(optim);
  m.activations_none = activation_bytes(c, c.train.micro_batch_size, "none", fused_attention);
  m.activations_selective = activation_bytes(c, c.train.micro_batch_size, "selective", fused_attention);
  m.activations_full = activation_bytes(c, c.train.micro_batch_size, "full", fused_attention);
  const std::string& mode = c.model.activation_checkpointing;
  m.activations = mode == "full" ? m.activations_full : mode == "selective" ? m.activations_selective : m.activations_none;
  m.total = m.parameters + m.gradients + m.optimizer_state + m.activations;
  return m;
}

// ---- the estimate --------------------------------------------------------------------------------

Estimate estimate(const RunConfig& c, const std::vector<DeviceSpec>& devices) {
  Estimate e;
  e.params = count_parameters(c);
  bool assumed = false;
  const Shape sh = shape_of(c, &assumed);
  const double T = static_cast<double>(c.data.seq_len);
  // PaLM appendix B: 6N per token for the weight matmuls (2 forward, 4 backward), plus
  // 12·L·H·Q·T for attention scores and the weighted sum (Q·K^T and A·V: 2·2·T·H·Q forward, x3
  // with backward). With MHA H·Q = d_model; MLA's q·k and v head sizes differ, so this uses
  // 6·L·T·H·(qk_head + v_head), which equals 12·L·d·T when both are d/H.
  e.attention_flops_per_token = 6.0 * sh.L * T * sh.H * static_cast<double>(sh.qk_head + sh.v_head);
  e.flops_per_token = 6.0 * static_cast<double>(e.params.matmul_active) + e.attention_flops_per_token;
  e.world_size = devices.size() > 1 ? static_cast<int64_t>(devices.size()) : c.distributed.world_size;
  const int64_t tokens_per_rank = c.train.micro_batch_size * c.train.gradient_accumulation_steps * c.data.seq_len;
  e.tokens_per_step = tokens_per_rank * e.world_size;
  e.flops_per_step = e.flops_per_token * static_cast<double>(e.tokens_per_step);
  // On GPUs the engine runs LibTorch 2.x's fused scaled-dot-product attention (no b·H·s² scores
  // kept); the CPU build materialises them.
  const bool fused = !devices.empty() && std::all_of(devices.begin(), devices.end(), [](const DeviceSpec& d) {
    return d.name != "cpu" && d.name.rfind("mem=", 0) != 0;
  });
  e.memory = estimate_memory(c, e.world_size, fused);

  const bool mixed = c.train.precision != "fp32";
  double slowest = 0;
  for (const auto& d : devices) {
    DeviceVerdict v;
    v.device = d;
    // Headroom: the CUDA context, cuBLAS workspaces, NCCL buffers and allocator fragmentation
    // take memory that no tensor accounts for; 10% is the usual margin.
    v.usable_bytes = static_cast<int64_t>(static_cast<double>(d.memory_bytes) * (1.0 - e.headroom_fraction));
    v.required_bytes = e.memory.total;
    v.fits = v.required_bytes <= v.usable_bytes;
    const double peak = mixed ? d.peak_flops : (d.peak_flops_fp32 > 0 ? d.peak_flops_fp32 : d.peak_flops);
    if (peak > 0) v.step_seconds = e.flops_per_token * static_cast<double>(tokens_per_rank) / (peak * e.assumed_mfu);
    slowest = v.step_seconds > 0 && (slowest == 0 || v.step_seconds > slowest) ? v.step_seconds : slowest;
    e.fits = e.fits && v.fits;
    if (d.name.rfind("v100", 0) == 0 && c.train.precision == "bf16")
      e.notes.push_back("V100 has no bf16 tensor cores: use precision fp16 there");
    e.devices.push_back(v);
  }
  if (slowest > 0) e.tokens_per_second = static_cast<double>(e.tokens_per_step) / slowest;

  if (!e.fits && !devices.empty()) {
    int64_t usable = e.devices.front().usable_bytes;
    for (const auto& v : e.devices) usable = std::min(usable, v.usable_bytes);
    RunConfig trial = c;
    auto push = [&](const std::string& what, std::vector<std::string> sets) {
      Suggestion s;
      s.description = what;
      s.overrides = std::move(sets);
      s.total_bytes = estimate_memory(trial, e.world_size, fused).total;
      s.fits = s.total_bytes <= usable;
      e.suggestions.push_back(s);
      return s.fits;
    };
    bool fits = false;
    if (trial.model.activation_checkpointing != "full") {
      trial.model.activation_checkpointing = "full";
      fits = push("enable activation checkpointing (keep only each layer's input, recompute the rest)",
                  {"model.activation_checkpointing=full"});
    }
    while (!fits && trial.train.micro_batch_size > 1) {
      trial.train.micro_batch_size /= 2;
      trial.train.gradient_accumulation_steps *= 2;
      fits = push("halve micro_batch_size and double gradient_accumulation_steps (same tokens per step)",
                  {"train.micro_batch_size=" + std::to_string(trial.train.micro_batch_size),
                   "train.gradient_accumulation_steps=" + std::to_string(trial.train.gradient_accumulation_steps)});
    }
    if (!fits && e.world_size > 1 && trial.optimizer.zero.stage < 2) {
      trial.optimizer.zero.stage = 2;
      fits = push("raise ZeRO to stage 2 (shard optimizer state and gradients over " + std::to_string(e.world_size) + " ranks)",
                  {"optimizer.zero.stage=2"});
    }
    if (!fits && trial.train.precision == "fp32") {
      RunConfig bf16 = trial;
      bf16.train.precision = "bf16";
      if (estimate_memory(bf16, e.world_size, fused).total < estimate_memory(trial, e.world_size, fused).total) {
        trial = bf16;
        fits = push("train in bf16 (halves activations; fp32 master weights are kept)", {"train.precision=bf16"});
      }
    }
    if (!fits)
      e.notes.push_back("still does not fit: use more GPUs with ZeRO stage 2, LoRA (lora.enabled: true), or a smaller model");
  }
  if (e.params.vocab_assumed)
    e.notes.push_back("model.vocab_size is 0 and the hf tokenizer's size is unknown here: 32000 assumed; set model.vocab_size for exact counts");
  if (c.train.precision != "fp32")
    e.notes.push_back(c.train.precision + " autocast keeps fp32 master weights, gradients and AdamW moments; a 2-byte working copy of the weights is counted with the parameters");
  if (c.optimizer.zero.stage > 0)
    e.notes.push_back("ZeRO stage " + std::to_string(c.optimizer.zero.stage) +
                      " sharding is not implemented by this engine yet (issue #8): until it is, a rank needs the stage-0 memory");
  e.notes.push_back(fused ? "activations assume fused attention (no b·H·s² scores kept), as the engine runs on GPUs"
                          : "activations assume materialised attention scores (b·H·s² per layer), as the engine runs on CPU");
  if (!devices.empty() && e.devices.front().step_seconds > 0)
    e.notes.push_back("step times assume " + std::to_string(static_cast<int>(e.assumed_mfu * 100)) +
                      "% of the datasheet peak (MFU); memory leaves " + std::to_string(static_cast<int>(e.headroom_fraction * 100)) +
                      "% of each device for the framework");
  return e;
}

// ---- output --------------------------------------------------------------------------------------

namespace {
std::string pad(std::string s, size_t width) {
  // Width in characters, counting UTF-8 continuation bytes as nothing.
  size_t chars = 0;
  for (unsigned char ch : s) chars += (ch & 0xC0) != 0x80;
  if (chars < width) s.append(width - chars, ' ');
  return s;
}
}  // namespace

std::string format_estimate(const RunConfig& c, const Estimate& e) {
  std::ostringstream o;
  const auto& m = c.model;
  const auto& p = e.params;
  o << "Model       " << m.family << ", " << m.n_layers << " layers, d_model " << m.d_model << ", " << m.n_heads << " heads";
  if (m.attention == "mha") o << " (" << (m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads) << " kv)";
  else o << " (MLA, kv rank " << m.mla.kv_lora_rank << ")";
  o << ", d_ff " << (m.d_ff > 0 ? m.d_ff : swiglu_hidden_dim(m.d_model, m.multiple_of));
  if (m.moe.n_routed_experts > 0)
    o << ", MoE " << m.moe.n_routed_experts << " routed + " << m.moe.n_shared_experts << " shared, top-" << m.moe.top_k
      << ", d_expert " << (m.moe.d_expert > 0 ? m.moe.d_expert : m.d_ff);
  o << ", vocab " << p.vocab_size << (p.vocab_assumed ? " (assumed)" : "") << ", seq " << c.data.seq_len << "\n\n";

  o << "Parameters\n";
  auto row = [&](const std::string& name, double value, const std::string& note = "") {
    o << "  " << pad(name, 18) << pad(format_count(value), 10) << note << "\n";
  };
  row("total", static_cast<double>(p.total));
  row("embedding", static_cast<double>(p.embedding), m.tie_embeddings ? "tied with the LM head" : "");
  row("non-embedding", static_cast<double>(p.non_embedding));
  if (m.moe.n_routed_experts > 0) row("active per token", static_cast<double>(p.active_per_token));
  row("trainable", static_cast<double>(p.trainable), c.lora.enabled ? "LoRA adapters" : "");
  o << "  (attention " << format_count(static_cast<double>(p.attention)) << ", feed-forward "
    << format_count(static_cast<double>(p.feed_forward)) << ", router " << format_count(static_cast<double>(p.router))
    << ", norms " << format_count(static_cast<double>(p.norms)) << ", LM head "
    << (p.lm_head ? format_count(static_cast<double>(p.lm_head)) : std::string("tied")) << ")\n\n";

  o << "Compute     " << format_flops(e.flops_per_token) << "/token (6N + attention " << format_flops(e.attention_flops_per_token)
    << "; N = " << format_count(static_cast<double>(p.matmul_active)) << " matmul weights), "
    << format_flops(e.flops_per_step) << "/step of " << format_count(static_cast<double>(e.tokens_per_step)) << " tokens\n\n";

  const auto& mem = e.memory;
  o << "Memory per rank (" << c.train.precision << ", ZeRO " << c.optimizer.zero.stage << ", world " << e.world_size
    << ", micro-batch " << c.train.micro_batch_size << " x " << c.data.seq_len << ", checkpointing "
    << m.activation_checkpointing << ")\n";
  auto mrow = [&](const std::string& name, int64_t bytes, const std::string& note) {
    o << "  " << pad(name, 18) << pad(format_bytes(static_cast<double>(bytes)), 12) << note << "\n";
  };
  const bool mixed = c.train.precision != "fp32";
  mrow("parameters", mem.parameters, mixed ? "fp32 master + 2-byte working copy" : "fp32");
  mrow("gradients", mem.gradients, c.optimizer.zero.stage >= 2 ? "fp32, sharded (ZeRO-2)" : "fp32");
  mrow("optimizer state", mem.optimizer_state, c.optimizer.zero.stage >= 1 ? "AdamW m, v fp32, sharded" : "AdamW m, v fp32");
  mrow("activations", mem.activations,
       "none " + format_bytes(static_cast<double>(mem.activations_none)) + " / selective " +
           format_bytes(static_cast<double>(mem.activations_selective)) + " / full " +
           format_bytes(static_cast<double>(mem.activations_full)));
  mrow("total", mem.total, "");

  if (!e.devices.empty()) {
    o << "\nDevices (usable = " << static_cast<int>((1 - e.headroom_fraction) * 100) << "% of memory)\n";
    for (size_t i = 0; i < e.devices.size(); ++i) {
      const auto& v = e.devices[i];
      o << "  " << pad(v.device.name + " #" + std::to_string(i), 14) << pad(format_bytes(static_cast<double>(v.usable_bytes)), 12)
        << pad(v.fits ? "fits" : "DOES NOT FIT", 14);
      if (v.step_seconds > 0) o << "~" << format_seconds(v.step_seconds) << "/step";
      o << "\n";
    }
    if (e.tokens_per_second > 0)
      o << "  throughput ~" << format_count(e.tokens_per_second) << " tok/s; " << c.train.max_steps << " steps in ~"
        << format_seconds(static_cast<double>(e.tokens_per_step) * static_cast<double>(c.train.max_steps) / e.tokens_per_second) << "\n";
  }
  if (!e.suggestions.empty()) {
    o << "\nTo fit (each step includes the ones above)\n";
    for (const auto& s : e.suggestions) {
      o << "  - " << s.description << ": " << format_bytes(static_cast<double>(s.total_bytes)) << (s.fits ? " fits" : "") << "\n      ";
      for (const auto& set : s.overrides) o << " --set " << set;
      o << "\n";
    }
  }
  if (!e.notes.empty()) {
    o << "\nNotes\n";
    for (const auto& n : e.notes) o << "  - " << n << "\n";
  }
  return o.str();
}

std::string estimate_to_json(const Estimate& e) {
  using json = nlohmann::ordered_json;
  json j;
  const auto& p = e.params;
  j["params"] = {{"total", p.total}, {"embedding", p.embedding}, {"non_embedding", p.non_embedding},
                 {"active_per_token", p.active_per_token}, {"trainable", p.trainable}, {"attention", p.attention},
                 {"feed_forward", p.feed_forward}, {"router", p.router}, {"norms", p.norms}, {"lm_head", p.lm_head},
                 {"lora", p.lora}, {"matmul_active", p.matmul_active}, {"vocab_size", p.vocab_size},
                 {"vocab_assumed", p.vocab_assumed}};
  j["flops_per_token"] = e.flops_per_token;
  j["attention_flops_per_token"] = e.attention_flops_per_token;
  j["tokens_per_step"] = e.tokens_per_step;
  j["flops_per_step"] = e.flops_per_step;
  j["world_size"] = e.world_size;
  const auto& m = e.memory;
  j["memory"] = {{"parameters", m.parameters}, {"gradients", m.gradients}, {"optimizer_state", m.optimizer_state},
                 {"activations", m.activations}, {"activations_none", m.activations_none},
                 {"activations_selective", m.activations_selective}, {"activations_full", m.activations_full},
                 {"total", m.total}};
  j["devices"] = json::array();
  for (const auto& v : e.devices)
    j["devices"].push_back({{"name", v.device.name}, {"memory_bytes", v.device.memory_bytes},
                            {"peak_flops", v.device.peak_flops}, {"usable_bytes", v.usable_bytes},
                            {"required_bytes", v.required_bytes}, {"fits", v.fits}, {"step_seconds", v.step_seconds}});
  j["fits"] = e.fits;
  j["suggestions"] = json::array();
  for (const auto& s : e.suggestions)
    j["suggestions"].push_back({{"description", s.description}, {"overrides", s.overrides}, {"total_bytes", s.total_bytes}, {"fits", s.fits}});
  j["headroom_fraction"] = e.headroom_fraction;
  j["assumed_mfu"] = e.assumed_mfu;
  j["tokens_per_second"] = e.tokens_per_second;
  j["notes"] = e.notes;
  return j.dump(2) + "\n";
}

}  // namespace fathom::config
