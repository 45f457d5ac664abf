// The run config: typed structs, loading (file or in-memory text), presets, --set overrides.
// Shared by the engine and the workbench's Config Designer; depends on yaml-cpp only, never torch/Qt.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fathom::config {

// ---------------------------------------------------------------------------------------------
// Typed config. Field names are the YAML key names; the default member initialisers ARE the
// schema's defaults (schema.cpp reads them from a default-constructed RunConfig), so
// `RunConfig{}` is a valid all-defaults config. Enums are strings holding a validated choice.
// ---------------------------------------------------------------------------------------------

struct RunSettings {
  std::string name = "run";
  int64_t seed = 1337;
  std::string workspace;          // "" = default_workspace()
  std::string device = "auto";    // auto | cpu | cuda
  int64_t threads = 0;            // 0 = let the runtime decide
};

struct ActivationShardingConfig {
  bool enabled = false;
  int64_t num_shards = 2;
};

struct MoeConfig {
  int64_t n_routed_experts = 0;   // 0 = dense model
  int64_t n_shared_experts = 0;
  int64_t top_k = 2;
  int64_t d_expert = 0;           // 0 = d_ff (filled after validation)
  int64_t first_k_dense = 0;      // the first k layers keep a dense FFN
  std::string gate = "softmax";   // softmax | sigmoid
  std::string balance = "aux_loss";  // aux_loss | bias_update | none
  double aux_loss_coef = 0.01;
  double bias_update_rate = 0.001;
  double capacity_factor = 0.0;   // 0 = no capacity limit
  bool norm_topk_prob = false;    // renormalise the top-k gate weights to sum to 1
  double routed_scaling_factor = 1.0;  // routed output scale (DeepSeek-V3: 2.5)
  int64_t n_group = 1;            // expert groups for group-limited routing (DeepSeek-V3: 8)
  int64_t topk_group = 1;         // groups a token may route into
};

struct MlaConfig {
  int64_t kv_lora_rank = 0;
  int64_t q_lora_rank = 0;        // 0 = no query compression
  int64_t qk_rope_head_dim = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool rope_interleave = false;   // RoPE on interleaved pairs (DeepSeek-V3 checkpoints) vs halves
};

struct ModelConfig {
  std::string family = "llama";   // llama | qwen2 | deepseek
  int64_t vocab_size = 0;         // 0 = take it from the tokenizer
  int64_t d_model = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 0;         // 0 = n_heads (filled after validation)
  int64_t head_dim = 0;           // 0 = d_model / n_heads (filled after validation)
  bool attention_bias = false;    // biases on q/k/v/o (LLaMA's option; qwen2 always has q/k/v biases)
  int64_t d_ff = 0;               // 0 = SwiGLU 8/3·d_model rounded up to multiple_of (filled)
  int64_t multiple_of = 64;
  int64_t max_seq_len = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = true;
  double init_std = 0.02;
  std::string attention = "mha";  // mha | mla
  std::string activation_checkpointing = "none";  // none | full | selective
  std::string init_from;          // Fathom checkpoint or Hugging Face model directory ("" = random init)
  ActivationShardingConfig activation_sharding;
  MoeConfig moe;
  MlaConfig mla;
};

struct TokenizerConfig {
  std::string kind = "bpe";       // bpe | gpt2 | hf
  std::string path;               // directory or tokenizer.json; bpe: trained here if missing
  int64_t vocab_size = 4096;      // used when training a bpe tokenizer
  int64_t train_bytes = 0;        // bytes of training text used to train the bpe; 0 = all
};

struct DataConfig {
  std::vector<std::string> train;     // files, directories or globs
  std::string format = "auto";        // text | jsonl | auto
  std::string text_field = "text";
  std::string task = "lm";            // lm = next-token on plain text | instruct = prompt/completion or chat JSONL
  std::string chat_template = "auto"; // auto | plain | chatml | llama3 | deepseek
  bool packing = true;                // instruct: pack short examples into full sequences
  double validation_fraction = 0.01;
  std::string shards_dir;             // "" = under the workspace
  int64_t seq_len = 256;
};

struct TrainConfig {
  int64_t micro_batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  int64_t max_steps = 1000;
  std::string precision = "fp32";     // fp32 | bf16 | fp16
  bool fp16_enabled = false;          // the brief's switch; after loading == (precision == "fp16")
  double grad_clip = 1.0;             // 0 = off
  int64_t log_interval = 10;
  int64_t eval_interval = 200;        // 0 = off
  int64_t eval_batches = 20;
  int64_t sample_interval = 0;        // 0 = off
  std::string sample_prompt;
  int64_t sample_tokens = 64;
  int64_t max_nan_skips = 5;
  bool deterministic = false;         // CUDA: deterministic algorithms only
};

struct ZeroConfig {
  int64_t stage = 0;                  // 0 | 1 (optimizer state sharded) | 2 (+ gradients)
};

struct OptimizerConfig {
  std::string name = "adamw";
  double lr = 3e-4;
  double min_lr = 3e-5;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  std::string schedule = "cosine";    // cosine | linear | constant
  int64_t warmup_steps = 100;
  ZeroConfig zero;
};

