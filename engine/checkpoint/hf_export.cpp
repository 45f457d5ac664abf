// Fathom checkpoint -> Hugging Face model directory (see hf.h): config.json with what
// transformers needs for the family, generation_config.json, model.safetensors (or shards +
// index), tokenizer.json + tokenizer_config.json. Assembled in <out>.tmp-<pid>, then renamed.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/checkpoint/hf.h"
#include "engine/checkpoint/hf_util.h"
#include "engine/checkpoint/manager.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/train/session_util.h"

namespace fathom::ckpt {

using nlohmann::json;
using namespace hf_detail;

uint64_t parse_byte_size(const std::string& text) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) throw HfError("size \"" + text + "\" does not start with a number; write e.g. 2GB, 500MB or 1000000.");
  const double v = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit = s.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else throw HfError("size \"" + text + "\" has unit \"" + s.substr(i) + "\"; use B, KB, MB, GB, TB, KiB, MiB or GiB.");
  const double bytes = v * mult;
  if (!(bytes >= 1)) throw HfError("size \"" + text + "\" must be at least one byte.");
  return static_cast<uint64_t>(bytes);
}

namespace {

const HfArchitecture& architecture_for(const std::string& family) {
  for (const auto& a : hf_architectures())
    if (family == a.family) return a;
  throw HfError("model.family " + family + " has no Hugging Face architecture; exportable families: llama, qwen2, deepseek.");
}

json token_or_null(std::optional<int64_t> id) { return id ? json(*id) : json(nullptr); }

}  // namespace

json hf_config_json(const config::ModelConfig& m, std::optional<int64_t> bos, std::optional<int64_t> eos,
                    const std::string& dtype) {
  const HfArchitecture& a = architecture_for(m.family);
  const int64_t H = m.n_heads;
  const int64_t Hkv = m.n_kv_heads > 0 ? m.n_kv_heads : H;
  const int64_t hd = m.head_dim > 0 ? m.head_dim : m.d_model / H;
  json j = {
      {"architectures", json::array({a.architecture})},
      {"model_type", a.model_type},
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.d_model},
      {"intermediate_size", m.d_ff},
      {"num_hidden_layers", m.n_layers},
      {"num_attention_heads", H},
      {"num_key_value_heads", Hkv},
      {"hidden_act", "silu"},
      {"max_position_embeddings", m.max_seq_len},
      {"initializer_range", m.init_std},
      {"rms_norm_eps", m.norm_eps},
      {"use_cache", true},
      {"tie_word_embeddings", m.tie_embeddings},
      // transformers 5 reads rope_parameters; 4.x reads rope_theta and rope_scaling.
      {"rope_theta", m.rope_theta},
      {"rope_scaling", nullptr},
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", m.rope_theta}}},
      {"attention_dropout", 0.0},
      {"bos_token_id", token_or_null(bos)},
      {"eos_token_id", token_or_null(eos)},
      {"pad_token_id", nullptr},
      {"dtype", dtype},        // transformers >= 4.56
      {"torch_dtype", dtype},  // older
  };
  if (m.family == "llama") {
    j["head_dim"] = hd;
    j["attention_bias"] = m.attention_bias;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  } else if (m.family == "qwen2") {
    j["head_dim"] = hd;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = m.n_layers;
    j["layer_types"] = std::vector<std::string>(static_cast<size_t>(m.n_layers), "full_attention");
  } else {
    const auto& mla = m.mla;
    j["num_key_value_heads"] = H;
    j["kv_lora_rank"] = mla.kv_lora_rank;
    j["q_lora_rank"] = mla.q_lora_rank > 0 ? json(mla.q_lora_rank) : json(nullptr);
    j["qk_rope_head_dim"] = mla.qk_rope_head_dim;
    j["qk_nope_head_dim"] = mla.qk_nope_head_dim;
    j["qk_head_dim"] = mla.qk_rope_head_dim + mla.qk_nope_head_dim;
    j["v_head_dim"] = mla.v_head_dim;
    j["head_dim"] = mla.qk_rope_head_dim;
    j["rope_interleave"] = mla.rope_interleave;
    j["attention_bias"] = false;
    const auto& moe = m.moe;
    j["n_routed_experts"] = moe.n_routed_experts;
    j["n_shared_experts"] = moe.n_shared_experts;
    j["num_experts_per_tok"] = moe.top_k;
    j["moe_intermediate_size"] = moe.d_expert > 0 ? moe.d_expert : m.d_ff;
    j["first_k_dense_replace"] = moe.first_k_dense;
    j["norm_topk_prob"] = moe.norm_topk_prob;
    j["routed_scaling_factor"] = moe.routed_scaling_factor;
    j["n_group"] = moe.n_group;
    j["topk_group"] = moe.topk_group;
    j["scoring_func"] = "sigmoid";
    j["topk_method"] = "noaux_tc";
    j["moe_layer_freq"] = 1;
    j["num_nextn_predict_layers"] = 0;
    j["pretraining_tp"] = 1;
  }
  return j;
}

