// Hugging Face model directories -> Fathom config + tensors (import); see hf.h. Export lives in
// hf_export.cpp. Reference for every field: transformers 5.17 configuration_{llama,qwen2,
// deepseek_v3}.py and the config.json files its save_pretrained writes (tests/fixtures/hf).
#include "engine/checkpoint/hf.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/checkpoint/hf_util.h"
#include "engine/checkpoint/manager.h"
#include "engine/config/config.h"

namespace fathom::ckpt {

using nlohmann::json;

namespace hf_detail {

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string absolute_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  // Not there yet: resolve the parent and append the name.
  const std::string parent = posix::parent_directory(path);
  if (parent != path && ::realpath(parent.c_str(), buf)) return join(buf, posix::base_name(path));
  return path;
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HfError("cannot read " + what + " " + path + ": " + std::strerror(errno) + ".");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_text_file(path, what);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw HfError(path + ": not valid JSON (" + std::string(e.what()) + "); the " + what + " is damaged.");
  }
}

std::string natural_key(const std::string& name) {
  // Zero-pad every run of digits so that "layers.10" sorts after "layers.9".
  std::string out;
  for (size_t i = 0; i < name.size();) {
    if (std::isdigit(static_cast<unsigned char>(name[i]))) {
      size_t j = i;
      while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
      out += std::string(j - i < 12 ? 12 - (j - i) : 0, '0') + name.substr(i, j - i);
      i = j;
    } else {
      out += name[i++];
    }
  }
  return out;
}

std::string fresh_tmp_sibling(const std::string& final_dir) {
  const std::string parent = posix::parent_directory(final_dir);
  const std::string prefix = posix::base_name(final_dir) + ".tmp-";
  for (const auto& name : posix::list_directory(parent)) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_s = name.substr(prefix.size());
    if (pid_s.empty() || pid_s.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(pid_s.c_str(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) posix::remove_tree(join(parent, name));
  }
  const std::string tmp = final_dir + ".tmp-" + std::to_string(::getpid());
  posix::remove_tree(tmp);
  return tmp;
}

}  // namespace hf_detail

using namespace hf_detail;

// ---- the directory --------------------------------------------------------------------------

HfModelInfo read_hf_model_dir(const std::string& dir_in) {
  if (!posix::is_directory(dir_in)) {
    throw HfError(dir_in + (posix::exists(dir_in) ? " is not a directory" : " does not exist") +
                  "; give the Hugging Face model directory (the one holding config.json and *.safetensors).");
  }
  HfModelInfo info;
  info.dir = absolute_path(dir_in);
  const std::string cfg_path = join(info.dir, "config.json");
  if (!posix::is_regular_file(cfg_path)) {
    throw HfError(info.dir + " has no config.json, so it is not a Hugging Face model directory (save_pretrained writes "
                  "config.json beside the weights). Point at the directory that holds it.");
  }
  const json j = read_json_file(cfg_path, "model config");
  HfConfigInfo c = read_hf_config(j, cfg_path);
  info.model = std::move(c.model);
  info.architecture = std::move(c.architecture);
  info.bos_token_id = c.bos_token_id;
  info.eos_token_id = c.eos_token_id;
  info.torch_dtype = std::move(c.torch_dtype);
  info.notes = std::move(c.notes);

  // Weights: sharded (index) or one file.
  const std::string index_path = join(info.dir, "model.safetensors.index.json");
  const std::string single = join(info.dir, "model.safetensors");
  if (posix::is_regular_file(index_path)) {
    const json idx = read_json_file(index_path, "weight index");
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw HfError(index_path + ": no \"weight_map\" object; the index is damaged (re-save the model).");
    std::set<std::string> files;
    for (const auto& [tensor, file] : idx["weight_map"].items()) {
      if (!file.is_string())
        throw HfError(index_path + ": weight_map[\"" + tensor + "\"] is " + file.dump() + ", expected a file name.");
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        throw HfError(index_path + ": weight_map[\"" + tensor + "\"] names \"" + f + "\", expected a plain file name in " +
                      info.dir + ".");
      files.insert(f);
    }
    if (files.empty()) throw HfError(index_path + ": weight_map is empty.");
    for (const auto& f : files) {
      const std::string p = join(info.dir, f);
      if (!posix::is_regular_file(p)) {
        throw HfError(index_path + " names shard \"" + f + "\", which is missing from " + info.dir +
                      "; the download or copy is incomplete (fetch every model-*-of-*.safetensors file).");
      }
      info.weight_files.push_back(p);
    }
  } else if (posix::is_regular_file(single)) {
    info.weight_files.push_back(single);
  } else {
    std::string found;
    for (const auto& n : posix::list_directory(info.dir))
      if (n.size() > 12 && (n.rfind(".safetensors") == n.size() - 12 || n.rfind(".bin") == n.size() - 4 ||
                            n.rfind(".pth") == n.size() - 4))
        found += (found.empty() ? "" : ", ") + n;
    throw HfError(info.dir + " has neither model.safetensors nor model.safetensors.index.json" +
                  (found.empty() ? std::string(".") : " (found: " + found + ").") +
                  " Fathom reads safetensors weights only; re-save with save_pretrained(dir, safe_serialization=True).");
  }
  const std::string tok = join(info.dir, "tokenizer.json");
  if (posix::is_regular_file(tok)) info.tokenizer_json = tok;
  return info;
}

