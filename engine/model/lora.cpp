// LoRA on the transformer (see lora.h).
#include "engine/model/lora.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "engine/checkpoint/tensor_io.h"

namespace fathom::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kPeftPrefix = "base_model.model.";

std::string last_component(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

bool is_adapter_path(const std::string& path) {
  return path.size() >= 7 && (path.compare(path.size() - 7, 7, ".lora_A") == 0 || path.compare(path.size() - 7, 7, ".lora_B") == 0);
}

}  // namespace

std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> linear_layers(Transformer& net) {
  std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> out;
  for (const auto& item : net->named_modules("", /*include_self=*/false)) {
    if (is_adapter_path(item.key())) continue;
    if (auto lin = std::dynamic_pointer_cast<LinearImpl>(item.value())) out.emplace_back(item.key(), lin);
  }
  return out;
}

std::set<std::string> lora_targets(Transformer& net, const std::vector<std::string>& target_modules) {
  std::set<std::string> out;
  for (const auto& target : target_modules) {
    std::set<std::string> names;
    if (target == "query_key_value") names = {"q_proj", "k_proj", "v_proj"};
    size_t matched = 0;
    for (const auto& [path, lin] : linear_layers(net)) {
      if (path == "lm_head") continue;
      const std::string leaf = last_component(path);
      const bool in_experts = path.find(".mlp.experts.") != std::string::npos;
      const bool in_shared = path.find(".mlp.shared_experts.") != std::string::npos;
      bool hit = false;
      if (target == "experts") hit = in_experts;
      else if (target == "shared_experts") hit = in_shared;
      else if (!names.empty()) hit = names.count(leaf) > 0;
      else hit = leaf == target && !in_experts;  // gate_proj etc. mean the dense and shared MLPs, not every expert
      if (hit) {
        out.insert(path);
        ++matched;
      }
    }
    if (matched == 0)
      throw std::runtime_error("lora.target_modules: '" + target + "' matches no layer of this " + net->args().family +
                               " model (attention " + net->args().attention + "); e.g. " +
                               (net->args().attention == "mla" ? "q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj"
                                                               : "q_proj, k_proj, v_proj, o_proj") +
                               ", gate_proj, up_proj, down_proj");
  }
  return out;
}

int64_t add_lora(Transformer& net, const std::set<std::string>& module_paths, const LoraSpec& spec) {
  int64_t params = 0;
  std::set<std::string> missing = module_paths;
  for (auto& [path, lin] : linear_layers(net)) {
    if (!module_paths.count(path)) continue;
    lin->add_lora(spec);
    params += spec.r * (lin->in_features + lin->out_features);
    missing.erase(path);
  }
  if (!missing.empty()) throw std::runtime_error("LoRA adapter for '" + *missing.begin() + "', which this model does not have");
  return params;
}

void freeze_base(Transformer& net) {
  for (auto& item : net->named_parameters()) {
    const auto& n = item.key();
    const bool adapter = n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos;
    item.value().set_requires_grad(adapter);
  }
}

NamedTensorList lora_tensors(Transformer& net) {
  NamedTensorList out;
  for (auto& item : net->named_parameters()) {
    const auto& n = item.key();
    if (n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos) out.emplace_back(n, item.value());
  }
  return out;
}

std::pair<int64_t, int64_t> quantize_base_int8(Transformer& net) {
  int64_t before = 0, after = 0;
  for (auto& [path, lin] : linear_layers(net)) {
    if (path == "lm_head" || lin->quantized()) continue;  // the head stays exact (it is also the tied embedding)
    before += lin->weight.numel() * lin->weight.element_size();
    lin->quantize_int8();
    after += lin->weight_int8.numel() + lin->weight_scale.numel() * lin->weight_scale.element_size();
  }
  return {before, after};
}

void merge_lora(Transformer& net) {
  for (auto& [path, lin] : linear_layers(net))
    if (lin->has_lora() && !lin->merged()) lin->merge();
}

void unmerge_lora(Transformer& net) {
  for (auto& [path, lin] : linear_layers(net))
    if (lin->has_lora() && lin->merged()) lin->unmerge();
}