namespace {

// What transformers can load exactly; everything else is refused before anything is written.
void check_exportable(const config::ModelConfig& m, std::vector<std::string>* warnings) {
  if (m.family == "llama" || m.family == "qwen2") {
    if (m.attention != "mha" || m.moe.n_routed_experts > 0)
      throw HfError("model.family " + m.family + " with attention " + m.attention + " and " +
                    std::to_string(m.moe.n_routed_experts) + " routed experts has no Hugging Face equivalent; only dense "
                    "multi-head-attention models export as " + m.family + ".");
    if (m.family == "qwen2" && m.attention_bias)
      throw HfError("model.attention_bias is true for family qwen2: Qwen2ForCausalLM has q/k/v biases but none on o_proj, "
                    "so this model cannot be expressed; export it as family llama or train without attention_bias.");
    const int64_t hd = m.head_dim > 0 ? m.head_dim : m.d_model / m.n_heads;
    if (m.family == "qwen2" && hd * m.n_heads != m.d_model)
      warnings->push_back("head_dim " + std::to_string(hd) + " × n_heads != d_model: Qwen2ForCausalLM reads head_dim from "
                          "config.json only in recent transformers versions");
  } else if (m.family == "deepseek") {
    if (m.attention != "mla")
      throw HfError("model.family deepseek with attention " + m.attention + " cannot be exported: DeepseekV3ForCausalLM always "
                    "uses multi-head latent attention (set model.attention: mla).");
    if (m.moe.n_routed_experts <= 0)
      throw HfError("a dense deepseek-family model (moe.n_routed_experts 0) cannot be exported: DeepseekV3ForCausalLM makes "
                    "every layer past first_k_dense_replace a mixture of experts.");
    if (m.moe.gate != "sigmoid")
      throw HfError("model.moe.gate is " + m.moe.gate + ", but DeepseekV3ForCausalLM routes with sigmoid scores; only "
                    "models trained with moe.gate: sigmoid export exactly.");
    if (m.moe.n_shared_experts <= 0)
      throw HfError("model.moe.n_shared_experts is 0, but DeepseekV3ForCausalLM always has shared experts; it cannot "
                    "load this model exactly.");
    if (m.moe.capacity_factor > 0)
      warnings->push_back("moe.capacity_factor " + std::to_string(m.moe.capacity_factor) + " drops tokens in Fathom; "
                          "transformers never drops, so outputs differ wherever the cap was hit");
  } else {
    architecture_for(m.family);  // throws
  }
}

std::string dtype_hf_name(const std::string& dtype) {
  if (dtype == "fp32") return "float32";
  if (dtype == "bf16") return "bfloat16";
  if (dtype == "fp16") return "float16";
  throw HfError("--dtype " + dtype + " is not one of fp32, bf16, fp16.");
}

torch::ScalarType dtype_torch(const std::string& dtype) {
  if (dtype == "bf16") return torch::kBFloat16;
  if (dtype == "fp16") return torch::kFloat16;
  return torch::kFloat32;
}

struct ExportTokenizer {
  std::string json_text;    // tokenizer.json for transformers (no "fathom" key)
  std::string config_text;  // tokenizer_config.json
  std::string special_map;  // special_tokens_map.json ("" = none)
  std::optional<int64_t> bos, eos;
  std::string source;
};

std::string strip_fathom_key(const std::string& text, const std::string& where) {
  // Fathom's own tokenizer.json carries a top-level "fathom" object that `tokenizers` (0.23)
  // refuses as an unknown field; transformers gets the eos token from tokenizer_config.json.
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw HfError(where + ": not valid JSON (" + std::string(e.what()) + ").");
  }
  if (!j.is_object() || !j.contains("fathom")) return text;
  j.erase("fathom");
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// The tokenizer file a run used: tokenizer.path, else what the run's events.jsonl says prepare
// produced, else where prepare would put it for this config.
std::vector<std::string> tokenizer_candidates(const config::RunConfig& cfg, const std::string& run_dir) {
  std::vector<std::string> out;
  if (!cfg.tokenizer.path.empty()) out.push_back(cfg.tokenizer.path);
  const std::string events = join(run_dir, "events.jsonl");
  std::ifstream in(events);
  std::string line;
  std::string from_events;
  while (std::getline(in, line)) {
    if (line.find("\"data_ready\"") == std::string::npos) continue;
    try {
      const json r = json::parse(line);
      const json& d = r.at("data");
      if (d.value("name", std::string()) == "data_ready" && d.contains("tokenizer") && d["tokenizer"].is_string())
        from_events = d["tokenizer"].get<std::string>();
    } catch (const std::exception&) {
    }
  }
  if (!from_events.empty()) out.push_back(from_events);
  if (cfg.tokenizer.path.empty()) {
    try {
      const std::string ws = cfg.run.workspace.empty() ? config::default_workspace() : cfg.run.workspace;
      out.push_back(train::prepare_options(cfg, ws).tokenizer_path);
    } catch (const std::exception&) {
    }
  }
  return out;
}

std::optional<ExportTokenizer> find_tokenizer(const config::RunConfig& cfg, const std::string& run_dir, int64_t vocab,
                                              std::vector<std::string>* warnings) {
  std::string path;
  for (const auto& c : tokenizer_candidates(cfg, run_dir)) {
    if (!c.empty() && posix::exists(c)) {
      path = c;
      break;
    }
  }
  if (path.empty()) {
    warnings->push_back("the run's tokenizer (kind " + cfg.tokenizer.kind + ") was not found on this machine; exported "
                        "without tokenizer.json (copy it in, or set tokenizer.path in the run config)");
    return std::nullopt;
  }
  ExportTokenizer t;
  t.source = path;
  std::string json_path = path;
  if (posix::is_directory(path) && posix::is_regular_file(join(path, "tokenizer.json"))) json_path = join(path, "tokenizer.json");
  tok::Tokenizer tk;
  try {
    tk = tok::Tokenizer::load(path);
  } catch (const std::exception& e) {
    warnings->push_back(std::string("the tokenizer ") + path + " could not be loaded (" + e.what() + "); exported without it");
    return std::nullopt;
  }
  if (static_cast<int64_t>(tk.vocab_size()) > vocab)
    warnings->push_back("the tokenizer has " + std::to_string(tk.vocab_size()) + " tokens but the model's vocabulary is " +
                        std::to_string(vocab));
  if (auto e = tk.eos_id()) t.eos = static_cast<int64_t>(*e);
  json tcfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
               {"model_max_length", cfg.model.max_seq_len},
               {"clean_up_tokenization_spaces", false},
               {"add_bos_token", false},
               {"add_eos_token", false}};
  if (t.eos) tcfg["eos_token"] = tk.token_bytes(static_cast<uint32_t>(*t.eos));
  if (cfg.tokenizer.kind == "hf" && posix::is_regular_file(json_path) &&
      json_path.size() >= 5 && json_path.compare(json_path.size() - 5, 5, ".json") == 0) {
    // Copy as is (minus our own extension key), with the tokenizer's own config when beside it.
    t.json_text = strip_fathom_key(read_text_file(json_path, "tokenizer"), json_path);
    const std::string dir = posix::parent_directory(json_path);
    const std::string own_cfg = join(dir, "tokenizer_config.json");
    t.config_text = posix::is_regular_file(own_cfg) ? read_text_file(own_cfg, "tokenizer config") : tcfg.dump(2) + "\n";
    const std::string map = join(dir, "special_tokens_map.json");
    if (posix::is_regular_file(map)) t.special_map = read_text_file(map, "special tokens map");
  } else {
    // bpe / gpt2: write it in tokenizer.json form (byte-level BPE, what HF `tokenizers` loads).
    const std::string tmp = "/tmp/fathom-export-tokenizer-" + std::to_string(::getpid()) + ".json";
    tk.save(tmp);
    std::string text;
    try {
      text = read_text_file(tmp, "tokenizer");
    } catch (...) {
      std::remove(tmp.c_str());
      throw;
    }
    std::remove(tmp.c_str());
    t.json_text = strip_fathom_key(text, path);
    t.config_text = tcfg.dump(2) + "\n";
  }
  return t;
}

