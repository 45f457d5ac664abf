// Cross-key rules: constraints between keys, each reported at the most derived place that set
// one of the keys involved (the change the user most likely just made), with a concrete fix.
#include "engine/config/rules.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "engine/config/detail.h"
#include "engine/config/schema.h"

namespace fs = std::filesystem;

namespace fathom::config {

int64_t swiglu_hidden_dim(int64_t d_model, int64_t multiple_of) {
  // LLaMA: hidden = int(2 * 4d / 3); hidden = multiple_of * ceil(hidden / multiple_of).
  const int64_t hidden = (8 * d_model) / 3;
  const int64_t m = std::max<int64_t>(1, multiple_of);
  return m * ((hidden + m - 1) / m);
}

std::vector<std::string> cross_key_rule_descriptions() {
  return {
      "`model.d_model` is divisible by `model.n_heads`, and the head size is even (RoPE rotates pairs) — when `model.attention` is `mha`.",
      "`model.n_heads` is divisible by `model.n_kv_heads` (grouped-query attention).",
      "`model.attention: mla` needs `model.family: deepseek` and `model.mla.kv_lora_rank`, `qk_rope_head_dim` (even), `qk_nope_head_dim`, `v_head_dim` > 0.",
      "`model.moe.n_routed_experts` > 0 needs `model.family: deepseek`; `model.moe.top_k` ≤ `n_routed_experts`; `first_k_dense` ≤ `n_layers` (warning when equal: no MoE layer left).",
      "`model.moe.n_group` divides `n_routed_experts`, `topk_group` ≤ `n_group`, and `top_k` ≤ the experts in `topk_group` groups.",
      "`model.family: qwen2` is dense with `attention: mha`; `model.head_dim`, when set, is even.",
      "`model.vocab_size`, when set, is at least the tokenizer's vocabulary (`tokenizer.vocab_size` for bpe, 50257 for gpt2).",
      "`tokenizer.kind` gpt2 or hf needs `tokenizer.path`.",
      "`data.seq_len` ≤ `model.max_seq_len`.",
      "`optimizer.min_lr` ≤ `optimizer.lr`; `optimizer.warmup_steps` ≥ `train.max_steps` is a warning.",
      "`train.precision: fp16` (or `train.fp16_enabled: true`) needs a CUDA device: it is an error with `run.device: cpu`; so does `fp8` (Hopper/Ada).",
      "`train.precision` and `train.fp16_enabled` set in the same file must agree; set in different layers, the more derived one wins.",
      "`train.eval_interval` > 0 needs `data.validation_fraction` > 0; `checkpoint.keep_best` > 0 needs evaluation.",
      "`distributed.rank` < `distributed.world_size`; `distributed.backend: nccl` needs CUDA (error with `run.device: cpu`); `distributed.init_method` is env://, tcp:// or file://; `distributed.gpu_ids` has no duplicates.",
      "`optimizer.zero.stage` > 0 with `world_size` 1 is a warning (nothing to shard over).",
      "`lora.enabled` needs a non-empty `lora.target_modules`; unknown module names and a missing `lora.base` are warnings; `lora.dropout` > 0 with activation checkpointing is an error (the recomputation would draw new masks).",
      "`telemetry.prometheus_port` differs from `serve.port`.",
      "Warnings: empty `data.train`; paths in `data.train`, `tokenizer.path` (gpt2/hf), `model.init_from` and `lora.base` that do not exist on this machine; no periodic checkpoint.",
  };
}

namespace {

class Checker {
 public:
  Checker(const RuleContext& ctx, std::vector<ConfigError>& errors, std::vector<ConfigError>& warnings)
      : ctx_(ctx), errors_(errors), warnings_(warnings) {}

  bool set(const std::string& key) const { return ctx_.origins.count(key) > 0; }
  int layer(const std::string& key) const {
    auto it = ctx_.origins.find(key);
    return it == ctx_.origins.end() ? -1 : it->second.layer;
  }