// ---- expected names and shapes ---------------------------------------------------------------

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensor_shapes(const config::ModelConfig& m) {
  if (m.vocab_size <= 0) throw HfError("model.vocab_size is not set; cannot tell the embedding's shape.");
  const int64_t C = m.d_model, V = m.vocab_size, H = m.n_heads;
  const int64_t Hkv = m.n_kv_heads > 0 ? m.n_kv_heads : H;
  const int64_t hd = m.head_dim > 0 ? m.head_dim : (H > 0 ? C / H : 0);
  const int64_t d_ff = m.d_ff;
  const int64_t d_expert = m.moe.d_expert > 0 ? m.moe.d_expert : d_ff;
  if (d_ff <= 0) throw HfError("model.d_ff is not set.");
  const bool qkv_bias = m.attention_bias || m.family == "qwen2";
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto add = [&](const std::string& n, std::vector<int64_t> s) { out.emplace_back(n, std::move(s)); };
  auto mlp = [&](const std::string& p, int64_t width) {
    add(p + ".gate_proj.weight", {width, C});
    add(p + ".up_proj.weight", {width, C});
    add(p + ".down_proj.weight", {C, width});
  };
  add("model.embed_tokens.weight", {V, C});
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string L = "model.layers." + std::to_string(i);
    add(L + ".input_layernorm.weight", {C});
    add(L + ".post_attention_layernorm.weight", {C});
    const std::string A = L + ".self_attn";
    if (m.attention == "mla") {
      const auto& a = m.mla;
      const int64_t qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
      if (a.q_lora_rank > 0) {
        add(A + ".q_a_proj.weight", {a.q_lora_rank, C});
        add(A + ".q_a_layernorm.weight", {a.q_lora_rank});
        add(A + ".q_b_proj.weight", {H * qk, a.q_lora_rank});
      } else {
        add(A + ".q_proj.weight", {H * qk, C});
      }
      add(A + ".kv_a_proj_with_mqa.weight", {a.kv_lora_rank + a.qk_rope_head_dim, C});
      add(A + ".kv_a_layernorm.weight", {a.kv_lora_rank});
      add(A + ".kv_b_proj.weight", {H * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank});
      add(A + ".o_proj.weight", {C, H * a.v_head_dim});
    } else {
      add(A + ".q_proj.weight", {H * hd, C});
      if (qkv_bias) add(A + ".q_proj.bias", {H * hd});
      add(A + ".k_proj.weight", {Hkv * hd, C});
      if (qkv_bias) add(A + ".k_proj.bias", {Hkv * hd});
      add(A + ".v_proj.weight", {Hkv * hd, C});
      if (qkv_bias) add(A + ".v_proj.bias", {Hkv * hd});
      add(A + ".o_proj.weight", {C, H * hd});
      if (m.attention_bias) add(A + ".o_proj.bias", {C});
    }
    if (m.moe.n_routed_experts > 0 && i >= m.moe.first_k_dense) {
      const int64_t E = m.moe.n_routed_experts;
      add(L + ".mlp.gate.weight", {E, C});
      add(L + ".mlp.gate.e_score_correction_bias", {E});
      for (int64_t e = 0; e < E; ++e) mlp(L + ".mlp.experts." + std::to_string(e), d_expert);
      if (m.moe.n_shared_experts > 0) mlp(L + ".mlp.shared_experts", m.moe.n_shared_experts * d_expert);
    } else {
      mlp(L + ".mlp", d_ff);
    }
  }
  add("model.norm.weight", {C});
  if (!m.tie_embeddings) add("lm_head.weight", {V, C});
  return out;
}

