// Loading a model for inference (see load.h).
#include "engine/infer/load.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/checkpoint/hf.h"
#include "engine/model/lora.h"
#include "engine/train/finetune.h"

namespace fathom::infer {

namespace fs = std::filesystem;
using json = nlohmann::json;

LoadedModel load_base(const std::string& base) {
  LoadedModel m;
  m.base = base;
  m.config.lora.base = base;
  train::adopt_base_model(m.config);
  if (!m.config.tokenizer.path.empty() && fs::exists(m.config.tokenizer.path)) m.tokenizer = tok::Tokenizer::load(m.config.tokenizer.path);
  if (m.config.model.vocab_size == 0) {
    if (m.tokenizer.vocab_size() == 0) throw std::runtime_error("the vocabulary size of " + base + " is unknown (no model.vocab_size, no tokenizer)");
    m.config.model.vocab_size = static_cast<int64_t>(m.tokenizer.vocab_size());
  }
  m.net = model::Transformer(model::args_from_config(m.config.model, m.config.model.vocab_size));
  auto weights = ckpt::load_pretrained_weights(base);
  std::map<std::string, torch::Tensor> by_name(weights.begin(), weights.end());
  torch::NoGradGuard ng;
  for (auto& p : m.net->named_parameters()) {
    auto it = by_name.find(p.key());
    if (it == by_name.end()) throw std::runtime_error(base + " has no tensor '" + p.key() + "' that the model needs");
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error(base + ": tensor '" + p.key() + "' has shape " + c10::str(it->second.sizes()) + ", the model expects " +
                               c10::str(p.value().sizes()));
    p.value().copy_(it->second);
  }
  for (auto& b : m.net->named_buffers())
    if (auto it = by_name.find(b.key()); it != by_name.end()) b.value().copy_(it->second);
  return m;
}

bool is_adapter_dir(const std::string& dir) { return fs::exists(fs::path(dir) / "adapter_config.json"); }

std::string adapter_base(const std::string& adapter_dir) {
  std::ifstream sf(fs::path(adapter_dir) / "state.json");
  json state = json::parse(sf, nullptr, false);
  if (state.is_object() && state.contains("base") && state["base"].is_string() && !state["base"].get<std::string>().empty())
    return state["base"].get<std::string>();
  std::ifstream cf(fs::path(adapter_dir) / "adapter_config.json");
  json cfg = json::parse(cf, nullptr, false);
  if (cfg.is_object() && cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string())
    return cfg["base_model_name_or_path"].get<std::string>();
  return "";
}

LoadedModel load_for_inference(const std::string& path, const torch::Device& device, torch::ScalarType dtype,
                               const std::string& base_override) {
  LoadedModel m;
  if (is_adapter_dir(path)) {
    const std::string base = base_override.empty() ? adapter_base(path) : base_override;
    if (base.empty() || !fs::exists(base))
      throw std::runtime_error("the base model of the adapter " + path + " is unknown or missing ('" + base + "')");
    m = load_base(base);
    auto adapter = model::load_peft_adapter(path);
    model::add_lora(m.net, model::adapted_modules(adapter.tensors), adapter.spec);
    {
      torch::NoGradGuard ng;
      std::map<std::string, torch::Tensor> ad(adapter.tensors.begin(), adapter.tensors.end());
      for (auto& [n, t] : model::lora_tensors(m.net)) {
        auto it = ad.find(n);
        if (it == ad.end()) throw std::runtime_error(path + " has no tensor " + n);
        t.copy_(it->second);
      }
    }
    model::merge_lora(m.net);
    m.adapter = path;
  } else {
    m = load_base(base_override.empty() ? path : base_override);
  }
  m.net->to(dtype);
  m.net->to_device(device);
  m.net->eval();
  return m;
}

}  // namespace fathom::infer