  // keys: the keys involved, most relevant first. The error is placed at the one set in the most
  // derived layer (ties: the earlier in the list); when none was set, at the main file.
  void error(std::vector<std::string> keys, std::string rule, std::string fix) {
    add(errors_, std::move(keys), std::move(rule), std::move(fix));
  }
  void warning(std::vector<std::string> keys, std::string rule, std::string fix) {
    add(warnings_, std::move(keys), std::move(rule), std::move(fix));
  }
  // Place a problem at a given key's position, even if another key is named.
  void error_at(const std::string& key_path, const std::string& position_key, std::string rule, std::string fix) {
    ConfigError e = locate({position_key});
    e.key_path = key_path;
    e.rule = std::move(rule);
    e.fix = std::move(fix);
    errors_.push_back(std::move(e));
  }
  bool any_bad(const std::vector<std::string>& keys) const {
    for (const auto& k : keys)
      if (ctx_.bad_keys.count(k)) return true;
    return false;
  }

 private:
  ConfigError locate(const std::vector<std::string>& keys) const {
    ConfigError e;
    e.file = ctx_.main_file;
    e.key_path = keys.front();
    int best = -1;
    for (const auto& k : keys) {
      auto it = ctx_.origins.find(k);
      if (it == ctx_.origins.end() || it->second.layer <= best) continue;
      best = it->second.layer;
      e.file = it->second.file;
      e.line = it->second.line;
      e.column = it->second.column;
      e.key_path = k;
    }
    return e;
  }
  void add(std::vector<ConfigError>& out, std::vector<std::string> keys, std::string rule, std::string fix) {
    if (any_bad(keys)) return;  // the value itself was wrong and reported already
    ConfigError e = locate(keys);
    e.rule = std::move(rule);
    e.fix = std::move(fix);
    out.push_back(std::move(e));
  }

