// Hugging Face config.json -> Fathom ModelConfig (see hf_config.h). Torch-free, so it can be fuzzed
// alone (fuzz/fuzz_hf_config.cpp). Reference for every field: transformers 5.17
// configuration_{llama,qwen2,deepseek_v3}.py and the config.json files its save_pretrained writes
// (tests/fixtures/hf).
#include "engine/checkpoint/hf_config.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace fathom::ckpt {

using nlohmann::json;

const std::vector<HfArchitecture>& hf_architectures() {
  static const std::vector<HfArchitecture> a = {
      {"LlamaForCausalLM", "llama", "llama"},
      {"Qwen2ForCausalLM", "qwen2", "qwen2"},
      {"DeepseekV3ForCausalLM", "deepseek_v3", "deepseek"},
  };
  return a;
}

namespace hf_detail {

std::string architectures_list() {
  std::string s;
  for (const auto& a : hf_architectures()) s += (s.empty() ? "" : ", ") + std::string(a.architecture);
  return s;
}

}  // namespace hf_detail

using hf_detail::architectures_list;

namespace {

// ---- config.json reading helpers: each names the file and the key in its errors -------------

struct ConfigReader {
  const json& j;
  const std::string& where;

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }

  int64_t integer(const char* key) const {
    if (!has(key)) throw HfError(where + ": \"" + key + "\" is missing; a " + arch() + " config needs it.");
    return integer_of(j[key], key);
  }
  int64_t integer_or(const char* key, int64_t fallback) const { return has(key) ? integer_of(j[key], key) : fallback; }
  int64_t integer_of(const json& v, const char* key) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    // A whole float within int64 (9.2e18 and beyond would overflow the conversion).
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9.2e18)
      return static_cast<int64_t>(v.get<double>());
    throw HfError(where + ": \"" + key + "\" is " + v.dump() + ", expected an integer.");
  }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_number()) throw HfError(where + ": \"" + key + "\" is " + j[key].dump() + ", expected a number.");
    return j[key].get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_boolean()) throw HfError(where + ": \"" + key + "\" is " + j[key].dump() + ", expected true or false.");
    return j[key].get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_string()) throw HfError(where + ": \"" + key + "\" is " + j[key].dump() + ", expected a string.");
    return j[key].get<std::string>();
  }
  std::string arch() const {
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string())
      return j["architectures"][0].get<std::string>();
    return "model";
  }
  [[noreturn]] void refuse(const std::string& what, const std::string& why) const {
    throw HfError(where + ": " + what + ": " + why);
  }
};

// RoPE: transformers 5 writes {"rope_parameters": {"rope_type": "default", "rope_theta": θ}};
// 4.x wrote "rope_theta" plus "rope_scaling" (null or {"rope_type"/"type": ...}).
double read_rope(const ConfigReader& r) {
  double theta = r.number_or("rope_theta", 10000.0);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!r.has(key)) continue;
    const json& p = r.j[key];
    if (!p.is_object()) r.refuse(std::string("\"") + key + "\" is " + p.dump(), "expected an object or null.");
    std::string type = "default";
    if (p.contains("rope_type") && p["rope_type"].is_string()) type = p["rope_type"].get<std::string>();
    else if (p.contains("type") && p["type"].is_string()) type = p["type"].get<std::string>();
    if (type != "default") {
      r.refuse(std::string("\"") + key + "\" asks for RoPE scaling \"" + type + "\"",
               "the engine implements plain RoPE only (rope_type \"default\"), so this model's logits could not be "
               "reproduced. Supported: rope_scaling null or rope_type \"default\".");
    }
    if (p.contains("rope_theta") && p["rope_theta"].is_number()) theta = p["rope_theta"].get<double>();
  }
  if (!(theta > 0)) r.refuse("rope_theta " + std::to_string(theta), "must be > 0.");
  return theta;
}

const HfArchitecture* find_architecture(const json& j, const std::string& where, std::string* name) {
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
    for (const auto& a : hf_architectures())
      if (arch == a.architecture) {
        *name = arch;
        return &a;
      }
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string mt = j["model_type"].get<std::string>();
    for (const auto& a : hf_architectures())
      if (mt == a.model_type) {
        *name = a.architecture;
        return &a;
      }
    arch = "model_type " + mt;
  }
  throw HfError(where + ": architecture " + (arch.empty() ? std::string("(none given: no \"architectures\" or \"model_type\")") : "\"" + arch + "\"") +
                " is not supported; Fathom imports " + architectures_list() +
                " (causal language models of the LLaMA, Qwen2 and DeepSeek-V3 families).");
}

}  // namespace