namespace hf_detail {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void check_against_expected(const NamedTensors& tensors, const config::ModelConfig& m, const std::string& where) {
  const auto expected = expected_tensor_shapes(m);
  std::map<std::string, const torch::Tensor*> have;
  for (const auto& [n, t] : tensors) have[n] = &t;
  std::vector<std::string> missing, wrong;
  std::set<std::string> known;
  for (const auto& [n, s] : expected) {
    known.insert(n);
    auto it = have.find(n);
    if (it == have.end()) {
      missing.push_back(n);
    } else if (it->second->sizes().vec() != s) {
      wrong.push_back(n + " is " + shape_str(it->second->sizes().vec()) + ", the model needs " + shape_str(s));
    }
  }
  std::vector<std::string> extra;
  for (const auto& [n, t] : have)
    if (!known.count(n)) extra.push_back(n);
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 6; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 6) s += " and " + std::to_string(v.size() - 6) + " more";
    return s;
  };
  if (!missing.empty())
    throw HfError(where + ": " + std::to_string(missing.size()) + " tensor(s) the model needs are missing: " + list(missing) +
                  ". The weights do not match the config (wrong config.json, or an incomplete/other model's files).");
  if (!wrong.empty())
    throw HfError(where + ": tensor shapes do not match the config: " + list(wrong) + ".");
  if (!extra.empty())
    throw HfError(where + ": " + std::to_string(extra.size()) + " tensor(s) the model does not have: " + list(extra) +
                  ". The weights do not match the config, or the model has parts Fathom does not implement.");
}

NamedTensors sorted_like_expected(NamedTensors tensors, const config::ModelConfig& m) {
  std::map<std::string, size_t> order;
  const auto expected = expected_tensor_shapes(m);
  for (size_t i = 0; i < expected.size(); ++i) order[expected[i].first] = i;
  std::stable_sort(tensors.begin(), tensors.end(), [&](const auto& a, const auto& b) {
    auto ia = order.find(a.first), ib = order.find(b.first);
    const size_t x = ia == order.end() ? SIZE_MAX : ia->second, y = ib == order.end() ? SIZE_MAX : ib->second;
    return x != y ? x < y : natural_key(a.first) < natural_key(b.first);
  });
  return tensors;
}

}  // namespace hf_detail

// ---- weights ---------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "model.layers.12.xxx" -> 12, else -1.
int64_t layer_of(const std::string& name) {
  static const std::string p = "model.layers.";
  if (name.rfind(p, 0) != 0) return -1;
  size_t i = p.size(), j = i;
  while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
  if (j == i) return -1;
  return std::stoll(name.substr(i, j - i));
}

}  // namespace