  const RuleContext& ctx_;
  std::vector<ConfigError>& errors_;
  std::vector<ConfigError>& warnings_;
};

std::string str(int64_t v) { return std::to_string(v); }

// Divisors of n nearest to `near`, at most `count` of them, ascending.
std::vector<int64_t> divisors_near(int64_t n, int64_t near, size_t count) {
  std::vector<int64_t> all;
  for (int64_t d = 1; d <= n; ++d)
    if (n % d == 0) all.push_back(d);
  std::stable_sort(all.begin(), all.end(), [&](int64_t a, int64_t b) { return std::llabs(a - near) < std::llabs(b - near); });
  if (all.size() > count) all.resize(count);
  std::sort(all.begin(), all.end());
  return all;
}

std::string list_ints(const std::vector<int64_t>& v) {
  std::vector<std::string> s;
  for (auto x : v) s.push_back(str(x));
  return detail::join_or(s);
}

void resolve_precision(RunConfig& c, Checker& check) {
  // The brief's fp16_enabled and our precision say the same thing twice. Set in different layers
  // (preset vs file vs --set), the more derived one wins; set in the same layer, they must agree.
  const int lp = check.layer("train.precision"), lf = check.layer("train.fp16_enabled");
  if (check.any_bad({"train.precision", "train.fp16_enabled"})) return;
  const bool precision_is_fp16 = c.train.precision == "fp16";
  if (lf >= 0 && lf == lp && c.train.fp16_enabled != precision_is_fp16) {
    check.error({"train.fp16_enabled", "train.precision"},
                std::string("fp16_enabled is ") + (c.train.fp16_enabled ? "true" : "false") + " but precision is " +
                    c.train.precision,
                c.train.fp16_enabled ? "delete fp16_enabled (precision " + c.train.precision + " already says it) or set precision: fp16"
                                     : "delete fp16_enabled, or set precision to fp32 or bf16");
    return;
  }
  if (lf > lp) {
    if (c.train.fp16_enabled) c.train.precision = "fp16";
    else if (precision_is_fp16) c.train.precision = "fp32";
  }
  c.train.fp16_enabled = c.train.precision == "fp16";
}

void check_model(RunConfig& c, Checker& check) {
  const auto& m = c.model;
  if (m.attention == "mha") {
    if (m.head_dim > 0) {
      if (m.head_dim % 2 != 0)
        check.error({"model.head_dim"}, "head_dim " + str(m.head_dim) + " is odd; RoPE rotates pairs of dimensions",
                    "use an even head_dim such as " + str(m.head_dim + 1));
    } else if (m.d_model % m.n_heads != 0) {
      const auto heads = divisors_near(m.d_model, m.n_heads, 3);
      const int64_t lower = m.d_model - m.d_model % m.n_heads;
      check.error({"model.n_heads", "model.d_model"},
                  "d_model " + str(m.d_model) + " is not divisible by n_heads " + str(m.n_heads),
                  "set n_heads to a divisor of d_model (" + list_ints(heads) + ") or d_model to a multiple of " +
                      str(m.n_heads) + " (" + str(lower > 0 ? lower : m.n_heads) + " or " + str(lower + m.n_heads) + ")");
    } else if ((m.d_model / m.n_heads) % 2 != 0) {
      check.error({"model.n_heads", "model.d_model"},
                  "head size d_model / n_heads = " + str(m.d_model / m.n_heads) + " is odd; RoPE rotates pairs of dimensions",
                  "choose d_model and n_heads whose quotient is even (e.g. d_model " + str(m.d_model + m.n_heads) + ")");
    }
    if (m.n_kv_heads > 0 && m.n_heads % m.n_kv_heads != 0) {
      check.error({"model.n_kv_heads", "model.n_heads"},
                  "n_heads " + str(m.n_heads) + " is not divisible by n_kv_heads " + str(m.n_kv_heads),
                  "set n_kv_heads to a divisor of n_heads: " + list_ints(divisors_near(m.n_heads, m.n_kv_heads, 4)));
    }
    const auto& mla = m.mla;
    if (mla.kv_lora_rank || mla.q_lora_rank || mla.qk_rope_head_dim || mla.qk_nope_head_dim || mla.v_head_dim)
      check.warning({"model.mla.kv_lora_rank", "model.attention"}, "model.mla is ignored because attention is mha",
                    "set model.attention: mla to use it, or delete model.mla");
  } else {  // mla
    if (m.family != "deepseek")
      check.error({"model.attention", "model.family"}, "attention mla is part of the deepseek family, but family is " + m.family,
                  "set model.family: deepseek, or attention: mha");
    const std::pair<const char*, const char*> required[] = {
        {"kv_lora_rank", "512"}, {"qk_rope_head_dim", "64"}, {"qk_nope_head_dim", "128"}, {"v_head_dim", "128"}};
    const int64_t values[] = {m.mla.kv_lora_rank, m.mla.qk_rope_head_dim, m.mla.qk_nope_head_dim, m.mla.v_head_dim};
    for (size_t i = 0; i < 4; ++i) {
      const std::string key = std::string("model.mla.") + required[i].first;
      if (values[i] > 0 || check.any_bad({key, "model.attention"})) continue;
      check.error_at(key, check.set(key) ? key : "model.attention", "attention is mla, which needs " + key + " > 0",
                     "set " + key + " (DeepSeek-V2 uses " + required[i].second + ")");
    }
    if (m.mla.qk_rope_head_dim % 2 != 0)
      check.error({"model.mla.qk_rope_head_dim"}, "qk_rope_head_dim " + str(m.mla.qk_rope_head_dim) + " is odd; RoPE rotates pairs of dimensions",
                  "use an even number such as " + str(m.mla.qk_rope_head_dim + 1));
  }
  if (m.family == "qwen2" && (m.attention != "mha" || m.moe.n_routed_experts > 0))
    check.error({"model.family", "model.attention"}, "family qwen2 is a dense model with multi-head attention",
                "set model.attention: mha and moe.n_routed_experts: 0, or family: deepseek");
  const auto& moe = m.moe;
  if (moe.n_routed_experts > 0) {
    if (moe.n_routed_experts % moe.n_group != 0)
      check.error({"model.moe.n_group", "model.moe.n_routed_experts"},
                  "n_routed_experts " + str(moe.n_routed_experts) + " is not divisible by n_group " + str(moe.n_group),
                  "set n_group to a divisor of n_routed_experts, or 1 for no grouping");
    else if (moe.topk_group > moe.n_group)
      check.error({"model.moe.topk_group", "model.moe.n_group"},
                  "topk_group " + str(moe.topk_group) + " exceeds n_group " + str(moe.n_group),
                  "set topk_group <= n_group");
    else if (moe.top_k <= moe.n_routed_experts && moe.top_k > moe.topk_group * (moe.n_routed_experts / moe.n_group))
      check.error({"model.moe.top_k", "model.moe.topk_group"},
                  "top_k " + str(moe.top_k) + " exceeds the experts in the " + str(moe.topk_group) + " group(s) a token may use",
                  "raise topk_group or lower top_k");
    if (m.family != "deepseek")
      check.error({"model.moe.n_routed_experts", "model.family"},
                  "mixture-of-experts layers are part of the deepseek family, but family is " + m.family,
                  "set model.family: deepseek, or moe.n_routed_experts: 0 for a dense model");
    if (moe.top_k > moe.n_routed_experts)
      check.error({"model.moe.top_k", "model.moe.n_routed_experts"},
                  "top_k " + str(moe.top_k) + " exceeds n_routed_experts " + str(moe.n_routed_experts),
                  "set top_k <= " + str(moe.n_routed_experts) + " or add experts");
    if (moe.first_k_dense > m.n_layers)
      check.error({"model.moe.first_k_dense", "model.n_layers"},
                  "first_k_dense " + str(moe.first_k_dense) + " exceeds n_layers " + str(m.n_layers),
                  "set first_k_dense < " + str(m.n_layers));
    else if (moe.first_k_dense == m.n_layers)
      check.warning({"model.moe.first_k_dense", "model.n_layers"},
                    "first_k_dense equals n_layers: every layer is dense and the experts are never built",
                    "lower first_k_dense, or set n_routed_experts: 0");
  } else if (moe.n_shared_experts > 0) {
    check.warning({"model.moe.n_shared_experts", "model.moe.n_routed_experts"},
                  "n_shared_experts is ignored while n_routed_experts is 0 (dense model)",
                  "set moe.n_routed_experts > 0 to build MoE layers");
  }
}

void check_tokenizer_data(RunConfig& c, Checker& check) {
  const int64_t tokenizer_vocab = c.tokenizer.kind == "bpe" ? c.tokenizer.vocab_size : c.tokenizer.kind == "gpt2" ? 50257 : 0;
  if (c.model.vocab_size > 0 && tokenizer_vocab > 0 && c.model.vocab_size < tokenizer_vocab)
    check.error({"model.vocab_size", "tokenizer.vocab_size", "tokenizer.kind"},
                "model.vocab_size " + str(c.model.vocab_size) + " is smaller than the " + c.tokenizer.kind +
                    " tokenizer's " + str(tokenizer_vocab) + " tokens",
                "set model.vocab_size: 0 (take it from the tokenizer) or >= " + str(tokenizer_vocab));
  if (c.tokenizer.kind != "bpe" && c.tokenizer.path.empty())
    check.error({"tokenizer.path", "tokenizer.kind"}, "tokenizer.kind " + c.tokenizer.kind + " needs tokenizer.path",
                c.tokenizer.kind == "gpt2" ? "set tokenizer.path to the directory holding encoder.json and vocab.bpe (e.g. ${FATHOM_DATA_DIR}/tokenizers/gpt2)"
                                           : "set tokenizer.path to a tokenizer.json or the directory holding it");
  if (c.data.seq_len > c.model.max_seq_len)
    check.error({"data.seq_len", "model.max_seq_len"},
                "seq_len " + str(c.data.seq_len) + " exceeds model.max_seq_len " + str(c.model.max_seq_len),
                "lower data.seq_len to <= " + str(c.model.max_seq_len) + " or raise model.max_seq_len");
  if (c.data.train.empty())
    check.warning({"data.train"}, "no training data: train and finetune will refuse to start",
                  "list files, directories or globs under data.train");
}

void check_train(RunConfig& c, Checker& check) {
  if (c.optimizer.min_lr > c.optimizer.lr)
    check.error({"optimizer.min_lr", "optimizer.lr"},
                "min_lr " + format_double(c.optimizer.min_lr) + " exceeds lr " + format_double(c.optimizer.lr),
                "set min_lr <= lr (commonly lr / 10 = " + format_double(c.optimizer.lr / 10) + ")");
  if (c.optimizer.warmup_steps >= c.train.max_steps)
    check.warning({"optimizer.warmup_steps", "train.max_steps"},
                  "warmup_steps " + str(c.optimizer.warmup_steps) + " >= max_steps " + str(c.train.max_steps) +
                      ": the learning rate never reaches its peak",
                  "lower warmup_steps (e.g. " + str(std::max<int64_t>(0, c.train.max_steps / 10)) + ")");
  if (c.train.precision == "fp16" && c.run.device == "cpu")
    check.error({c.train.fp16_enabled && check.layer("train.fp16_enabled") > check.layer("train.precision") ? "train.fp16_enabled" : "train.precision", "run.device"},
                "fp16 needs a CUDA device, but run.device is cpu",
                "use precision bf16 (CPU supports it) or fp32, or set run.device: cuda");
  if (c.train.precision == "fp8" && c.run.device == "cpu")
    check.error({"train.precision", "run.device"}, "fp8 needs a Hopper or Ada GPU, but run.device is cpu",
                "use precision bf16 (CPU supports it) or fp32, or set run.device: cuda");
  if (c.train.eval_interval > 0 && c.data.validation_fraction == 0)
    check.error({"train.eval_interval", "data.validation_fraction"},
                "evaluation every " + str(c.train.eval_interval) + " steps needs validation data, but validation_fraction is 0",
                "set data.validation_fraction (e.g. 0.01) or train.eval_interval: 0");
  if (c.checkpoint.keep_best > 0 && c.train.eval_interval == 0)
    check.error({"checkpoint.keep_best", "train.eval_interval"},
                "keep_best ranks checkpoints by eval loss, but evaluation is off (eval_interval 0)",
                "set train.eval_interval > 0 or checkpoint.keep_best: 0");
  if (c.checkpoint.save_interval == 0 && c.checkpoint.save_every_steps == 0)
    check.warning({"checkpoint.save_every_steps", "checkpoint.save_interval"},
                  "no periodic checkpoints: only the final one is written, a crash loses the run",
                  "set checkpoint.save_every_steps or save_interval");
}

void check_distributed(RunConfig& c, Checker& check) {
  const auto& d = c.distributed;
  if (d.rank >= d.world_size)
    check.error({"distributed.rank", "distributed.world_size"},
                "rank " + str(d.rank) + " is not below world_size " + str(d.world_size),
                "ranks run from 0 to world_size-1: set rank <= " + str(d.world_size - 1) + " or raise world_size");
  if (d.backend == "nccl" && c.run.device == "cpu")
    check.error({"distributed.backend", "run.device"}, "backend nccl needs CUDA, but run.device is cpu",
                "set distributed.backend: gloo, or run.device: cuda");
  if (d.init_method.rfind("env://", 0) != 0 && d.init_method.rfind("tcp://", 0) != 0 && d.init_method.rfind("file://", 0) != 0)
    check.error({"distributed.init_method"}, "'" + d.init_method + "' is not a rendezvous URL",
                "use env:// (MASTER_ADDR/MASTER_PORT), tcp://host:port or file:///shared/path");
  std::vector<int64_t> ids = d.gpu_ids;
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end())
    check.error({"distributed.gpu_ids"}, "gpu_ids lists a GPU twice", "list each local GPU index once");
  if (c.optimizer.zero.stage > 0 && d.world_size == 1)
    check.warning({"optimizer.zero.stage", "distributed.world_size"},
                  "ZeRO stage " + str(c.optimizer.zero.stage) + " shards over the ranks, but world_size is 1: it saves nothing",
                  "raise distributed.world_size or set zero.stage: 0");
  if (c.telemetry.prometheus_port != 0 && c.telemetry.prometheus_port == c.serve.port)
    check.error({"telemetry.prometheus_port", "serve.port"},
                "the Prometheus endpoint and the HTTP API both use port " + str(c.serve.port),
                "choose another telemetry.prometheus_port (e.g. 9400)");
}

void check_lora(RunConfig& c, Checker& check) {
  const auto& l = c.lora;
  if (!l.enabled) {
    if (l.quantize_base != "none")
      check.warning({"lora.quantize_base", "lora.enabled"}, "quantize_base only applies to LoRA fine-tuning, which is off",
                    "set lora.enabled: true or delete quantize_base");
    return;
  }
  if (l.target_modules.empty())
    check.error({"lora.target_modules", "lora.enabled"}, "LoRA is enabled but target_modules is empty",
                "list the layers to adapt, e.g. [q_proj, v_proj]");
  // Hugging Face module names of the llama and deepseek families (tensor names follow HF).
  static const std::vector<std::string> known = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                                 "query_key_value", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                                                 "experts", "shared_experts"};
  for (const auto& name : l.target_modules) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    const std::string guess = detail::closest_match(name, known);
    check.warning({"lora.target_modules"}, "'" + name + "' is not a module of the llama or deepseek models",
                  guess.empty() ? "use " + detail::join(known, ", ") : "did you mean '" + guess + "'?");
  }
  if (l.base.empty() && c.model.init_from.empty())
    check.warning({"lora.base", "lora.enabled"}, "LoRA without lora.base adapts a freshly initialised model",
                  "set lora.base to the checkpoint directory of the model to fine-tune");
  if (l.dropout > 0 && c.model.activation_checkpointing != "none")
    check.error({"lora.dropout", "model.activation_checkpointing"},
                "lora.dropout > 0 with activation checkpointing: the recomputation would draw other dropout masks",
                "set lora.dropout: 0, or model.activation_checkpointing: none");
}

