// The schema table (one row per key) and what is generated from it: defaults, value text, the
// Markdown reference and the JSON Schema. Defaults are read from RunConfig{} so they live in one place.
#include "engine/config/schema.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/config/rules.h"

namespace fathom::config {
namespace {

// Fluent builder so that each table row reads as one line of facts.
struct K {
  KeyInfo k;
  K(const char* path, KeyType type, FieldFn field, const char* description) {
    k.path = path;
    k.type = type;
    k.field = field;
    k.description = description;
  }
  K& range(double lo, double hi) { k.min = lo; k.max = hi; return *this; }
  K& min(double lo) { k.min = lo; return *this; }
  K& above(double lo) { k.min = lo; k.min_exclusive = true; return *this; }   // > lo
  K& below(double hi) { k.max = hi; k.max_exclusive = true; return *this; }   // < hi
  K& unit(const char* u) { k.unit = u; return *this; }
  K& choices(std::vector<std::string> c) { k.choices = std::move(c); return *this; }
  K& paths(PathKind p) { k.path_kind = p; return *this; }
  operator KeyInfo() const { return k; }
};

// #p is the dotted key path and &c.p the field: the two cannot drift apart.
#define FATHOM_KEY(p, T, desc) \
  K(#p, KeyType::T, [](RunConfig& c) -> FieldPtr { return &c.p; }, desc)

std::vector<KeyInfo> build_keys() {
  constexpr double kMaxInt = 9.0e15;  // below 2^53, so every bound is exact as a double
  std::vector<KeyInfo> keys = {
      // ---- run
      FATHOM_KEY(run.name, String, "Name of the run, shown in the workbench and used in the run id."),
      FATHOM_KEY(run.seed, Int, "Seed of every random number generator (initialisation, data order, sampling).").range(0, kMaxInt),
      FATHOM_KEY(run.workspace, String, "Directory holding runs/ and data shards; \"\" = $XDG_DATA_HOME/fathom or ~/.local/share/fathom.").paths(PathKind::FileRelative),
      FATHOM_KEY(run.device, Enum, "Where to compute: auto = cuda when a GPU is visible, else cpu.").choices({"auto", "cpu", "cuda"}),
      FATHOM_KEY(run.threads, Int, "CPU threads for intra-op parallelism; 0 = the runtime's default.").range(0, 4096).unit("threads"),

      // ---- model
      FATHOM_KEY(model.family, Enum, "Model family: llama = dense LLaMA-style; qwen2 = LLaMA-style with q/k/v biases (Qwen2); deepseek = DeepSeek-style (MoE and/or MLA).").choices({"llama", "qwen2", "deepseek"}),
      FATHOM_KEY(model.vocab_size, Int, "Rows of the embedding; 0 = take the tokenizer's vocabulary size.").range(0, 1 << 24).unit("tokens"),
      FATHOM_KEY(model.d_model, Int, "Width of the residual stream (hidden size).").range(1, 1 << 17),
      FATHOM_KEY(model.n_layers, Int, "Number of transformer blocks.").range(1, 1024).unit("layers"),
      FATHOM_KEY(model.n_heads, Int, "Attention (query) heads per layer.").range(1, 1024).unit("heads"),
      FATHOM_KEY(model.n_kv_heads, Int, "Key/value heads (grouped-query attention); 0 = n_heads (plain multi-head).").range(0, 1024).unit("heads"),
      FATHOM_KEY(model.head_dim, Int, "Width of one attention head; 0 = d_model / n_heads.").range(0, 4096),
      FATHOM_KEY(model.attention_bias, Bool, "Add biases to the q/k/v/o projections (LLaMA's attention_bias; qwen2 has q/k/v biases regardless)."),
      FATHOM_KEY(model.d_ff, Int, "Hidden width of the SwiGLU feed-forward; 0 = floor(8/3 d_model) rounded up to multiple_of.").range(0, 1 << 20),
      FATHOM_KEY(model.multiple_of, Int, "The automatic d_ff is rounded up to a multiple of this (tensor-core friendly sizes).").range(1, 1 << 16),
      FATHOM_KEY(model.max_seq_len, Int, "Longest sequence the model is built for (RoPE tables, KV cache).").range(1, 1 << 22).unit("tokens"),
      FATHOM_KEY(model.rope_theta, Float, "RoPE base frequency; larger values suit longer contexts (LLaMA 3: 500000).").above(0),
      FATHOM_KEY(model.norm_eps, Float, "Epsilon of the RMSNorm layers.").above(0).below(1),
      FATHOM_KEY(model.tie_embeddings, Bool, "Share the token embedding matrix with the LM head."),
      FATHOM_KEY(model.init_std, Float, "Standard deviation of the normal initialisation of weight matrices.").range(0, 1).above(0),
      FATHOM_KEY(model.attention, Enum, "mha = multi-head / grouped-query attention; mla = DeepSeek multi-head latent attention (needs model.mla).").choices({"mha", "mla"}),
      FATHOM_KEY(model.activation_checkpointing, Enum, "Recompute in backward: full = keep only each block's input; selective = recompute only the attention core.").choices({"none", "full", "selective"}),
      FATHOM_KEY(model.init_from, String, "Initialise the weights from a Fathom checkpoint directory or a Hugging Face model directory (config.json + *.safetensors); \"\" = random. Ignored when resuming.").paths(PathKind::FileRelative),
      FATHOM_KEY(model.activation_sharding.enabled, Bool, "Split saved activations into num_shards pieces across the ranks (sequence-parallel style)."),
      FATHOM_KEY(model.activation_sharding.num_shards, Int, "Number of pieces saved activations are split into.").range(1, 1024).unit("shards"),
      FATHOM_KEY(model.moe.n_routed_experts, Int, "Routed experts per MoE layer; 0 = dense model (no MoE).").range(0, 4096).unit("experts"),
      FATHOM_KEY(model.moe.n_shared_experts, Int, "Always-active shared experts per MoE layer (DeepSeekMoE).").range(0, 256).unit("experts"),
      FATHOM_KEY(model.moe.top_k, Int, "Routed experts each token is sent to.").range(1, 256).unit("experts"),
      FATHOM_KEY(model.moe.d_expert, Int, "Hidden width of one expert's SwiGLU; 0 = d_ff.").range(0, 1 << 20),
      FATHOM_KEY(model.moe.first_k_dense, Int, "The first k layers keep a dense feed-forward instead of MoE.").range(0, 1024).unit("layers"),
      FATHOM_KEY(model.moe.gate, Enum, "Router scoring: softmax over experts, or sigmoid per expert (DeepSeek-V3).").choices({"softmax", "sigmoid"}),
      FATHOM_KEY(model.moe.balance, Enum, "Load balancing: auxiliary loss, auxiliary-loss-free bias updates (DeepSeek-V3), or none.").choices({"aux_loss", "bias_update", "none"}),
      FATHOM_KEY(model.moe.aux_loss_coef, Float, "Weight of the load-balancing loss (balance: aux_loss).").range(0, 10),
      FATHOM_KEY(model.moe.bias_update_rate, Float, "Step of the per-expert routing bias update (balance: bias_update).").range(0, 1),
      FATHOM_KEY(model.moe.capacity_factor, Float, "Expert capacity as a multiple of the even share of tokens; 0 = no cap (no token dropped).").range(0, 64),
      FATHOM_KEY(model.moe.norm_topk_prob, Bool, "Renormalise each token's top-k gate weights to sum to 1."),
      FATHOM_KEY(model.moe.routed_scaling_factor, Float, "Scale of the routed experts' output (DeepSeek-V3: 2.5).").range(0, 1000).above(0),
      FATHOM_KEY(model.moe.n_group, Int, "Expert groups for group-limited routing (DeepSeek-V3: 8); 1 = no grouping.").range(1, 4096).unit("groups"),
      FATHOM_KEY(model.moe.topk_group, Int, "Groups each token may route into (DeepSeek-V3: 4).").range(1, 4096).unit("groups"),
      FATHOM_KEY(model.mla.kv_lora_rank, Int, "Rank of the compressed key/value latent (DeepSeek-V2: 512).").range(0, 1 << 16),
      FATHOM_KEY(model.mla.q_lora_rank, Int, "Rank of the compressed query; 0 = no query compression.").range(0, 1 << 16),
      FATHOM_KEY(model.mla.qk_rope_head_dim, Int, "Per-head dimensions of queries/keys that carry RoPE (shared key part).").range(0, 4096),
      FATHOM_KEY(model.mla.qk_nope_head_dim, Int, "Per-head dimensions of queries/keys without RoPE.").range(0, 4096),
      FATHOM_KEY(model.mla.v_head_dim, Int, "Per-head dimension of values.").range(0, 4096),
      FATHOM_KEY(model.mla.rope_interleave, Bool, "Rotary pairs are interleaved (even, odd) dimensions, as in DeepSeek-V3 checkpoints; false = first/second halves."),

      // ---- tokenizer
      FATHOM_KEY(tokenizer.kind, Enum, "bpe = our byte-level BPE, trained on data.train when path does not exist yet; gpt2 = encoder.json + vocab.bpe; hf = tokenizer.json.").choices({"bpe", "gpt2", "hf"}),
      FATHOM_KEY(tokenizer.path, String, "Tokenizer directory or tokenizer.json; \"\" (bpe only) = tokenizer.json beside the prepared token shards.").paths(PathKind::FileRelative),
      FATHOM_KEY(tokenizer.vocab_size, Int, "Vocabulary size when training a bpe tokenizer (256 byte tokens and <|endoftext|> included; training needs at least 257).").range(256, 1 << 22).unit("tokens"),
      FATHOM_KEY(tokenizer.train_bytes, Int, "Bytes of training text used to train the bpe tokenizer; 0 = all.").range(0, kMaxInt).unit("bytes"),

      // ---- data
      FATHOM_KEY(data.train, StringList, "Training text: files, directories or globs (a single string is a list of one).").paths(PathKind::FileRelative),
      FATHOM_KEY(data.format, Enum, "text = plain text files; jsonl = one JSON object per line (text_field); auto = by extension.").choices({"text", "jsonl", "auto"}),
      FATHOM_KEY(data.text_field, String, "Field of each jsonl record that holds the text."),
      FATHOM_KEY(data.validation_fraction, Float, "Fraction of the tokens held out for evaluation.").range(0, 0.5),
      FATHOM_KEY(data.shards_dir, String, "Where tokenized shards are cached; \"\" = under the workspace.").paths(PathKind::FileRelative),
      FATHOM_KEY(data.task, Enum, "lm = next-token prediction on plain text; instruct = JSONL of prompt/completion pairs or chat messages, loss on the completions only.").choices({"lm", "instruct"}),
      FATHOM_KEY(data.chat_template, Enum, "How instruct examples become text: auto = by model family and tokenizer (qwen2 chatml, llama llama3 when its tokenizer has the header tokens, deepseek, else plain).").choices({"auto", "plain", "chatml", "llama3", "deepseek"}),
      FATHOM_KEY(data.packing, Bool, "instruct: pack several short examples into each sequence; attention and positions never cross examples."),
      FATHOM_KEY(data.seq_len, Int, "Tokens per training sequence (context length used in training).").range(1, 1 << 22).unit("tokens"),

      // ---- train
      FATHOM_KEY(train.micro_batch_size, Int, "Sequences per forward/backward pass on each rank.").range(1, 1 << 20).unit("sequences"),
      FATHOM_KEY(train.gradient_accumulation_steps, Int, "Micro-batches summed before each optimizer step (effective batch = micro_batch_size x this x world_size).").range(1, 1 << 20).unit("micro-batches"),
      FATHOM_KEY(train.max_steps, Int, "Optimizer steps to train for.").range(1, kMaxInt).unit("steps"),
      FATHOM_KEY(train.precision, Enum, "Compute precision; bf16/fp16/fp8 keep fp32 master weights. fp16 needs CUDA and uses a loss scaler. fp8: bf16 with the linear layers' products in FP8 (e4m3 forward, e5m2 gradients, per-tensor scales), on Hopper/Ada GPUs.").choices({"fp32", "bf16", "fp16", "fp8"}),
      FATHOM_KEY(train.fp16_enabled, Bool, "The brief's switch: true means precision fp16 (a more derived layer wins over precision)."),
      FATHOM_KEY(train.grad_clip, Float, "Clip the global gradient norm to this; 0 = off.").range(0, 1e6),
      FATHOM_KEY(train.log_interval, Int, "Report a metric record every N steps.").range(1, kMaxInt).unit("steps"),
      FATHOM_KEY(train.eval_interval, Int, "Evaluate on the validation split every N steps; 0 = off.").range(0, kMaxInt).unit("steps"),
      FATHOM_KEY(train.eval_batches, Int, "Micro-batches per evaluation.").range(1, 1 << 20).unit("batches"),
      FATHOM_KEY(train.sample_interval, Int, "Generate a text sample every N steps; 0 = off.").range(0, kMaxInt).unit("steps"),
      FATHOM_KEY(train.sample_prompt, String, "Prompt of the periodic samples (\"\" = start from the beginning-of-text token)."),
      FATHOM_KEY(train.sample_tokens, Int, "Tokens generated per sample.").range(1, 1 << 20).unit("tokens"),
      FATHOM_KEY(train.max_nan_skips, Int, "Steps with a non-finite loss or gradient skipped before the run fails.").range(0, 1 << 20).unit("steps"),
      FATHOM_KEY(train.deterministic, Bool, "Bit-reproducible runs on CUDA: deterministic kernels only (embedding backward, cuBLAS workspace, attention by SDPA's math path), slower, and attention keeps T×T scores in memory. CPU runs are deterministic anyway."),

      // ---- optimizer
      FATHOM_KEY(optimizer.name, Enum, "Optimizer.").choices({"adamw"}),
      FATHOM_KEY(optimizer.lr, Float, "Peak learning rate (after warmup).").range(0, 10).above(0),
      FATHOM_KEY(optimizer.min_lr, Float, "Learning rate at the end of the cosine/linear decay.").range(0, 10),
      FATHOM_KEY(optimizer.weight_decay, Float, "Decoupled weight decay (AdamW), applied to weight matrices only.").range(0, 10),
      FATHOM_KEY(optimizer.beta1, Float, "AdamW first-moment decay.").min(0).below(1),
      FATHOM_KEY(optimizer.beta2, Float, "AdamW second-moment decay.").min(0).below(1),
      FATHOM_KEY(optimizer.eps, Float, "AdamW denominator epsilon.").range(0, 1).above(0),
      FATHOM_KEY(optimizer.schedule, Enum, "Learning-rate decay after warmup, from lr to min_lr over max_steps.").choices({"cosine", "linear", "constant"}),
      FATHOM_KEY(optimizer.warmup_steps, Int, "Linear warmup from 0 to lr.").range(0, kMaxInt).unit("steps"),
      FATHOM_KEY(optimizer.zero.stage, Int, "ZeRO: 0 = off; 1 = shard optimizer state over the ranks; 2 = also shard gradients.").range(0, 2),

      // ---- lora
      FATHOM_KEY(lora.enabled, Bool, "Fine-tune low-rank adapters instead of all weights; the base model is frozen."),
      FATHOM_KEY(lora.r, Int, "Rank of each adapter (A: r x in, B: out x r).").range(1, 1 << 16),
      FATHOM_KEY(lora.lora_alpha, Float, "Adapter scale numerator: the update is (lora_alpha / r) B A (or / sqrt(r) with use_rslora).").range(0, 1e6).above(0),
      FATHOM_KEY(lora.target_modules, StringList, "Linear layers that get adapters (Hugging Face names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; query_key_value = q, k and v)."),
      FATHOM_KEY(lora.dropout, Float, "Dropout on the adapter input.").min(0).below(1),
      FATHOM_KEY(lora.use_rslora, Bool, "Rank-stabilised scaling lora_alpha / sqrt(r) (Kalajdzievski 2023)."),
      FATHOM_KEY(lora.base, String, "The base model being fine-tuned: a Fathom checkpoint directory (…/checkpoints/step-N) or a Hugging Face model directory.").paths(PathKind::FileRelative),
      FATHOM_KEY(lora.adapter, String, "Start from an existing adapter: a directory with adapter_model.safetensors + adapter_config.json (PEFT's format, or a Fathom fine-tune checkpoint).").paths(PathKind::FileRelative),
      FATHOM_KEY(lora.quantize_base, Enum, "Store the frozen base weights as int8 to save memory.").choices({"none", "int8"}),

      // ---- checkpoint
      FATHOM_KEY(checkpoint.save_dir, String, "Checkpoint directory, relative to the run directory.").paths(PathKind::Expand),
      FATHOM_KEY(checkpoint.save_interval, Int, "Save every N seconds of training; 0 = off.").range(0, kMaxInt).unit("s"),
      FATHOM_KEY(checkpoint.save_every_steps, Int, "Save every N steps; 0 = off.").range(0, kMaxInt).unit("steps"),
      FATHOM_KEY(checkpoint.keep_n_latest, Int, "Keep the N newest checkpoints, delete older ones; 0 = keep all.").range(0, 1 << 20).unit("checkpoints"),
      FATHOM_KEY(checkpoint.keep_best, Int, "Also keep the N checkpoints with the lowest eval loss; 0 = off.").range(0, 1 << 20).unit("checkpoints"),
      FATHOM_KEY(checkpoint.async, Bool, "Write checkpoints on a background thread (the step loop only waits for the copy to host memory)."),

      // ---- distributed
      FATHOM_KEY(distributed.backend, Enum, "Collective backend: gloo works on CPU and GPU; nccl needs CUDA and is the fast one for GPUs.").choices({"nccl", "gloo"}),
      FATHOM_KEY(distributed.init_method, String, "Rendezvous: env:// (MASTER_ADDR/MASTER_PORT), tcp://host:port or file:///path."),
      FATHOM_KEY(distributed.world_size, Int, "Total number of ranks (processes) over all nodes.").range(1, 1 << 20).unit("ranks"),
      FATHOM_KEY(distributed.rank, Int, "This process's rank, 0 .. world_size-1 (different on every node).").range(0, 1 << 20),
      FATHOM_KEY(distributed.gpu_ids, IntList, "Local GPU indices this node uses.").min(0),
      FATHOM_KEY(distributed.timeout_s, Int, "Timeout of collectives and rendezvous.").range(1, 1 << 20).unit("s"),

      // ---- telemetry
      FATHOM_KEY(telemetry.system_interval_s, Float, "Period of system records (GPU utilisation, memory, temperature).").range(0.1, 86400).unit("s"),
      FATHOM_KEY(telemetry.prometheus_port, Int, "Port of the Prometheus /metrics endpoint; 0 = off.").range(0, 65535),
      FATHOM_KEY(telemetry.prometheus_bind, String, "Address the Prometheus endpoint listens on (0.0.0.0 = every interface)."),

      // ---- serve
      FATHOM_KEY(serve.host, String, "Address the HTTP API listens on."),
      FATHOM_KEY(serve.port, Int, "Port of the HTTP API.").range(1, 65535),
      FATHOM_KEY(serve.max_batch_size, Int, "Requests decoded together in one batch.").range(1, 4096).unit("requests"),
      FATHOM_KEY(serve.max_kv_tokens, Int, "KV-cache budget in tokens over all requests; 0 = size it from free memory.").range(0, kMaxInt).unit("tokens"),
      FATHOM_KEY(serve.quantize, Enum, "Weight quantisation for serving: int8 = static per-channel; dynamic_int8 = int8 weights, activations quantised on the fly.").choices({"none", "int8", "dynamic_int8"}),
      FATHOM_KEY(serve.api_key_env, String, "Name of the environment variable holding the API key; \"\" = no authentication."),
      FATHOM_KEY(serve.default_max_tokens, Int, "max_tokens of a request that does not give one.").range(1, 1 << 20).unit("tokens"),
  };
  const RunConfig defaults{};
  for (auto& key : keys) key.default_value = get_value(defaults, key);
  return keys;
}
#undef FATHOM_KEY

const std::map<std::string, size_t>& key_index() {
  static const std::map<std::string, size_t> index = [] {
    std::map<std::string, size_t> m;
    const auto& keys = schema_keys();
    for (size_t i = 0; i < keys.size(); ++i) m[keys[i].path] = i;
    return m;
  }();
  return index;
}

// Never throws: a value that is not UTF-8 (set in code; the loader refuses such text) is written
// with U+FFFD in place of the bad bytes.
std::string json_quote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

const char* key_type_name(KeyType type) {
  switch (type) {
    case KeyType::Bool: return "bool";
    case KeyType::Int: return "int";
    case KeyType::Float: return "float";
    case KeyType::String: return "string";
    case KeyType::Enum: return "enum";
    case KeyType::StringList: return "string list";
    case KeyType::IntList: return "int list";
  }
  return "?";
}

std::string KeyInfo::section() const { return path.substr(0, path.find('.')); }
std::string KeyInfo::name() const { return path.substr(path.rfind('.') + 1); }

const std::vector<KeyInfo>& schema_keys() {
  static const std::vector<KeyInfo> keys = build_keys();
  return keys;
}

const std::vector<SectionInfo>& schema_sections() {
  static const std::vector<SectionInfo> sections = {
      {"run", "Run identity and placement."},
      {"model", "Architecture: dense LLaMA-style, or DeepSeek-style with MoE and/or MLA."},
      {"model.activation_sharding", "Splitting saved activations across ranks (the brief's activation_sharding)."},
      {"model.moe", "Mixture of experts (DeepSeekMoE: fine-grained routed experts plus shared experts)."},
      {"model.mla", "Multi-head latent attention (DeepSeek-V2); used when model.attention is mla."},
      {"tokenizer", "Tokenizer: train our own byte-level BPE, or load GPT-2 / Hugging Face files."},
      {"data", "Training data and how it is cut into sequences."},
      {"train", "The training loop."},
      {"optimizer", "AdamW and the learning-rate schedule."},
      {"optimizer.zero", "ZeRO sharding of optimizer state and gradients over the data-parallel ranks."},
      {"lora", "Low-rank adapters for fine-tuning."},
      {"checkpoint", "Checkpoints: when to save, how many to keep."},
      {"distributed", "Data-parallel training over several processes (the brief's distributed block)."},
      {"telemetry", "System metrics and the Prometheus endpoint."},
      {"serve", "The HTTP inference service (fathom-engine serve)."},
  };
  return sections;
}

const KeyInfo* find_key(const std::string& path) {
  const auto& index = key_index();
  auto it = index.find(path);
  return it == index.end() ? nullptr : &schema_keys()[it->second];
}

const SectionInfo* find_section(const std::string& path) {
  for (const auto& s : schema_sections())
    if (s.path == path) return &s;
  return nullptr;
}

std::vector<std::string> schema_children(const std::string& group_path) {
  std::vector<std::string> out;
  const std::string prefix = group_path.empty() ? "" : group_path + ".";
  auto add = [&](const std::string& full) {
    if (full.compare(0, prefix.size(), prefix) != 0 || full.size() == prefix.size()) return;
    std::string rest = full.substr(prefix.size());
    std::string child = rest.substr(0, rest.find('.'));
    for (const auto& c : out)
      if (c == child) return;
    out.push_back(child);
  };
  for (const auto& k : schema_keys()) add(k.path);
  for (const auto& s : schema_sections()) add(s.path);
  return out;
}

Value get_value(const RunConfig& config, const KeyInfo& key) {
  // The accessor needs a mutable RunConfig; it only takes an address, nothing is written.
  FieldPtr p = key.field(const_cast<RunConfig&>(config));
  return std::visit([](auto* field) -> Value { return *field; }, p);
}

void set_value(RunConfig& config, const KeyInfo& key, const Value& value) {
  FieldPtr p = key.field(config);
  std::visit(
      [&](auto* field) {
        using T = std::decay_t<decltype(*field)>;
        if (const T* v = std::get_if<T>(&value)) *field = *v;
      },
      p);
}

std::string format_double(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  std::string s = buf;
  // Whole numbers read better written out: 500000.0, not 5e+05.
  if (s.find("e+") != std::string::npos && std::fabs(value) < 1e16 && std::floor(value) == value) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
    s = buf;
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string value_to_string(const Value& value) {
  struct Visitor {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return format_double(d); }
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(const std::vector<std::string>& v) const {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
      return out + "]";
    }
    std::string operator()(const std::vector<int64_t>& v) const {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
      return out + "]";
    }
  };
  return std::visit(Visitor{}, value);
}

std::string value_to_yaml(const KeyInfo& key, const Value& value) {
  // Strings are JSON-quoted: a JSON string is a valid YAML double-quoted scalar, and the text
  // does not depend on the yaml-cpp version (config_hash hashes it). Enum choices are plain words.
  if (key.type == KeyType::Enum) return std::get<std::string>(value);
  if (const auto* s = std::get_if<std::string>(&value)) return json_quote(*s);
  if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
    std::string out = "[";
    for (size_t i = 0; i < list->size(); ++i) out += (i ? ", " : "") + json_quote((*list)[i]);
    return out + "]";
  }
  return value_to_string(value);
}

// ---- documentation ---------------------------------------------------------------------------

namespace {

std::string allowed_text(const KeyInfo& k) {
  if (k.type == KeyType::Enum) {
    std::string out;
    for (size_t i = 0; i < k.choices.size(); ++i) out += (i ? " \\| " : "") + ("`" + k.choices[i] + "`");
    return out;
  }
  auto num = [&](double d) {
    if (k.type == KeyType::Float) return format_double(d);
    return std::to_string(static_cast<long long>(d));
  };
  const bool huge_max = k.max && *k.max >= 9.0e15;
  std::string lo = k.min ? (k.min_exclusive ? "> " : "≥ ") + num(*k.min) : "";
  std::string hi = (k.max && !huge_max) ? (k.max_exclusive ? "< " : "≤ ") + num(*k.max) : "";
  if (!lo.empty() && !hi.empty()) return lo + ", " + hi;
  return lo + hi;
}

std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else out += c;
  }
  return out;
}

std::string default_text(const KeyInfo& k) {
  if (k.type == KeyType::String) return "`" + json_quote(std::get<std::string>(k.default_value)) + "`";
  return "`" + value_to_yaml(k, k.default_value) + "`";
}

void md_table(std::ostringstream& out, const std::string& group) {
  out << "| key | type | default | allowed | unit | description |\n"
      << "|---|---|---|---|---|---|\n";
  for (const auto& k : schema_keys()) {
    const std::string parent = k.path.substr(0, k.path.rfind('.'));
    if (parent != group) continue;
    out << "| `" << k.path << "` | " << key_type_name(k.type) << " | " << md_escape(default_text(k))
        << " | " << allowed_text(k) << " | " << k.unit << " | " << md_escape(k.description) << " |\n";
  }
  out << "\n";
}

nlohmann::ordered_json key_json_schema(const KeyInfo& k) {
  nlohmann::ordered_json j;
  auto number_bounds = [&](nlohmann::ordered_json& t) {
    if (k.min) t[k.min_exclusive ? "exclusiveMinimum" : "minimum"] = *k.min;
    if (k.max) t[k.max_exclusive ? "exclusiveMaximum" : "maximum"] = *k.max;
  };
  switch (k.type) {
    case KeyType::Bool: j["type"] = "boolean"; j["default"] = std::get<bool>(k.default_value); break;
    case KeyType::Int:
      j["type"] = "integer";
      j["default"] = std::get<int64_t>(k.default_value);
      number_bounds(j);
      break;
    case KeyType::Float:
      j["type"] = "number";
      j["default"] = std::get<double>(k.default_value);
      number_bounds(j);
      break;
    case KeyType::String: j["type"] = "string"; j["default"] = std::get<std::string>(k.default_value); break;
    case KeyType::Enum:
      j["type"] = "string";
      j["enum"] = k.choices;
      j["default"] = std::get<std::string>(k.default_value);
      break;
    case KeyType::StringList: {
      nlohmann::ordered_json arr = {{"type", "array"}, {"items", {{"type", "string"}}}};
      j["anyOf"] = nlohmann::ordered_json::array({arr, {{"type", "string"}}});
      j["default"] = std::get<std::vector<std::string>>(k.default_value);
      break;
    }
    case KeyType::IntList: {
      nlohmann::ordered_json item = {{"type", "integer"}};
      number_bounds(item);
      nlohmann::ordered_json arr = {{"type", "array"}, {"items", item}};
      j["anyOf"] = nlohmann::ordered_json::array({arr, item});
      j["default"] = std::get<std::vector<int64_t>>(k.default_value);
      break;
    }
  }
  j["description"] = k.description;
  if (!k.unit.empty()) j["x-unit"] = k.unit;
  return j;
}

}  // namespace