NamedTensors load_hf_weights(const HfModelInfo& info) {
  const config::ModelConfig& m = info.model;
  NamedTensors out;
  std::set<std::string> seen;
  for (const auto& path : info.weight_files) {
    std::unique_ptr<SafetensorsFile> file;
    try {
      file = std::make_unique<SafetensorsFile>(path);
    } catch (const SafetensorsError& e) {
      throw HfError(std::string(e.what()) + (info.weight_files.size() > 1 ? " (a shard of " + info.dir + ")" : "") +
                    " The file is damaged or was cut short: download or copy it again.");
    }
    for (const TensorInfo& ti : file->tensors()) {
      const std::string& name = ti.name;
      if (!seen.insert(name).second)
        throw HfError(path + ": tensor '" + name + "' appears in more than one weight file of " + info.dir + ".");
      if (ends_with(name, "rotary_emb.inv_freq")) continue;  // older checkpoints stored the RoPE table
      if (name == "lm_head.weight" && m.tie_embeddings) continue;  // tied: the embedding is the head
      const int64_t layer = layer_of(name);
      if (layer >= m.n_layers && m.family == "deepseek") continue;  // DeepSeek-V3 multi-token prediction
      torch::Tensor t;
      try {
        t = tensor_from_file(*file, ti);
      } catch (const SafetensorsError& e) {
        throw HfError(std::string(e.what()));
      }
      if (!t.is_floating_point())
        throw HfError(path + ": tensor '" + name + "' has dtype " + dtype_name(ti.dtype) +
                      "; model weights must be floating point (quantized checkpoints are not imported).");
      t = t.to(torch::kFloat32).contiguous();
      // transformers 5 keeps routed experts fused in memory: gate_up_proj (E, 2·I, C) with gate
      // rows first, down_proj (E, C, I). Its save_pretrained writes them per expert again, but a
      // state_dict saved directly (or another tool) may hold the fused form.
      std::string base = name;
      if (ends_with(base, ".weight") && (ends_with(base, "experts.gate_up_proj.weight") || ends_with(base, "experts.down_proj.weight")))
        base = base.substr(0, base.size() - 7);
      if (ends_with(base, ".mlp.experts.gate_up_proj") || ends_with(base, ".mlp.experts.down_proj")) {
        const bool gate_up = ends_with(base, "gate_up_proj");
        const std::string prefix = base.substr(0, base.rfind('.') + 1);  // "...mlp.experts."
        if (t.dim() != 3) throw HfError(path + ": fused expert tensor '" + name + "' is not 3-D (" + shape_str(t.sizes().vec()) + ").");
        for (int64_t e = 0; e < t.size(0); ++e) {
          const std::string p = prefix + std::to_string(e) + ".";
          if (gate_up) {
            if (t.size(1) % 2) throw HfError(path + ": '" + name + "' has an odd gate_up width " + std::to_string(t.size(1)) + ".");
            const int64_t I = t.size(1) / 2;
            out.emplace_back(p + "gate_proj.weight", t[e].narrow(0, 0, I).contiguous());
            out.emplace_back(p + "up_proj.weight", t[e].narrow(0, I, I).contiguous());
          } else {
            out.emplace_back(p + "down_proj.weight", t[e].contiguous());
          }
        }
        continue;
      }
      out.emplace_back(name, std::move(t));
    }
  }
  check_against_expected(out, m, info.dir);
  return sorted_like_expected(std::move(out), m);
}

// ---- model.init_from ---------------------------------------------------------------------------

namespace hf_detail {

// step-<N> directory for a checkpoint dir, a checkpoints/ dir (its `latest`) or a run dir.
std::string resolve_checkpoint_dir(const std::string& dir) {
  if (posix::is_regular_file(join(dir, kManifestFile))) return dir;
  for (const std::string& ckdir : {dir, join(dir, "checkpoints")}) {
    const std::string latest = join(ckdir, kLatestFile);
    if (!posix::is_regular_file(latest)) continue;
    std::string name = read_text_file(latest, "latest-checkpoint file");
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
    int64_t step;
    if (!parse_checkpoint_dir_name(name, &step))
      throw HfError(latest + " holds \"" + name + "\", not a step-<N> name; name a checkpoint directory explicitly.");
    const std::string p = join(ckdir, name);
    if (!posix::is_directory(p))
      throw HfError(latest + " names " + name + ", which does not exist in " + ckdir + "; name a checkpoint directory explicitly.");
    return p;
  }
  return "";
}

}  // namespace hf_detail

NamedTensors load_pretrained_weights(const std::string& dir) {
  if (!posix::is_directory(dir))
    throw HfError("model.init_from " + dir + (posix::exists(dir) ? " is not a directory" : " does not exist") +
                  "; give a checkpoint directory (…/checkpoints/step-N) or a Hugging Face model directory.");
  if (posix::is_regular_file(join(dir, "config.json")) && !posix::is_regular_file(join(dir, kManifestFile))) {
    const HfModelInfo info = read_hf_model_dir(dir);
    return load_hf_weights(info);
  }
  const std::string ck = resolve_checkpoint_dir(dir);
  if (ck.empty())
    throw HfError(dir + " is neither a Fathom checkpoint (no MANIFEST.json), a checkpoints/ or run directory (no "
                  "`latest`), nor a Hugging Face model directory (no config.json).");
  CheckpointPayload p = CheckpointManager::load(ck);  // verifies sizes and sha256 first
  NamedTensors out;
  out.reserve(p.model.size());
  for (auto& [n, t] : p.model) out.emplace_back(n, t.is_floating_point() ? t.to(torch::kFloat32).contiguous() : t);
  return out;
}

