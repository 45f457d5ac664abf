// LoRA fine-tuning on the transformer (Hu et al. 2021): adapters on the linear layers named by
// target_modules, the base frozen (and optionally int8), adapters saved and loaded in PEFT's
// format (adapter_model.safetensors + adapter_config.json), merge and unmerge.
#pragma once
#include <torch/torch.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/linear.h"
#include "engine/model/transformer.h"

namespace fathom::model {

using NamedTensorList = std::vector<std::pair<std::string, torch::Tensor>>;

// The model's linear layers by module path ("model.layers.0.self_attn.q_proj").
std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> linear_layers(Transformer& net);

// Module paths the target names select: a layer's own name (q_proj, gate_proj, kv_b_proj, ...),
// query_key_value = q_proj + k_proj + v_proj, experts = every routed expert's projections,
// shared_experts = the shared experts' projections. The LM head is never adapted. Throws naming
// the targets that match no layer of this model.
std::set<std::string> lora_targets(Transformer& net, const std::vector<std::string>& target_modules);

// Adds adapters to exactly these module paths; returns the adapter parameter count.
int64_t add_lora(Transformer& net, const std::set<std::string>& module_paths, const LoraSpec& spec);
// Only adapter parameters keep requires_grad.
void freeze_base(Transformer& net);
// The adapters' tensors, named <module path>.lora_A.weight / .lora_B.weight.
NamedTensorList lora_tensors(Transformer& net);
// Stores every adapted layer's frozen base weight as int8 (others too when all_linear);
// returns {bytes before, bytes after} of the weights converted.
std::pair<int64_t, int64_t> quantize_base_int8(Transformer& net);
void merge_lora(Transformer& net);
void unmerge_lora(Transformer& net);

// PEFT's files. Tensor names in adapter_model.safetensors carry PEFT's "base_model.model."
// prefix; adapter_config.json has peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
// lora_dropout, use_rslora, target_modules, bias "none".
struct PeftAdapter {
  LoraSpec spec;
  std::vector<std::string> target_modules;  // as written in adapter_config.json (names or one regex)
  NamedTensorList tensors;                  // Fathom names (prefix removed)
  std::string base_model;                   // base_model_name_or_path
};
void save_peft_adapter(const std::string& dir, const NamedTensorList& tensors, const LoraSpec& spec,
                       const std::set<std::string>& module_paths, const std::string& base_model);
// Text of adapter_config.json for these settings (also written into checkpoints).
std::string peft_adapter_config(const LoraSpec& spec, const std::set<std::string>& module_paths, const std::string& base_model);
NamedTensorList peft_named(const NamedTensorList& tensors);  // with the base_model.model. prefix
PeftAdapter load_peft_adapter(const std::string& dir);
// Module paths that carry adapters in a tensor list (…lora_A.weight).
std::set<std::string> adapted_modules(const NamedTensorList& tensors);

}  // namespace fathom::model