std::string schema_markdown() {
  std::ostringstream out;
  out << "# Run-config reference\n\n"
      << "<!-- Generated by `fathom-engine config --schema --markdown` from engine/config/schema.cpp. "
         "Do not edit by hand. -->\n\n"
      << "A run is described by one YAML file. Every key is optional: a key left out takes the default "
         "below (or the value of the preset the file extends). `fathom-engine validate FILE` checks a "
         "file; `fathom-engine estimate FILE --devices h200:2` estimates parameters, FLOPs and memory.\n\n"
      << "```yaml\n"
      << "extends: demo            # an embedded preset, or a path relative to this file\n"
      << "model:\n  n_layers: 6\n"
      << "train:\n  max_steps: 3000\n  precision: bf16\n"
      << "```\n\n"
      << "## Loading rules\n\n"
      << "- `extends:` names an embedded preset (`fathom-engine config --presets`) or a YAML file, "
         "resolved against the directory of the file that names it. Chains are allowed, cycles are "
         "errors. The extending file wins: maps merge key by key, lists are replaced whole.\n"
      << "- `--set key.path=value` (repeatable) is applied last; the value is a YAML scalar or flow list "
         "(`--set lora.target_modules=[q_proj,v_proj]`).\n"
      << "- In path keys, `${VAR}` and `${VAR:-default}` expand from the environment and a leading `~` "
         "is the home directory. `${FATHOM_DATA_DIR}` defaults to `$XDG_CACHE_HOME/fathom`, else "
         "`~/.cache/fathom`. A relative path is resolved against the directory of the file that set it "
         "(`--set`: the current directory; embedded presets: left relative). `checkpoint.save_dir` "
         "stays relative to the run directory.\n"
      << "- Derived values are filled after validation: `model.n_kv_heads` 0 → `n_heads`, `model.head_dim` 0 → `d_model / n_heads`, `model.d_ff` "
         "0 → `multiple_of · ceil(floor(8·d_model/3) / multiple_of)`, `model.moe.d_expert` 0 → `d_ff`, "
         "and `train.precision` / `train.fp16_enabled` made consistent.\n"
      << "- Every error names file:line:column, the key, the rule broken and a fix; all errors of a "
         "file are reported at once. Unknown keys are errors with a did-you-mean.\n\n"
      << "## Cross-key rules\n\n";
  for (const auto& rule : cross_key_rule_descriptions()) out << "- " << rule << "\n";
  out << "\n## Top level\n\n"
      << "| key | type | default | description |\n|---|---|---|---|\n"
      << "| `extends` | string | `\"\"` | Embedded preset name (e.g. `debug-tiny`) or path of a YAML "
         "file this one builds on. |\n\n";
  for (const auto& section : schema_sections()) {
    const bool nested = section.path.find('.') != std::string::npos;
    out << (nested ? "### `" : "## `") << section.path << "`\n\n" << section.description << "\n\n";
    md_table(out, section.path);
  }
  return out.str();
}

