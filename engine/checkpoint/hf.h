// Hugging Face interop: read a transformers model directory (config.json, model.safetensors or
// shards + model.safetensors.index.json, tokenizer.json) into a Fathom model config and tensors,
// and write a Fathom checkpoint back out as such a directory that `from_pretrained` loads.
// Families: LlamaForCausalLM, Qwen2ForCausalLM, DeepseekV3ForCausalLM. What the engine cannot
// reproduce exactly (RoPE scaling, sliding windows, MLP biases, FP8 weights...) is refused with
// an error that says which field and why, never approximated.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/hf_config.h"
#include "engine/checkpoint/tensor_io.h"
#include "engine/config/config.h"

namespace fathom::ckpt {

// A Hugging Face model directory, read and checked (no tensor data loaded).
struct HfModelInfo {
  std::string dir;
  std::string architecture;  // "Qwen2ForCausalLM"
  config::ModelConfig model;
  std::optional<int64_t> bos_token_id, eos_token_id;
  std::string torch_dtype;                // "bfloat16", "float32", ... ("" when absent)
  std::string tokenizer_json;             // <dir>/tokenizer.json when present, else ""
  std::vector<std::string> weight_files;  // absolute paths: model.safetensors or every shard
  std::vector<std::string> notes;         // things ignored on purpose (MTP layers, ...), for logs
};

// Reads <dir>/config.json, finds the weight files (checking the index names only files that
// exist) and tokenizer.json. Throws HfError.
HfModelInfo read_hf_model_dir(const std::string& dir);

// Tensors of an HF model directory named as the Fathom model names them, fp32, lm_head dropped
// when tied; fused expert tensors (mlp.experts.gate_up_proj / down_proj, transformers 5 in-memory
// layout) are split per expert. Every tensor the model needs must be present with its shape.
NamedTensors load_hf_weights(const HfModelInfo& info);

// `model.init_from` for the trainer: a Fathom checkpoint directory (step-<N> with MANIFEST.json;
// verified first), a checkpoints/ directory or run directory (its `latest` checkpoint), or a
// Hugging Face model directory. Returns fp32 CPU tensors with the Fathom model's names.
NamedTensors load_pretrained_weights(const std::string& dir);

// Tensor names and shapes the Fathom model has for `model` (vocab_size must be set), in module
// order. Used to check imports and exports.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensor_shapes(const config::ModelConfig& model);

// A whole Fathom run config (YAML text) for an imported model: `model` from config.json,
// `model.init_from: <init_from>`, and `tokenizer: {kind: hf, path: <tokenizer_json>}` when given.
// Training data, schedule etc. are left at their defaults (set data.train before training).
std::string hf_run_config_yaml(const HfModelInfo& info, const std::string& init_from,
                               const std::string& tokenizer_json, const std::string& run_name);

// `convert HF_DIR --to fathom --out RUN_DIR`: RUN_DIR/config.yaml, RUN_DIR/tokenizer.json (when
// the model has one) and RUN_DIR/checkpoints/step-0/ (weights, state.json, MANIFEST.json), with
// config.yaml's model.init_from naming that checkpoint. RUN_DIR must not exist or be empty; it
// is assembled in a temporary sibling and renamed into place. Returns the checkpoint directory.
struct HfImportOptions {
  std::string hf_dir;
  std::string run_dir;
  std::string run_name;  // "" = the HF directory's name
  std::function<void(const std::string&)> progress;  // one line per stage
};
std::string import_hf_to_run(const HfImportOptions& options);

// `convert CHECKPOINT --to hf --out DIR`.
struct HfExportOptions {
  std::string checkpoint_dir;  // step-<N>, or a checkpoints/ or run directory (its latest)
  std::string run_config;      // "" = <checkpoint>/../../config.yaml
  std::string out_dir;
  std::string dtype = "fp32";  // fp32 | bf16 | fp16 (e_score_correction_bias stays fp32)
  uint64_t max_shard_bytes = 0;  // 0 = one model.safetensors; else shards + index above it
  bool overwrite = false;        // replace an existing non-empty out_dir
  std::function<void(const std::string&)> progress;
};
struct HfExportResult {
  std::string out_dir;
  std::vector<std::string> files;  // written, relative to out_dir
  std::vector<std::string> warnings;
  int64_t tensors = 0;
  uint64_t bytes = 0;
};
HfExportResult export_checkpoint_to_hf(const HfExportOptions& options);

// The config.json transformers needs for a Fathom model config (vocab_size set), with the
// tokenizer's bos/eos ids when known and `dtype`/`torch_dtype` = dtype_name ("float32", ...).
nlohmann::json hf_config_json(const config::ModelConfig& model, std::optional<int64_t> bos_id,
                              std::optional<int64_t> eos_id, const std::string& torch_dtype_name);

// "2GB", "500MB", "100KB", "123" (bytes), "1.5GiB" → bytes (decimal units as transformers uses
// them, binary for the *iB forms). Throws HfError.
uint64_t parse_byte_size(const std::string& text);

}  // namespace fathom::ckpt