// ---- run config and import -------------------------------------------------------------------

namespace {

std::string yq(const std::string& s) { return json(s).dump(); }  // a JSON string is a YAML scalar
std::string yn(double v) { return json(v).dump(); }

}  // namespace

std::string hf_run_config_yaml(const HfModelInfo& info, const std::string& init_from, const std::string& tokenizer_json,
                               const std::string& run_name) {
  const config::ModelConfig& m = info.model;
  std::ostringstream y;
  y << "# Imported from the Hugging Face " << info.architecture << " in " << info.dir << "\n"
    << "# by `fathom-engine convert --to fathom`. Set data.train before training.\n";
  y << "run:\n  name: " << yq(run_name) << "\n";
  y << "model:\n"
    << "  family: " << m.family << "\n"
    << "  vocab_size: " << m.vocab_size << "\n"
    << "  d_model: " << m.d_model << "\n"
    << "  n_layers: " << m.n_layers << "\n"
    << "  n_heads: " << m.n_heads << "\n"
    << "  n_kv_heads: " << m.n_kv_heads << "\n";
  if (m.head_dim > 0) y << "  head_dim: " << m.head_dim << "\n";
  y << "  d_ff: " << m.d_ff << "\n"
    << "  max_seq_len: " << m.max_seq_len << "\n"
    << "  rope_theta: " << yn(m.rope_theta) << "\n"
    << "  norm_eps: " << yn(m.norm_eps) << "\n"
    << "  tie_embeddings: " << (m.tie_embeddings ? "true" : "false") << "\n"
    << "  attention_bias: " << (m.attention_bias ? "true" : "false") << "\n"
    << "  init_std: " << yn(m.init_std) << "\n"
    << "  attention: " << m.attention << "\n";
  if (!init_from.empty()) y << "  init_from: " << yq(init_from) << "\n";
  if (m.attention == "mla") {
    y << "  mla:\n"
      << "    kv_lora_rank: " << m.mla.kv_lora_rank << "\n"
      << "    q_lora_rank: " << m.mla.q_lora_rank << "\n"
      << "    qk_rope_head_dim: " << m.mla.qk_rope_head_dim << "\n"
      << "    qk_nope_head_dim: " << m.mla.qk_nope_head_dim << "\n"
      << "    v_head_dim: " << m.mla.v_head_dim << "\n"
      << "    rope_interleave: " << (m.mla.rope_interleave ? "true" : "false") << "\n";
  }
  if (m.moe.n_routed_experts > 0) {
    y << "  moe:\n"
      << "    n_routed_experts: " << m.moe.n_routed_experts << "\n"
      << "    n_shared_experts: " << m.moe.n_shared_experts << "\n"
      << "    top_k: " << m.moe.top_k << "\n"
      << "    d_expert: " << m.moe.d_expert << "\n"
      << "    first_k_dense: " << m.moe.first_k_dense << "\n"
      << "    gate: " << m.moe.gate << "\n"
      << "    balance: " << m.moe.balance << "\n"
      << "    norm_topk_prob: " << (m.moe.norm_topk_prob ? "true" : "false") << "\n"
      << "    routed_scaling_factor: " << yn(m.moe.routed_scaling_factor) << "\n"
      << "    n_group: " << m.moe.n_group << "\n"
      << "    topk_group: " << m.moe.topk_group << "\n";
  }
  if (!tokenizer_json.empty()) {
    y << "tokenizer:\n  kind: hf\n  path: " << yq(tokenizer_json) << "\n";
  } else {
    // No tokenizer came with the model: the placeholder trains a BPE of the model's vocabulary
    // size on data.train, which keeps the config valid but cannot match the pretrained embedding.
    y << "tokenizer:  # the model came without tokenizer.json: set kind hf and path to its tokenizer\n"
      << "  kind: bpe\n  vocab_size: " << m.vocab_size << "\n";
  }
  y << "data:\n  seq_len: " << std::min<int64_t>(m.max_seq_len, 256) << "\n";
  return y.str();
}