struct LoraConfig {
  bool enabled = false;
  std::string adapter;            // start from an existing (PEFT) adapter directory
  int64_t r = 16;
  double lora_alpha = 32.0;
  std::vector<std::string> target_modules{"q_proj", "v_proj"};
  double dropout = 0.1;
  bool use_rslora = false;
  std::string base;                   // checkpoint directory of the base model
  std::string quantize_base = "none"; // none | int8
};

struct CheckpointConfig {
  std::string save_dir = "checkpoints";  // relative to the run directory
  int64_t save_interval = 3600;          // seconds, 0 = off
  int64_t save_every_steps = 500;        // 0 = off
  int64_t keep_n_latest = 5;
  int64_t keep_best = 0;
  bool async = true;
};

struct DistributedConfig {
  std::string backend = "gloo";       // nccl | gloo
  std::string init_method = "env://";
  int64_t world_size = 1;
  int64_t rank = 0;
  std::vector<int64_t> gpu_ids{0};
  int64_t timeout_s = 300;
};

struct TelemetryConfig {
  double system_interval_s = 5.0;
  int64_t prometheus_port = 0;        // 0 = off
  std::string prometheus_bind = "127.0.0.1";
};

struct ServeConfig {
  std::string host = "127.0.0.1";
  int64_t port = 8000;
  int64_t max_batch_size = 16;
  int64_t max_kv_tokens = 0;          // 0 = auto
  std::string quantize = "none";      // none | int8 | dynamic_int8
  std::string api_key_env;            // name of the env variable holding the API key; "" = no auth
  int64_t default_max_tokens = 128;
};

struct RunConfig {
  RunSettings run;
  ModelConfig model;
  TokenizerConfig tokenizer;
  DataConfig data;
  TrainConfig train;
  OptimizerConfig optimizer;
  LoraConfig lora;
  CheckpointConfig checkpoint;
  DistributedConfig distributed;
  TelemetryConfig telemetry;
  ServeConfig serve;
};

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

// One problem found while loading. line/column are 1-based; 0 means "no position" (a key left at
// its default, or a --set override, whose file is "--set").
struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key_path;   // "train.micro_batch_size"; "" for file-level problems (YAML syntax)
  std::string rule;       // what is wrong: "-4 must be >= 1"
  std::string fix;        // what to do:    "set a positive integer"
  // "run.yaml:12:21: train.micro_batch_size: -4 must be >= 1 (fix: set a positive integer)"
  std::string message() const;
};

struct LoadOptions {
  std::vector<std::string> overrides;  // "train.lr=1e-3", as given to --set; applied last
  // Directory that relative paths of load_config_text() resolve against; "" = the directory of
  // display_name (when it names a file), else the current directory.
  std::string base_dir;
  // Warn about data/tokenizer paths that do not exist. The Designer turns this off when the run
  // is meant for another host, where the files live.
  bool check_paths = true;
};

// Where the winning value of a key came from.
struct KeyOrigin {
  std::string file;  // file path, "preset:<name>" or "--set"
  int line = 0;
  int column = 0;
  int layer = 0;     // 0 = the deepest extended base; higher = more derived; --set is the highest
};

struct LoadResult {
  bool ok() const { return errors.empty(); }
  std::vector<ConfigError> errors;
  std::vector<ConfigError> warnings;
  // Defaults, then every extended base, then the file, then overrides; derived values filled
  // (n_kv_heads, d_ff, moe.d_expert, precision/fp16_enabled). Best effort when !ok().
  RunConfig config;
  // config as YAML: presets expanded, overrides applied, defaults and derived values filled,
  // ${VAR} expanded and relative paths resolved. Loading it again gives the same config.
  std::string resolved_yaml;
  // Keys set explicitly somewhere in the chain (absent = schema default or derived).
  std::map<std::string, KeyOrigin> origins;
  // The documents read, most derived first: "run.yaml", "preset:demo", ...
  std::vector<std::string> sources;
};

LoadResult load_config_file(const std::string& path, const LoadOptions& options = {});
LoadResult load_config_text(const std::string& text, const std::string& display_name,
                            const LoadOptions& options = {});

// 16 hex digits: FNV-1a 64 of resolved_yaml. resolved_yaml is written by our own emitter (not
// yaml-cpp's), so the hash does not change with the yaml-cpp version. Not cryptographic.
std::string config_hash(const LoadResult& result);

// YAML text of a config, every key in schema order (what resolved_yaml holds).
std::string config_to_yaml(const RunConfig& config);

// Presets embedded at build time from resources/presets/*.yaml.
std::vector<std::string> preset_names();
std::string preset_text(const std::string& name);  // "" when there is no such preset

// ${FATHOM_DATA_DIR}: its environment value, else $XDG_CACHE_HOME/fathom, else ~/.cache/fathom.
std::string default_data_dir();
// run.workspace when "": $XDG_DATA_HOME/fathom, else ~/.local/share/fathom.
std::string default_workspace();
// run.workspace, or default_workspace() when it is empty.
std::string resolved_workspace(const RunConfig& config);

}  // namespace fathom::config