void write_text(const std::string& path, const std::string& text) { write_file_durable(path, text); }

}  // namespace

HfExportResult export_checkpoint_to_hf(const HfExportOptions& o) {
  auto progress = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  HfExportResult res;
  if (o.out_dir.empty()) throw HfError("no output directory given (--out DIR).");
  const std::string hf_dtype = dtype_hf_name(o.dtype);
  if (!posix::is_directory(o.checkpoint_dir))
    throw HfError(o.checkpoint_dir + (posix::exists(o.checkpoint_dir) ? " is not a directory" : " does not exist") +
                  "; give a checkpoint directory (…/checkpoints/step-N).");
  const std::string ck = resolve_checkpoint_dir(o.checkpoint_dir);
  if (ck.empty())
    throw HfError(o.checkpoint_dir + " is not a Fathom checkpoint (no MANIFEST.json) nor a checkpoints/ or run directory "
                  "(no `latest`).");
  const std::string ck_abs = absolute_path(ck);
  const std::string run_config =
      o.run_config.empty() ? join(posix::parent_directory(posix::parent_directory(ck_abs)), "config.yaml") : o.run_config;
  if (!posix::is_regular_file(run_config))
    throw HfError("no run config at " + run_config + (o.run_config.empty() ? " (two levels above the checkpoint)" : "") +
                  "; pass the run's config.yaml with --config RUN_CONFIG.");
  const std::string run_dir = posix::parent_directory(absolute_path(run_config));

  // Refuse before any work when the output is taken.
  const std::string final_dir = absolute_path(o.out_dir);
  if (posix::exists(final_dir) && !posix::is_directory(final_dir))
    throw HfError(final_dir + " exists and is not a directory.");
  const bool replace = posix::exists(final_dir) && !posix::list_directory(final_dir).empty();
  if (replace && !o.overwrite)
    throw HfError(final_dir + " exists and is not empty; choose another --out or pass --overwrite to replace it.");

  progress("reading " + run_config);
  config::LoadOptions lo;
  lo.check_paths = false;
  const auto loaded = config::load_config_file(run_config, lo);
  if (!loaded.ok()) {
    std::string msg;
    for (const auto& e : loaded.errors) msg += "\n  " + e.message();
    throw HfError("the run config " + run_config + " does not load:" + msg);
  }
  const config::RunConfig& cfg = loaded.config;
  config::ModelConfig m = cfg.model;

  progress("verifying and loading " + ck_abs);
  CheckpointPayload payload = CheckpointManager::load(ck_abs);
  const torch::Tensor* embed = nullptr;
  for (const auto& [n, t] : payload.model)
    if (n == "model.embed_tokens.weight") embed = &t;
  if (!embed || embed->dim() != 2)
    throw HfError(ck_abs + "/model.safetensors has no 2-D model.embed_tokens.weight; it is not a Fathom language model checkpoint.");
  if (m.vocab_size <= 0) m.vocab_size = embed->size(0);
  check_exportable(m, &res.warnings);
  check_against_expected(payload.model, m, ck_abs + " (with " + run_config + ")");
  NamedTensors tensors = sorted_like_expected(std::move(payload.model), m);

  const torch::ScalarType target = dtype_torch(o.dtype);
  for (auto& [n, t] : tensors) {
    // The router's correction bias is kept in fp32, as DeepSeek's own releases store it.
    const bool keep32 = n.size() > 23 && n.compare(n.size() - 23, 23, "e_score_correction_bias") == 0;
    t = t.to(keep32 ? torch::kFloat32 : target).contiguous();
  }

  auto tokenizer = find_tokenizer(cfg, run_dir, m.vocab_size, &res.warnings);
  const json config_json = hf_config_json(m, tokenizer ? tokenizer->bos : std::nullopt,
                                          tokenizer ? tokenizer->eos : std::nullopt, hf_dtype);

  // Shards in model order; a tensor larger than the limit gets a shard of its own.
  std::vector<NamedTensors> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (auto& [n, t] : tensors) {
    const uint64_t b = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (o.max_shard_bytes > 0 && in_shard > 0 && in_shard + b > o.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().emplace_back(n, t);
    in_shard += b;
    total += b;
  }

  const std::string parent = posix::parent_directory(final_dir);
  posix::make_directories(parent);
  const std::string tmp = fresh_tmp_sibling(final_dir);
  posix::make_directories(tmp);
  try {
    const WriteOptions durable{/*fsync=*/true, /*compute_sha256=*/false};
    const std::map<std::string, std::string> meta = {{"format", "pt"}};
    if (shards.size() == 1) {
      progress("writing model.safetensors (" + std::to_string(tensors.size()) + " tensors, " + hf_dtype + ")");
      save_tensors(join(tmp, "model.safetensors"), shards[0], meta, durable);
      res.files.push_back("model.safetensors");
    } else {
      json weight_map = json::object();
      char name[64];
      for (size_t i = 0; i < shards.size(); ++i) {
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        progress(std::string("writing ") + name + " (" + std::to_string(shards[i].size()) + " tensors)");
        save_tensors(join(tmp, name), shards[i], meta, durable);
        for (const auto& [n, t] : shards[i]) weight_map[n] = name;
        res.files.push_back(name);
      }
      const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
      write_text(join(tmp, "model.safetensors.index.json"), index.dump(2) + "\n");
      res.files.push_back("model.safetensors.index.json");
    }
    write_text(join(tmp, "config.json"), config_json.dump(2) + "\n");
    res.files.push_back("config.json");
    json gen = {{"_from_model_config", true}};
    if (tokenizer && tokenizer->bos) gen["bos_token_id"] = *tokenizer->bos;
    if (tokenizer && tokenizer->eos) gen["eos_token_id"] = *tokenizer->eos;
    write_text(join(tmp, "generation_config.json"), gen.dump(2) + "\n");
    res.files.push_back("generation_config.json");
    if (tokenizer) {
      progress("writing tokenizer.json (from " + tokenizer->source + ")");
      write_text(join(tmp, "tokenizer.json"), tokenizer->json_text);
      write_text(join(tmp, "tokenizer_config.json"), tokenizer->config_text);
      res.files.push_back("tokenizer.json");
      res.files.push_back("tokenizer_config.json");
      if (!tokenizer->special_map.empty()) {
        write_text(join(tmp, "special_tokens_map.json"), tokenizer->special_map);
        res.files.push_back("special_tokens_map.json");
      }
    }
    fsync_directory(tmp);
    if (posix::exists(final_dir)) {
      // Empty: rmdir. Not empty (--overwrite): move aside, rename, then delete the old one.
      const std::string old = final_dir + ".old-" + std::to_string(::getpid());
      if (!replace) {
        if (::rmdir(final_dir.c_str()) != 0)
          throw HfError("cannot replace the empty directory " + final_dir + ": " + std::strerror(errno) + ".");
      } else if (::rename(final_dir.c_str(), old.c_str()) != 0) {
        throw HfError("cannot move the existing " + final_dir + " aside: " + std::strerror(errno) + ".");
      }
      if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
        const int err = errno;
        if (replace) (void)::rename(old.c_str(), final_dir.c_str());
        throw HfError("cannot rename " + tmp + " to " + final_dir + ": " + std::strerror(err) + ".");
      }
      if (replace) posix::remove_tree(old);
    } else if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
      throw HfError("cannot rename " + tmp + " to " + final_dir + ": " + std::strerror(errno) + ".");
    }
    fsync_directory(parent);
  } catch (...) {
    posix::remove_tree(tmp);
    throw;
  }
  res.out_dir = final_dir;
  res.tensors = static_cast<int64_t>(tensors.size());
  res.bytes = total;
  return res;
}

}  // namespace fathom::ckpt