std::string import_hf_to_run(const HfImportOptions& o) {
  auto progress = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  if (o.run_dir.empty()) throw HfError("no output run directory given (--out RUN_DIR).");
  if (posix::exists(o.run_dir) && (!posix::is_directory(o.run_dir) || !posix::list_directory(o.run_dir).empty()))
    throw HfError(o.run_dir + " exists and is not an empty directory; choose a new --out (a run directory is created there).");
  progress("reading " + o.hf_dir);
  const HfModelInfo info = read_hf_model_dir(o.hf_dir);
  progress(info.architecture + ": family " + info.model.family + ", " + std::to_string(info.model.n_layers) + " layers, d_model " +
           std::to_string(info.model.d_model) + ", vocab " + std::to_string(info.model.vocab_size) + ", " +
           std::to_string(info.weight_files.size()) + " weight file(s)");
  for (const auto& n : info.notes) progress("note: " + n);
  NamedTensors weights = load_hf_weights(info);
  int64_t params = 0;
  for (const auto& [n, t] : weights) params += t.numel();
  progress("loaded " + std::to_string(weights.size()) + " tensors (" + std::to_string(params) + " values) as fp32");

  const std::string final_dir = absolute_path(o.run_dir);
  const std::string parent = posix::parent_directory(final_dir);
  posix::make_directories(parent);
  const std::string tmp = fresh_tmp_sibling(final_dir);
  posix::make_directories(tmp);
  try {
    std::string tokenizer_path;
    if (!info.tokenizer_json.empty()) {
      write_file_durable(join(tmp, "tokenizer.json"), read_text_file(info.tokenizer_json, "tokenizer"));
      for (const char* extra : {"tokenizer_config.json", "special_tokens_map.json"}) {
        const std::string p = join(info.dir, extra);
        if (posix::is_regular_file(p)) write_file_durable(join(tmp, extra), read_text_file(p, extra));
      }
      tokenizer_path = join(final_dir, "tokenizer.json");
    } else {
      progress("warning: " + info.dir + " has no tokenizer.json; set tokenizer.kind and tokenizer.path in config.yaml "
               "before training (the vocabulary must have at most " + std::to_string(info.model.vocab_size) + " tokens)");
    }
    const std::string step_name = checkpoint_dir_name(0);
    const std::string ck_final = join(join(final_dir, "checkpoints"), step_name);
    const std::string name = o.run_name.empty() ? posix::base_name(info.dir) : o.run_name;
    const std::string yaml = hf_run_config_yaml(info, ck_final, tokenizer_path, name);
    // Self-check: the engine must accept what we wrote (paths are not there yet, hence no checks).
    config::LoadOptions lo;
    lo.check_paths = false;
    const auto loaded = config::load_config_text(yaml, join(final_dir, "config.yaml"), lo);
    if (!loaded.ok()) {
      std::string msg;
      for (const auto& e : loaded.errors) msg += "\n  " + e.message();
      throw HfError("the run config made for " + info.dir + " does not validate (this model uses a setting the engine's "
                    "config does not accept):" + msg);
    }
    write_file_durable(join(tmp, "config.yaml"), yaml);

    progress("writing checkpoint " + ck_final);
    CheckpointPolicy policy;
    policy.save_dir = join(tmp, "checkpoints");
    policy.save_interval_s = 0;
    policy.save_every_steps = 0;
    policy.keep_n_latest = 0;
    policy.async = false;
    {
      CheckpointManager manager(policy);
      CheckpointPayload payload;
      payload.step = 0;
      payload.model = std::move(weights);
      payload.state = json{{"tokens", 0},
                           {"config_hash", config::config_hash(loaded)},
                           {"imported_from", json{{"format", "huggingface"}, {"dir", info.dir}, {"architecture", info.architecture}}}};
      manager.save(std::move(payload));
      manager.wait();
    }
    posix::remove_tree(join(join(tmp, "checkpoints"), ".lock"));
    fsync_directory(tmp);
    if (posix::exists(final_dir)) {  // empty, checked above
      if (::rmdir(final_dir.c_str()) != 0)
        throw HfError("cannot replace the empty directory " + final_dir + ": " + std::strerror(errno) + ".");
    }
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0)
      throw HfError("cannot rename " + tmp + " to " + final_dir + ": " + std::strerror(errno) + ".");
    fsync_directory(parent);
    progress("wrote " + final_dir + "/config.yaml (model.init_from: " + ck_final + ")");
    return ck_final;
  } catch (...) {
    posix::remove_tree(tmp);
    throw;
  }
}

}  // namespace fathom::ckpt