std::string schema_json_schema() {
  using json = nlohmann::ordered_json;
  json root;
  root["$schema"] = "http://json-schema.org/draft-07/schema#";
  root["$id"] = "https://fathom.invalid/schemas/run-config.json";
  root["title"] = "Fathom run config";
  root["type"] = "object";
  root["additionalProperties"] = false;
  root["properties"]["extends"] = {
      {"type", "string"},
      {"description", "Embedded preset name or path of a YAML file this one builds on."}};
  // Groups are nested objects; a group may also be written empty (YAML null). Nodes are found
  // by walking from the root each time: ordered_json stores members in a vector, so references
  // into it do not survive later insertions.
  auto node_at = [&](const std::string& group) -> json& {
    json* node = &root;
    std::string walked;
    size_t start = 0;
    while (start <= group.size()) {
      const size_t dot = std::min(group.find('.', start), group.size());
      const std::string name = group.substr(start, dot - start);
      walked += (walked.empty() ? "" : ".") + name;
      json& child = (*node)["properties"][name];
      if (!child.contains("type")) {
        child["type"] = json::array({"object", "null"});
        if (const SectionInfo* s = find_section(walked)) child["description"] = s->description;
        child["additionalProperties"] = false;
        child["properties"] = json::object();
      }
      node = &child;
      start = dot + 1;
    }
    return *node;
  };
  for (const auto& k : schema_keys()) {
    const size_t dot = k.path.rfind('.');
    node_at(k.path.substr(0, dot))["properties"][k.path.substr(dot + 1)] = key_json_schema(k);
  }
  return root.dump(2) + "\n";
}

}  // namespace fathom::config