bool path_matches(const std::string& pattern) {
  std::error_code ec;
  if (pattern.find_first_of("*?[") == std::string::npos) return fs::exists(pattern, ec);
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
  const bool found = rc == 0 && g.gl_pathc > 0;
  globfree(&g);
  return found;
}

void check_paths(RunConfig& c, Checker& check) {
  for (const auto& entry : c.data.train)
    if (!path_matches(entry))
      check.warning({"data.train"}, "nothing matches '" + entry + "' on this machine",
                    "check the path (run packaging/collect-data.sh for the default corpus), or ignore this if the run goes to another host");
  std::error_code ec;
  const std::string& tp = c.tokenizer.path;
  if (c.tokenizer.kind == "gpt2" && !tp.empty() && !fs::exists(fs::path(tp) / "encoder.json", ec))
    check.warning({"tokenizer.path"}, "no encoder.json in '" + tp + "'",
                  "point tokenizer.path at the directory holding encoder.json and vocab.bpe");
  if (c.tokenizer.kind == "hf" && !tp.empty() && !fs::exists(tp, ec))
    check.warning({"tokenizer.path"}, "'" + tp + "' does not exist", "point tokenizer.path at a tokenizer.json or its directory");
  if (!c.model.init_from.empty() && !fs::exists(c.model.init_from, ec))
    check.warning({"model.init_from"}, "'" + c.model.init_from + "' does not exist",
                  "point model.init_from at a checkpoint directory (…/checkpoints/step-N) or a Hugging Face model directory");
  if (c.lora.enabled && !c.lora.base.empty() && !fs::exists(c.lora.base, ec))
    check.warning({"lora.base"}, "'" + c.lora.base + "' does not exist", "point lora.base at a checkpoint directory");
}

void fill_derived(RunConfig& c) {
  if (c.model.n_kv_heads == 0) c.model.n_kv_heads = c.model.n_heads;
  if (c.model.head_dim == 0 && c.model.n_heads > 0) c.model.head_dim = c.model.d_model / c.model.n_heads;
  if (c.model.d_ff == 0) c.model.d_ff = swiglu_hidden_dim(c.model.d_model, c.model.multiple_of);
  if (c.model.moe.d_expert == 0) c.model.moe.d_expert = c.model.d_ff;
}

}  // namespace

void apply_rules(RunConfig& config, const RuleContext& ctx, std::vector<ConfigError>& errors,
                 std::vector<ConfigError>& warnings) {
  Checker check(ctx, errors, warnings);
  resolve_precision(config, check);
  check_model(config, check);
  check_tokenizer_data(config, check);
  check_train(config, check);
  check_distributed(config, check);
  check_lora(config, check);
  if (ctx.check_paths) check_paths(config, check);
  fill_derived(config);
}

}  // namespace fathom::config
