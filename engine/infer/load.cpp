// Loading a model for inference (see load.h).
#include "engine/infer/load.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
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
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  // Decoding changes the key length every step (and continuous batching the batch size too):
  // cuDNN's attention builds an execution plan per new shape (tens of ms each), which made the
  // first pass over each length 5-7x slower on the H200. Flash / memory-efficient kernels need none.
  if (device.is_cuda()) at::globalContext().setSDPUseCuDNN(false);
#endif
  return m;
}

InferenceTarget inference_target(const std::string& device, const std::string& precision) {
  InferenceTarget t;
  t.device = device == "cuda" || (device == "auto" && torch::cuda::is_available()) ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  t.dtype = precision == "bf16" ? torch::kBFloat16 : precision == "fp16" ? torch::kFloat16 : torch::kFloat32;
  torch::set_num_threads(1);
  return t;
}

void install_adapter_bank(LoadedModel& m, const std::vector<std::string>& adapter_dirs) {
  if (adapter_dirs.empty()) return;
  std::vector<model::PeftAdapter> adapters;
  for (const auto& dir : adapter_dirs) {
    if (!is_adapter_dir(dir)) throw std::runtime_error(dir + " is not a LoRA adapter (no adapter_config.json)");
    adapters.push_back(model::load_peft_adapter(dir));
  }
  std::set<std::string> known;
  for (auto& [path, lin] : model::linear_layers(m.net)) known.insert(path);
  for (size_t g = 0; g < adapters.size(); ++g)
    for (const auto& mod : model::adapted_modules(adapters[g].tensors)) {
      if (!known.count(mod)) throw std::runtime_error(adapter_dirs[g] + ": adapts '" + mod + "', a layer this base model does not have");
      if (mod.find(".experts.") != std::string::npos)
        throw std::runtime_error(adapter_dirs[g] + ": adapters on MoE experts cannot be served per request; merge it (fathom-engine lora merge)");
    }
  torch::NoGradGuard ng;
  const auto G = static_cast<int64_t>(adapters.size());
  for (auto& [path, lin] : model::linear_layers(m.net)) {
    int64_t r_max = 0;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> ab(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      std::map<std::string, torch::Tensor> t(adapters[static_cast<size_t>(g)].tensors.begin(), adapters[static_cast<size_t>(g)].tensors.end());
      auto a = t.find(path + ".lora_A.weight"), b = t.find(path + ".lora_B.weight");
      if (a == t.end() || b == t.end()) continue;
      if (a->second.size(1) != lin->in_features || b->second.size(0) != lin->out_features || a->second.size(0) != b->second.size(1))
        throw std::runtime_error(adapter_dirs[static_cast<size_t>(g)] + ": the adapter of '" + path + "' has shapes " +
                                 c10::str(a->second.sizes()) + " / " + c10::str(b->second.sizes()) + ", which do not fit the layer (" +
                                 std::to_string(lin->out_features) + " × " + std::to_string(lin->in_features) + ")");
      ab[static_cast<size_t>(g)] = {a->second, b->second};
      r_max = std::max(r_max, a->second.size(0));
    }
    if (r_max == 0) continue;
    const auto opts = (lin->quantized() ? lin->weight_scale : lin->weight).options().requires_grad(false);
    auto A = torch::zeros({G, r_max, lin->in_features}, opts);
    auto B = torch::zeros({G, lin->out_features, r_max}, opts);
    auto scale = torch::zeros({G}, torch::kFloat32);
    for (int64_t g = 0; g < G; ++g) {
      const auto& [a, b] = ab[static_cast<size_t>(g)];
      if (!a.defined()) continue;
      A[g].narrow(0, 0, a.size(0)).copy_(a);
      B[g].narrow(1, 0, b.size(1)).copy_(b);
      scale[g] = adapters[static_cast<size_t>(g)].spec.scale();
    }
    lin->set_adapter_bank(A, B, scale);
  }
}

std::string quantize_for_serving(LoadedModel& m, const std::string& mode) {
  if (mode.empty() || mode == "none") return "weights unquantised";
  if (mode != "int8" && mode != "dynamic_int8") throw std::runtime_error("unknown quantisation '" + mode + "' (none, int8 or dynamic_int8)");
  int64_t layers = 0, before = 0, after = 0;
  std::string kernel = "dequantised matmul";
  for (auto& [path, lin] : model::linear_layers(m.net)) {
    if (path == "lm_head" || lin->quantized()) continue;  // the head stays exact (it is also the tied embedding)
    if (lin->has_adapter_bank() && mode == "dynamic_int8")
      throw std::runtime_error("dynamic_int8 cannot be combined with per-request adapters; use int8");
    before += lin->weight.numel() * lin->weight.element_size();
    if (mode == "int8") lin->quantize_int8();
    else kernel = lin->quantize_dynamic_int8();
    after += lin->weight_int8.numel() + lin->weight_scale.numel() * lin->weight_scale.element_size();
    ++layers;
  }
  std::ostringstream o;
  o << mode << ": " << layers << " linear layers, " << before / (1 << 20) << " MiB → " << after / (1 << 20) << " MiB (" << kernel << ")";
  // int8 on CUDA: the decode steps also read an int8 copy of the LM head (transformer.h).
  if (mode == "int8")
    if (const int64_t head = m.net->quantize_head_for_decode(); head > 0)
      o << "; LM head: an int8 copy for decoding, +" << head / (1 << 20) << " MiB";
  return o.str();
}

}  // namespace fathom::infer
