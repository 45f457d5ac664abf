// Hugging Face config.json -> Fathom ModelConfig: the torch-free part of the HF import (hf.h),
// split out so it can be fuzzed without LibTorch (fuzz/fuzz_hf_config.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/config/config.h"

namespace fathom::ckpt {

// Every problem a user can cause: what, which file/field, and what to do.
class HfError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The architectures we read and write, as `architectures[0]` / `model_type` spell them.
struct HfArchitecture {
  const char* architecture;  // "LlamaForCausalLM"
  const char* model_type;    // "llama"
  const char* family;        // Fathom model.family: llama | qwen2 | deepseek
};
const std::vector<HfArchitecture>& hf_architectures();

// Maps a parsed config.json to a ModelConfig. `where` names the file in errors. Throws HfError for
// an unsupported architecture or a setting the engine cannot reproduce.
config::ModelConfig model_config_from_hf(const nlohmann::json& config_json, const std::string& where,
                                         std::string* architecture = nullptr);

// Everything an import reads from config.json: the model config and architecture (as above),
// the bos/eos token ids, the checkpoint dtype and notes about what is skipped on purpose.
struct HfConfigInfo {
  config::ModelConfig model;
  std::string architecture;
  std::optional<int64_t> bos_token_id, eos_token_id;
  std::string torch_dtype;         // "bfloat16", "float32", ... ("" when absent)
  std::vector<std::string> notes;  // for logs
};
HfConfigInfo read_hf_config(const nlohmann::json& config_json, const std::string& where);

namespace hf_detail {
std::string architectures_list();  // "LlamaForCausalLM, Qwen2ForCausalLM, ..."
}  // namespace hf_detail

}  // namespace fathom::ckpt