std::string peft_adapter_config(const LoraSpec& spec, const std::set<std::string>& module_paths, const std::string& base_model) {
  // target_modules: the layer names when they select exactly these layers (the usual case);
  // otherwise a regex PEFT full-matches against module paths.
  std::set<std::string> leaves;
  bool plain = true;
  for (const auto& p : module_paths) {
    leaves.insert(last_component(p));
    if (p.find(".mlp.experts.") != std::string::npos || p.find(".shared_experts.") != std::string::npos) plain = false;
  }
  json target;
  if (plain) {
    target = json::array();
    for (const auto& l : leaves) target.push_back(l);
  } else {
    std::string re;
    for (const auto& p : module_paths) {
      std::string esc;
      for (char c : p) esc += c == '.' ? std::string("\\.") : std::string(1, c);
      re += (re.empty() ? "" : "|") + esc;
    }
    target = "^(" + re + ")$";
  }
  json cfg = {{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"base_model_name_or_path", base_model},
              {"r", spec.r},
              {"lora_alpha", spec.alpha},
              {"lora_dropout", spec.dropout},
              {"use_rslora", spec.rslora},
              {"target_modules", target},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"inference_mode", true},
              {"init_lora_weights", true},
              {"modules_to_save", nullptr},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", json::object()},
              {"alpha_pattern", json::object()},
              {"use_dora", false},
              {"revision", nullptr}};
  return cfg.dump(2) + "\n";
}

NamedTensorList peft_named(const NamedTensorList& tensors) {
  NamedTensorList out;
  for (const auto& [n, t] : tensors) out.emplace_back(kPeftPrefix + n, t);
  return out;
}

void save_peft_adapter(const std::string& dir, const NamedTensorList& tensors, const LoraSpec& spec,
                       const std::set<std::string>& module_paths, const std::string& base_model) {
  fs::create_directories(dir);
  ckpt::save_tensors((fs::path(dir) / "adapter_model.safetensors").string(), peft_named(tensors), {{"format", "pt"}});
  const auto tmp = (fs::path(dir) / "adapter_config.json.tmp").string();
  {
    std::ofstream f(tmp);
    f << peft_adapter_config(spec, module_paths, base_model);
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  fs::rename(tmp, fs::path(dir) / "adapter_config.json");
}

std::set<std::string> adapted_modules(const NamedTensorList& tensors) {
  std::set<std::string> out;
  for (const auto& [n, t] : tensors) {
    for (const char* suffix : {".lora_A.weight", ".lora_B.weight"}) {
      const std::string s = suffix;
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) out.insert(n.substr(0, n.size() - s.size()));
    }
  }
  return out;
}

PeftAdapter load_peft_adapter(const std::string& dir) {
  const auto cfg_path = fs::path(dir) / "adapter_config.json";
  const auto st_path = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(cfg_path) || !fs::exists(st_path))
    throw std::runtime_error(dir + " is not a LoRA adapter: it needs adapter_config.json and adapter_model.safetensors "
                                   "(PEFT's save_pretrained, or a Fathom fine-tune checkpoint)");
  json cfg;
  try {
    std::ifstream f(cfg_path);
    cfg = json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(cfg_path.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (cfg.value("peft_type", std::string("LORA")) != "LORA")
    throw std::runtime_error(cfg_path.string() + ": peft_type " + cfg.value("peft_type", std::string()) + " is not LORA");
  if (cfg.contains("use_dora") && cfg["use_dora"].is_boolean() && cfg["use_dora"].get<bool>())
    throw std::runtime_error(cfg_path.string() + ": DoRA adapters (use_dora: true) are not supported");
  PeftAdapter a;
  a.spec.r = cfg.at("r").get<int64_t>();
  a.spec.alpha = cfg.value("lora_alpha", static_cast<double>(a.spec.r));
  a.spec.dropout = cfg.value("lora_dropout", 0.0);
  a.spec.rslora = cfg.contains("use_rslora") && cfg["use_rslora"].is_boolean() && cfg["use_rslora"].get<bool>();
  if (cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string())
    a.base_model = cfg["base_model_name_or_path"].get<std::string>();
  if (cfg.contains("target_modules")) {
    if (cfg["target_modules"].is_string()) a.target_modules.push_back(cfg["target_modules"].get<std::string>());
    else if (cfg["target_modules"].is_array())
      for (const auto& t : cfg["target_modules"]) a.target_modules.push_back(t.get<std::string>());
  }
  for (auto& [n, t] : ckpt::load_tensors(st_path.string())) {
    std::string name = n;
    if (name.rfind(kPeftPrefix, 0) == 0) name = name.substr(kPeftPrefix.size());
    // PEFT keeps the adapter name in memory (lora_A.default.weight); files normally drop it.
    const auto pos = name.find(".default.");
    if (pos != std::string::npos) name.erase(pos, 8);
    a.tensors.emplace_back(name, t.to(torch::kFloat32));
  }
  return a;
}

}  // namespace fathom::model