config::ModelConfig model_config_from_hf(const json& j, const std::string& where, std::string* architecture) {
  if (!j.is_object()) throw HfError(where + ": expected a JSON object.");
  std::string arch;
  const HfArchitecture* a = find_architecture(j, where, &arch);
  if (architecture) *architecture = arch;
  const ConfigReader r{j, where};

  if (r.has("quantization_config")) {
    const json& q = r.j["quantization_config"];
    const std::string method = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                                   ? q["quant_method"].get<std::string>()
                                   : std::string("?");
    r.refuse("\"quantization_config\" is set (" + method + ")",
             "quantized weights (e.g. DeepSeek-V3's FP8 release) are not imported; dequantize to bf16/fp32 first "
             "(DeepSeek ships inference/fp8_cast_bf16.py for that).");
  }
  const std::string act = r.string_or("hidden_act", "silu");
  if (act != "silu") r.refuse("hidden_act \"" + act + "\"", "the engine's MLPs are SwiGLU (silu); only \"silu\" is supported.");
  if (r.boolean_or("mlp_bias", false)) r.refuse("mlp_bias is true", "the engine's MLPs have no biases; only mlp_bias false is supported.");

  config::ModelConfig m;
  m.family = a->family;
  m.vocab_size = r.integer("vocab_size");
  m.d_model = r.integer("hidden_size");
  m.n_layers = r.integer("num_hidden_layers");
  m.n_heads = r.integer("num_attention_heads");
  m.n_kv_heads = r.integer_or("num_key_value_heads", m.n_heads);
  m.d_ff = r.integer("intermediate_size");
  m.max_seq_len = r.integer_or("max_position_embeddings", 2048);
  m.rope_theta = read_rope(r);
  m.norm_eps = r.number_or("rms_norm_eps", 1e-6);  // the default of all three configs
  m.tie_embeddings = r.boolean_or("tie_word_embeddings", false);
  m.init_std = r.number_or("initializer_range", 0.02);
  m.attention = "mha";
  for (int64_t v : {m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.n_kv_heads, m.d_ff, m.max_seq_len})
    if (v <= 0) r.refuse("a size is " + std::to_string(v), "vocab_size, hidden_size, num_hidden_layers, num_attention_heads, "
                         "num_key_value_heads, intermediate_size and max_position_embeddings must all be > 0.");

  const std::string family = a->family;
  if (family == "llama" || family == "qwen2") {
    if (r.has("head_dim")) {
      m.head_dim = r.integer("head_dim");
      if (m.head_dim <= 0) r.refuse("head_dim " + std::to_string(m.head_dim), "must be > 0.");
      // head_dim * n_heads == d_model, without the product (it can overflow for absurd sizes).
      if (m.d_model % m.n_heads == 0 && m.head_dim == m.d_model / m.n_heads) m.head_dim = 0;  // the default; keep configs short
    } else if (m.d_model % m.n_heads != 0) {
      r.refuse("hidden_size " + std::to_string(m.d_model) + " is not a multiple of num_attention_heads " +
                   std::to_string(m.n_heads), "set head_dim in config.json.");
    }
    if (m.n_heads % m.n_kv_heads != 0)
      r.refuse("num_attention_heads " + std::to_string(m.n_heads) + " is not a multiple of num_key_value_heads " +
                   std::to_string(m.n_kv_heads), "grouped-query attention needs it.");
  }
  if (family == "llama") {
    m.attention_bias = r.boolean_or("attention_bias", false);
  } else if (family == "qwen2") {
    // Qwen2 always has q/k/v biases and none on o_proj; the engine adds them for family qwen2.
    m.attention_bias = false;
    if (r.boolean_or("use_sliding_window", false)) {
      r.refuse("use_sliding_window is true", "sliding-window attention is not implemented (every layer attends to the "
               "whole context); only models with use_sliding_window false import exactly.");
    }
    if (r.has("layer_types") && r.j["layer_types"].is_array()) {
      for (const auto& t : r.j["layer_types"])
        if (!t.is_string() || t.get<std::string>() != "full_attention")
          r.refuse("layer_types contains " + t.dump(), "sliding-window layers are not implemented; only \"full_attention\" is.");
    }
  } else {  // deepseek
    if (r.boolean_or("attention_bias", false))
      r.refuse("attention_bias is true", "the engine's multi-head latent attention has no biases.");
    m.attention = "mla";
    m.mla.kv_lora_rank = r.integer("kv_lora_rank");
    m.mla.q_lora_rank = r.integer_or("q_lora_rank", 0);  // null = no query compression
    m.mla.qk_rope_head_dim = r.integer("qk_rope_head_dim");
    m.mla.qk_nope_head_dim = r.integer("qk_nope_head_dim");
    m.mla.v_head_dim = r.integer("v_head_dim");
    m.mla.rope_interleave = r.boolean_or("rope_interleave", true);  // transformers' default
    m.n_kv_heads = m.n_heads;  // MLA: num_key_value_heads is not used by the attention
    m.head_dim = 0;            // config.json's head_dim is qk_rope_head_dim for DeepSeek-V3
    const std::string scoring = r.string_or("scoring_func", "sigmoid");
    if (scoring != "sigmoid")
      r.refuse("scoring_func \"" + scoring + "\"", "DeepseekV3ForCausalLM routes with sigmoid scores; only \"sigmoid\" is supported.");
    const std::string topk_method = r.string_or("topk_method", "noaux_tc");
    if (topk_method != "noaux_tc")
      r.refuse("topk_method \"" + topk_method + "\"", "DeepseekV3ForCausalLM routes with \"noaux_tc\" (group-limited, "
               "bias-corrected top-k); only that is supported.");
    if (r.integer_or("moe_layer_freq", 1) != 1)
      r.refuse("moe_layer_freq " + std::to_string(r.integer_or("moe_layer_freq", 1)), "only 1 (every layer past "
               "first_k_dense_replace is MoE) is supported.");
    const int64_t experts = r.integer_or("n_routed_experts", 0);
    if (experts > 0) {
      m.moe.n_routed_experts = experts;
      m.moe.n_shared_experts = r.integer_or("n_shared_experts", 0);
      m.moe.top_k = r.integer("num_experts_per_tok");
      m.moe.d_expert = r.integer("moe_intermediate_size");
      m.moe.first_k_dense = r.integer_or("first_k_dense_replace", 0);
      m.moe.gate = "sigmoid";
      m.moe.balance = "bias_update";
      m.moe.norm_topk_prob = r.boolean_or("norm_topk_prob", true);
      m.moe.routed_scaling_factor = r.number_or("routed_scaling_factor", 1.0);
      m.moe.n_group = r.integer_or("n_group", 1);
      m.moe.topk_group = r.integer_or("topk_group", 1);
      if (m.moe.n_group <= 0 || experts % m.moe.n_group != 0)
        r.refuse("n_group " + std::to_string(m.moe.n_group), "must divide n_routed_experts " + std::to_string(experts) + ".");
      if (m.moe.topk_group <= 0 || m.moe.topk_group > m.moe.n_group)
        r.refuse("topk_group " + std::to_string(m.moe.topk_group), "must be in 1..n_group.");
      if (m.moe.top_k <= 0 || m.moe.top_k > experts)
        r.refuse("num_experts_per_tok " + std::to_string(m.moe.top_k), "must be in 1..n_routed_experts.");
      if (m.moe.first_k_dense > m.n_layers)
        r.refuse("first_k_dense_replace " + std::to_string(m.moe.first_k_dense), "exceeds num_hidden_layers.");
    }
  }
  return m;
}

HfConfigInfo read_hf_config(const json& j, const std::string& where) {
  HfConfigInfo info;
  info.model = model_config_from_hf(j, where, &info.architecture);
  const ConfigReader r{j, where};
  auto token_id = [&](const char* key) -> std::optional<int64_t> {
    if (!r.has(key)) return std::nullopt;
    const json& v = j[key];
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();  // eos lists
    return std::nullopt;
  };
  info.bos_token_id = token_id("bos_token_id");
  info.eos_token_id = token_id("eos_token_id");
  info.torch_dtype = r.string_or("dtype", r.string_or("torch_dtype", ""));
  if (info.model.family == "deepseek" && r.integer_or("num_nextn_predict_layers", 0) > 0)
    info.notes.push_back("multi-token-prediction layers (num_nextn_predict_layers) are not part of the model; their "
                         "weights, if present, are skipped");
  return info;
}

}  // namespace fathom::ckpt
