// Hugging Face interop: the fixtures in tests/fixtures/hf were made by transformers 5.17 (see
// tools/hf/make_fixtures.py) with the logits it computed; importing them must reproduce those
// logits within 1e-4 (fp32, CPU). Export -> re-import must give back the same tensors bit for bit.
// Bad inputs must fail with an error naming the problem. The CLI is exercised end to end,
// including a short fine-tune of an imported model.
//
// FATHOM_HF_PARITY_OUT=DIR makes ExportForTransformersParity write Fathom exports and Fathom's
// logits there for tools/hf/check_export.py to compare with transformers (GPU machine).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/checkpoint/hf.h"
#include "engine/checkpoint/manager.h"
#include "engine/checkpoint/tensor_io.h"
#include "engine/engine_process.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using fathom::ckpt::HfError;
using fathom::ckpt::NamedTensors;

namespace {

const char* kFamilies[] = {"llama", "qwen2", "deepseek_v3"};

std::string fixture(const std::string& family) { return std::string(FATHOM_FIXTURES_DIR) + "/hf/" + family; }

struct TempDir {
  std::string path = fathom::testing::make_temp_dir("hf");
  ~TempDir() {
    std::error_code ec;
    if (!std::getenv("FATHOM_KEEP_TMP")) fs::remove_all(path, ec);
  }
};

std::string read_file(const std::string& p) { return fathom::testing::read_text(p); }
void write_file(const std::string& p, const std::string& s) { fathom::testing::write_text(p, s); }

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), fs::path(to) / e.path().filename());
}

// The Fathom model for a config, with `weights` copied into its parameters and buffers by name.
fathom::model::Transformer build_model(const fathom::config::ModelConfig& m, const NamedTensors& weights) {
  torch::manual_seed(0);
  fathom::model::Transformer net(fathom::model::args_from_config(m, m.vocab_size));
  std::map<std::string, torch::Tensor> by_name(weights.begin(), weights.end());
  torch::NoGradGuard ng;
  size_t used = 0;
  auto fill = [&](const std::string& name, torch::Tensor& dst) {
    auto it = by_name.find(name);
    EXPECT_TRUE(it != by_name.end()) << "the model has " << name << " but the import does not";
    if (it == by_name.end()) return;
    EXPECT_EQ(dst.sizes(), it->second.sizes()) << name;
    dst.copy_(it->second);
    ++used;
  };
  for (auto& p : net->named_parameters()) fill(p.key(), p.value());
  for (auto& b : net->named_buffers()) {
    if (by_name.count(b.key())) fill(b.key(), b.value());
  }
  EXPECT_EQ(used, weights.size()) << "some imported tensors are not in the model";
  net->eval();
  return net;
}

torch::Tensor fathom_logits(const fathom::config::ModelConfig& m, const NamedTensors& w, const torch::Tensor& ids) {
  auto net = build_model(m, w);
  torch::NoGradGuard ng;
  return net->forward(ids).to(torch::kFloat32);
}

struct Expected {
  torch::Tensor ids, logits;
  json info;
};
Expected expected(const std::string& family) {
  auto m = fathom::ckpt::load_tensors_map(fixture(family) + "/expected.safetensors");
  return {m.at("input_ids"), m.at("logits"), json::parse(read_file(fixture(family) + "/expected.json"))};
}

bool same_tensors(const NamedTensors& a, const NamedTensors& b, std::string* why) {
  std::map<std::string, torch::Tensor> mb(b.begin(), b.end());
  if (a.size() != b.size()) {
    *why = "count " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
    return false;
  }
  for (const auto& [n, t] : a) {
    auto it = mb.find(n);
    if (it == mb.end()) {
      *why = "missing " + n;
      return false;
    }
    if (t.scalar_type() != it->second.scalar_type() || !torch::equal(t, it->second)) {
      *why = "differs: " + n;
      return false;
    }
  }
  return true;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- import parity with transformers -----------------------------------------------------

class HfImport : public ::testing::TestWithParam<std::string> {};

TEST_P(HfImport, LogitsMatchTransformers) {
  const std::string family = GetParam();
  const auto info = fathom::ckpt::read_hf_model_dir(fixture(family));
  const NamedTensors w = fathom::ckpt::load_hf_weights(info);
  for (const auto& [n, t] : w) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << n;
  const Expected ex = expected(family);
  const torch::Tensor got = fathom_logits(info.model, w, ex.ids);
  ASSERT_EQ(got.sizes(), ex.logits.sizes());
  const double diff = (got - ex.logits).abs().max().item<double>();
  std::cout << "[parity] " << family << ": max |logits - transformers| = " << diff << " (|logits| up to "
            << ex.logits.abs().max().item<double>() << ")\n";
  EXPECT_LT(diff, 1e-4) << family;
}

INSTANTIATE_TEST_SUITE_P(Families, HfImport, ::testing::Values("llama", "qwen2", "deepseek_v3"));

TEST(HfImportConfig, FieldsFromConfigJson) {
  const auto llama = fathom::ckpt::read_hf_model_dir(fixture("llama"));
  EXPECT_EQ(llama.architecture, "LlamaForCausalLM");
  EXPECT_EQ(llama.model.family, "llama");
  EXPECT_EQ(llama.model.vocab_size, 401);
  EXPECT_EQ(llama.model.d_model, 64);
  EXPECT_EQ(llama.model.n_layers, 2);
  EXPECT_EQ(llama.model.n_heads, 4);
  EXPECT_EQ(llama.model.n_kv_heads, 2);
  EXPECT_EQ(llama.model.d_ff, 128);
  EXPECT_EQ(llama.model.max_seq_len, 128);
  EXPECT_DOUBLE_EQ(llama.model.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(llama.model.norm_eps, 1e-5);
  EXPECT_FALSE(llama.model.tie_embeddings);
  EXPECT_FALSE(llama.model.attention_bias);
  EXPECT_EQ(llama.model.attention, "mha");
  EXPECT_FALSE(llama.tokenizer_json.empty());
  EXPECT_EQ(llama.weight_files.size(), 1u);

  const auto qwen = fathom::ckpt::read_hf_model_dir(fixture("qwen2"));
  EXPECT_EQ(qwen.model.family, "qwen2");
  EXPECT_TRUE(qwen.model.tie_embeddings);
  EXPECT_DOUBLE_EQ(qwen.model.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(qwen.model.norm_eps, 1e-6);
  EXPECT_EQ(qwen.weight_files.size(), 3u) << "the qwen2 fixture is sharded";
  EXPECT_EQ(qwen.bos_token_id.value_or(-1), 1);
  EXPECT_EQ(qwen.eos_token_id.value_or(-1), 2);

  const auto ds = fathom::ckpt::read_hf_model_dir(fixture("deepseek_v3"));
  const auto& m = ds.model;
  EXPECT_EQ(m.family, "deepseek");
  EXPECT_EQ(m.attention, "mla");
  EXPECT_EQ(m.head_dim, 0) << "config.json's head_dim is qk_rope_head_dim for DeepSeek-V3, not the attention width";
  EXPECT_EQ(m.mla.kv_lora_rank, 32);
  EXPECT_EQ(m.mla.q_lora_rank, 32);
  EXPECT_EQ(m.mla.qk_rope_head_dim, 8);
  EXPECT_EQ(m.mla.qk_nope_head_dim, 16);
  EXPECT_EQ(m.mla.v_head_dim, 16);
  EXPECT_TRUE(m.mla.rope_interleave);
  EXPECT_EQ(m.moe.n_routed_experts, 8);
  EXPECT_EQ(m.moe.n_shared_experts, 1);
  EXPECT_EQ(m.moe.top_k, 2);
  EXPECT_EQ(m.moe.d_expert, 32);
  EXPECT_EQ(m.moe.first_k_dense, 1);
  EXPECT_EQ(m.moe.gate, "sigmoid");
  EXPECT_EQ(m.moe.balance, "bias_update");
  EXPECT_TRUE(m.moe.norm_topk_prob);
  EXPECT_DOUBLE_EQ(m.moe.routed_scaling_factor, 2.5);
  EXPECT_EQ(m.moe.n_group, 2);
  EXPECT_EQ(m.moe.topk_group, 1);
  EXPECT_EQ(m.d_ff, 128);
}

TEST(HfImportConfig, RunConfigYamlLoads) {
  for (const char* family : kFamilies) {
    const auto info = fathom::ckpt::read_hf_model_dir(fixture(family));
    const std::string yaml = fathom::ckpt::hf_run_config_yaml(info, "/nonexistent/step-0", info.tokenizer_json, "x");
    fathom::config::LoadOptions lo;
    lo.check_paths = false;
    const auto r = fathom::config::load_config_text(yaml, "imported.yaml", lo);
    ASSERT_TRUE(r.ok()) << family << ": " << (r.errors.empty() ? "" : r.errors[0].message()) << "\n" << yaml;
    const auto& m = r.config.model;
    EXPECT_EQ(m.family, info.model.family);
    EXPECT_EQ(m.vocab_size, info.model.vocab_size);
    EXPECT_EQ(m.n_kv_heads, info.model.n_kv_heads);
    EXPECT_EQ(m.d_ff, info.model.d_ff);
    EXPECT_EQ(m.tie_embeddings, info.model.tie_embeddings);
    EXPECT_EQ(m.init_from, "/nonexistent/step-0");
    EXPECT_EQ(m.mla.rope_interleave, info.model.mla.rope_interleave);
    EXPECT_EQ(m.moe.n_group, info.model.moe.n_group);
    EXPECT_DOUBLE_EQ(m.rope_theta, info.model.rope_theta);
    EXPECT_DOUBLE_EQ(m.norm_eps, info.model.norm_eps);
    if (!info.tokenizer_json.empty()) {
      EXPECT_EQ(r.config.tokenizer.kind, "hf");
      EXPECT_EQ(r.config.tokenizer.path, info.tokenizer_json);
    }
  }
}

// transformers 5 holds routed experts fused (gate_up_proj (E, 2I, C), down_proj (E, C, I)); its
// save_pretrained writes them per expert, but a fused file must import to the same tensors.
TEST(HfImportWeights, FusedExpertsEqualPerExpert) {
  TempDir tmp;
  const std::string dir = tmp.path + "/fused";
  copy_dir(fixture("deepseek_v3"), dir);
  auto per = fathom::ckpt::load_tensors_map(fixture("deepseek_v3") + "/model.safetensors");
  NamedTensors fused;
  const int64_t E = 8;
  std::vector<torch::Tensor> gu, dn;
  for (int64_t e = 0; e < E; ++e) {
    const std::string p = "model.layers.1.mlp.experts." + std::to_string(e) + ".";
    gu.push_back(torch::cat({per.at(p + "gate_proj.weight"), per.at(p + "up_proj.weight")}, 0));
    dn.push_back(per.at(p + "down_proj.weight"));
    per.erase(p + "gate_proj.weight");
    per.erase(p + "up_proj.weight");
    per.erase(p + "down_proj.weight");
  }
  for (auto& [n, t] : per) fused.emplace_back(n, t);
  fused.emplace_back("model.layers.1.mlp.experts.gate_up_proj", torch::stack(gu));
  fused.emplace_back("model.layers.1.mlp.experts.down_proj", torch::stack(dn));
  fathom::ckpt::save_tensors(dir + "/model.safetensors", fused, {{"format", "pt"}});
  const auto a = fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(fixture("deepseek_v3")));
  const auto b = fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(dir));
  std::string why;
  EXPECT_TRUE(same_tensors(a, b, &why)) << why;
}

TEST(HfImportWeights, Bf16WeightsBecomeFp32) {
  TempDir tmp;
  const std::string dir = tmp.path + "/bf16";
  copy_dir(fixture("llama"), dir);
  NamedTensors w = fathom::ckpt::load_tensors(fixture("llama") + "/model.safetensors");
  for (auto& [n, t] : w) t = t.to(torch::kBFloat16);
  fathom::ckpt::save_tensors(dir + "/model.safetensors", w, {{"format", "pt"}});
  const auto got = fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(dir));
  std::map<std::string, torch::Tensor> src(w.begin(), w.end());
  for (const auto& [n, t] : got) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat32) << n;
    EXPECT_TRUE(torch::equal(t, src.at(n).to(torch::kFloat32))) << n;
  }
}

// ---- bad inputs ----------------------------------------------------------------------------

TEST(HfImportErrors, ClearMessages) {
  TempDir tmp;
  // No config.json.
  fs::create_directories(tmp.path + "/empty");
  std::string e = error_of([&] { fathom::ckpt::read_hf_model_dir(tmp.path + "/empty"); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  e = error_of([&] { fathom::ckpt::read_hf_model_dir(tmp.path + "/nope"); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;

  auto with_config = [&](const std::string& name, const std::function<void(json&)>& edit) {
    const std::string dir = tmp.path + "/" + name;
    copy_dir(fixture("llama"), dir);
    json j = json::parse(read_file(dir + "/config.json"));
    edit(j);
    write_file(dir + "/config.json", j.dump(2));
    return error_of([&] { fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(dir)); });
  };
  // Unsupported architecture: named, with what is supported.
  e = with_config("gpt2", [](json& j) { j["architectures"] = {"GPT2LMHeadModel"}; j["model_type"] = "gpt2"; });
  EXPECT_NE(e.find("GPT2LMHeadModel"), std::string::npos) << e;
  EXPECT_NE(e.find("LlamaForCausalLM"), std::string::npos) << e;
  EXPECT_NE(e.find("DeepseekV3ForCausalLM"), std::string::npos) << e;
  // RoPE scaling the engine cannot reproduce: named.
  e = with_config("rope", [](json& j) {
    j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0}};
  });
  EXPECT_NE(e.find("llama3"), std::string::npos) << e;
  e = with_config("rope4", [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; });
  EXPECT_NE(e.find("linear"), std::string::npos) << e;
  e = with_config("mlpbias", [](json& j) { j["mlp_bias"] = true; });
  EXPECT_NE(e.find("mlp_bias"), std::string::npos) << e;
  e = with_config("act", [](json& j) { j["hidden_act"] = "gelu"; });
  EXPECT_NE(e.find("gelu"), std::string::npos) << e;
  e = with_config("fp8", [](json& j) { j["quantization_config"] = {{"quant_method", "fp8"}}; });
  EXPECT_NE(e.find("quantiz"), std::string::npos) << e;
  // Weights that do not match the config.
  e = with_config("shape", [](json& j) { j["intermediate_size"] = 96; });
  EXPECT_NE(e.find("mlp.gate_proj.weight"), std::string::npos) << e;

  // Qwen2 with sliding windows in use.
  {
    const std::string dir = tmp.path + "/sliding";
    copy_dir(fixture("qwen2"), dir);
    json j = json::parse(read_file(dir + "/config.json"));
    j["use_sliding_window"] = true;
    j["sliding_window"] = 32;
    write_file(dir + "/config.json", j.dump(2));
    e = error_of([&] { fathom::ckpt::read_hf_model_dir(dir); });
    EXPECT_NE(e.find("sliding"), std::string::npos) << e;
  }
  // A truncated shard: the file is named.
  {
    const std::string dir = tmp.path + "/truncated";
    copy_dir(fixture("qwen2"), dir);
    const std::string shard = dir + "/model-00002-of-00003.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 100);
    e = error_of([&] { fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(dir)); });
    EXPECT_NE(e.find("model-00002-of-00003.safetensors"), std::string::npos) << e;
  }
  // An index naming a shard that is not there: both named.
  {
    const std::string dir = tmp.path + "/missing_shard";
    copy_dir(fixture("qwen2"), dir);
    fs::remove(dir + "/model-00003-of-00003.safetensors");
    e = error_of([&] { fathom::ckpt::read_hf_model_dir(dir); });
    EXPECT_NE(e.find("model-00003-of-00003.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("model.safetensors.index.json"), std::string::npos) << e;
  }
  // Pytorch .bin only.
  {
    const std::string dir = tmp.path + "/bin";
    fs::create_directories(dir);
    fs::copy_file(fixture("llama") + "/config.json", dir + "/config.json");
    write_file(dir + "/pytorch_model.bin", "x");
    e = error_of([&] { fathom::ckpt::read_hf_model_dir(dir); });
    EXPECT_NE(e.find("safetensors"), std::string::npos) << e;
  }
}

// ---- export and round trip ------------------------------------------------------------------

class HfRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(HfRoundTrip, ExportReimportIsBitIdentical) {
  const std::string family = GetParam();
  TempDir tmp;
  fathom::ckpt::HfImportOptions io;
  io.hf_dir = fixture(family);
  io.run_dir = tmp.path + "/run";
  const std::string ck = fathom::ckpt::import_hf_to_run(io);
  EXPECT_TRUE(fs::exists(tmp.path + "/run/config.yaml"));
  EXPECT_TRUE(fathom::ckpt::CheckpointManager::verify(ck).verified);

  const auto info = fathom::ckpt::read_hf_model_dir(fixture(family));
  const NamedTensors original = fathom::ckpt::load_hf_weights(info);
  // init_from reads the imported checkpoint, the run dir and the HF dir alike.
  std::string why;
  EXPECT_TRUE(same_tensors(original, fathom::ckpt::load_pretrained_weights(ck), &why)) << why;
  EXPECT_TRUE(same_tensors(original, fathom::ckpt::load_pretrained_weights(tmp.path + "/run"), &why)) << why;
  EXPECT_TRUE(same_tensors(original, fathom::ckpt::load_pretrained_weights(fixture(family)), &why)) << why;

  for (const uint64_t shard : {uint64_t{0}, uint64_t{100000}}) {
    fathom::ckpt::HfExportOptions eo;
    eo.checkpoint_dir = ck;
    eo.out_dir = tmp.path + "/hf" + std::to_string(shard);
    eo.max_shard_bytes = shard;
    const auto res = fathom::ckpt::export_checkpoint_to_hf(eo);
    EXPECT_EQ(fs::exists(eo.out_dir + "/model.safetensors.index.json"), shard > 0);
    EXPECT_EQ(fs::exists(eo.out_dir + "/model.safetensors"), shard == 0);
    EXPECT_TRUE(fs::exists(eo.out_dir + "/generation_config.json"));
    EXPECT_EQ(fs::exists(eo.out_dir + "/tokenizer.json"), !info.tokenizer_json.empty());
    for (const auto& e : fs::directory_iterator(tmp.path))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();

    const auto back_info = fathom::ckpt::read_hf_model_dir(eo.out_dir);
    const NamedTensors back = fathom::ckpt::load_hf_weights(back_info);
    EXPECT_TRUE(same_tensors(original, back, &why)) << family << " shard " << shard << ": " << why;
    const Expected ex = expected(family);
    const torch::Tensor a = fathom_logits(info.model, original, ex.ids);
    const torch::Tensor b = fathom_logits(back_info.model, back, ex.ids);
    EXPECT_TRUE(torch::equal(a, b)) << family;

    // config.json: what transformers needs.
    const json c = json::parse(read_file(eo.out_dir + "/config.json"));
    const json src = json::parse(read_file(fixture(family) + "/config.json"));
    EXPECT_EQ(c["architectures"], src["architectures"]);
    EXPECT_EQ(c["model_type"], src["model_type"]);
    EXPECT_EQ(c["dtype"], "float32");
    EXPECT_EQ(c["torch_dtype"], "float32");
    for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
                          "hidden_act"})
      EXPECT_EQ(c[k], src[k]) << family << " " << k;
    EXPECT_EQ(c["rope_parameters"]["rope_theta"], src["rope_parameters"]["rope_theta"]);
    EXPECT_EQ(c["rope_parameters"]["rope_type"], "default");
    if (family == "deepseek_v3") {
      for (const char* k : {"kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
                            "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size",
                            "first_k_dense_replace", "norm_topk_prob", "routed_scaling_factor", "n_group", "topk_group",
                            "rope_interleave", "head_dim"})
        EXPECT_EQ(c[k], src[k]) << k;
    }
    if (family == "llama") {
      EXPECT_EQ(c["eos_token_id"], 399) << "the tokenizer's <|endoftext|>";
      const json tc = json::parse(read_file(eo.out_dir + "/tokenizer_config.json"));
      EXPECT_EQ(tc["eos_token"], "<|endoftext|>");
      EXPECT_FALSE(json::parse(read_file(eo.out_dir + "/tokenizer.json")).contains("fathom"))
          << "HF tokenizers refuses unknown top-level keys";
    }
    if (shard > 0) {
      const json idx = json::parse(read_file(eo.out_dir + "/model.safetensors.index.json"));
      EXPECT_EQ(idx["weight_map"].size(), original.size() + (info.model.tie_embeddings ? 0 : 0));
      EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), res.bytes);
      EXPECT_GT(back_info.weight_files.size(), 1u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, HfRoundTrip, ::testing::Values("llama", "qwen2", "deepseek_v3"));

TEST(HfExport, Bf16AndOverwriteRules) {
  TempDir tmp;
  fathom::ckpt::HfImportOptions io;
  io.hf_dir = fixture("deepseek_v3");
  io.run_dir = tmp.path + "/run";
  const std::string ck = fathom::ckpt::import_hf_to_run(io);
  fathom::ckpt::HfExportOptions eo;
  eo.checkpoint_dir = tmp.path + "/run";  // a run directory means its latest checkpoint
  eo.out_dir = tmp.path + "/bf16";
  eo.dtype = "bf16";
  fathom::ckpt::export_checkpoint_to_hf(eo);
  const json c = json::parse(read_file(eo.out_dir + "/config.json"));
  EXPECT_EQ(c["dtype"], "bfloat16");
  fathom::ckpt::SafetensorsFile f(eo.out_dir + "/model.safetensors");
  for (const auto& t : f.tensors()) {
    const bool bias = t.name.find("e_score_correction_bias") != std::string::npos;
    EXPECT_EQ(t.dtype, bias ? fathom::ckpt::DType::DTYPE_F32 : fathom::ckpt::DType::DTYPE_BF16) << t.name;
  }
  // Re-import converts back to fp32 (bf16 values exactly).
  const auto back = fathom::ckpt::load_hf_weights(fathom::ckpt::read_hf_model_dir(eo.out_dir));
  const auto orig = fathom::ckpt::load_pretrained_weights(ck);
  std::map<std::string, torch::Tensor> o(orig.begin(), orig.end());
  for (const auto& [n, t] : back) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat32);
    const bool bias = n.find("e_score_correction_bias") != std::string::npos;
    EXPECT_TRUE(torch::equal(t, bias ? o.at(n) : o.at(n).to(torch::kBFloat16).to(torch::kFloat32))) << n;
  }
  // An existing non-empty output is refused, then replaced with overwrite.
  eo.dtype = "fp32";
  const std::string e = error_of([&] { fathom::ckpt::export_checkpoint_to_hf(eo); });
  EXPECT_NE(e.find("--overwrite"), std::string::npos) << e;
  eo.overwrite = true;
  fathom::ckpt::export_checkpoint_to_hf(eo);
  EXPECT_EQ(json::parse(read_file(eo.out_dir + "/config.json"))["dtype"], "float32");
  // What a killed convert left (its pid gone) is cleaned up by the next one into the same place.
  fs::create_directories(tmp.path + "/again.tmp-999999999/x");
  eo.out_dir = tmp.path + "/again";
  fathom::ckpt::export_checkpoint_to_hf(eo);
  EXPECT_FALSE(fs::exists(tmp.path + "/again.tmp-999999999"));
  EXPECT_TRUE(fs::exists(tmp.path + "/again/config.json"));
  // No run config where expected.
  fathom::ckpt::HfExportOptions lost;
  lost.checkpoint_dir = tmp.path + "/elsewhere";
  fs::create_directories(lost.checkpoint_dir);
  fs::copy(ck, lost.checkpoint_dir + "/step-0");
  lost.checkpoint_dir += "/step-0";
  lost.out_dir = tmp.path + "/lost";
  const std::string e2 = error_of([&] { fathom::ckpt::export_checkpoint_to_hf(lost); });
  EXPECT_NE(e2.find("--config"), std::string::npos) << e2;
  lost.run_config = tmp.path + "/run/config.yaml";
  EXPECT_NO_THROW(fathom::ckpt::export_checkpoint_to_hf(lost));
}

TEST(HfExport, ParseByteSize) {
  EXPECT_EQ(fathom::ckpt::parse_byte_size("2GB"), 2000000000u);
  EXPECT_EQ(fathom::ckpt::parse_byte_size("500MB"), 500000000u);
  EXPECT_EQ(fathom::ckpt::parse_byte_size("1GiB"), 1073741824u);
  EXPECT_EQ(fathom::ckpt::parse_byte_size("123"), 123u);
  EXPECT_THROW(fathom::ckpt::parse_byte_size("2 parsecs"), HfError);
  EXPECT_THROW(fathom::ckpt::parse_byte_size("GB"), HfError);
}

// ---- CLI end to end -----------------------------------------------------------------------

double first_step_loss(const std::string& events) {
  for (const auto& r : fathom::testing::records_of(fathom::testing::read_records(events), "metric"))
    if (r["data"].value("step", 0) == 1) return r["data"].value("loss", -1.0);
  return -1.0;
}

TEST(HfCli, ConvertImportThenTrainThenExport) {
  using fathom::testing::run_engine;
  TempDir tmp;
  const std::string d = tmp.path;
  // HF -> Fathom run directory.
  int rc = run_engine({"convert", fixture("llama"), "--to", "fathom", "--out", d + "/run", "--json"}, d);
  ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
  EXPECT_NE(read_file(d + "/stderr.txt").find("convert: "), std::string::npos);
  const json out = json::parse(read_file(d + "/stdout.txt"));
  EXPECT_EQ(out["checkpoint"], fs::canonical(d).string() + "/run/checkpoints/step-0");
  ASSERT_TRUE(fs::exists(d + "/run/checkpoints/step-0/MANIFEST.json"));
  ASSERT_TRUE(fs::exists(d + "/run/tokenizer.json"));

  // Three steps of training from the imported weights, on the corpus the model was trained on:
  // the first loss is the imported model's (about 2.15), far below a random init's ln(401) = 6.0.
  rc = run_engine({"train", d + "/run/config.yaml", "--run-dir", d + "/ft", "--set",
                   "data.train=[" + std::string(FATHOM_FIXTURES_DIR) + "/corpus]", "--set", "data.seq_len=64", "--set",
                   "data.shards_dir=" + d + "/data", "--set", "run.workspace=" + d + "/ws", "--set", "run.device=cpu",
                   "--set", "train.max_steps=3", "--set", "train.micro_batch_size=4", "--set", "train.log_interval=1",
                   "--set", "train.eval_interval=0", "--set", "optimizer.warmup_steps=1", "--set", "optimizer.lr=1e-4",
                   "--set", "checkpoint.save_every_steps=3", "--set", "checkpoint.async=false"},
                  d, 300);
  ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
  const double loss = first_step_loss(d + "/ft/events.jsonl");
  const Expected ex = expected("llama");
  const double corpus_loss = ex.info["corpus_loss"].get<double>(), ln_v = std::log(401.0);
  std::cout << "[finetune] first-step loss " << loss << ", imported model's corpus loss " << corpus_loss << ", ln V "
            << ln_v << "\n";
  EXPECT_GT(loss, 0.0);
  EXPECT_LT(loss, 0.6 * ln_v) << "the imported weights were not used";
  EXPECT_NEAR(loss, corpus_loss, 0.75);

  // model.init_from may name the Hugging Face directory itself.
  rc = run_engine({"train", d + "/run/config.yaml", "--run-dir", d + "/ft2", "--set", "model.init_from=" + fixture("llama"),
                   "--set", "data.train=[" + std::string(FATHOM_FIXTURES_DIR) + "/corpus]", "--set", "data.seq_len=64",
                   "--set", "data.shards_dir=" + d + "/data", "--set", "run.workspace=" + d + "/ws", "--set",
                   "run.device=cpu", "--set", "train.max_steps=1", "--set", "train.micro_batch_size=4", "--set",
                   "train.log_interval=1", "--set", "train.eval_interval=0", "--set", "optimizer.warmup_steps=1",
                   "--set", "optimizer.lr=1e-4", "--set", "checkpoint.save_every_steps=0", "--set",
                   "checkpoint.save_interval=0"},
                  d, 300);
  ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
  EXPECT_DOUBLE_EQ(first_step_loss(d + "/ft2/events.jsonl"), loss) << "same weights, data and seed as the converted run";

  // The fine-tuned checkpoint exports (its run's config.yaml is found two levels up).
  rc = run_engine({"convert", d + "/ft/checkpoints/step-3", "--to", "hf", "--out", d + "/hf", "--dtype", "bf16",
                   "--max-shard-size", "200KB"},
                  d);
  ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
  EXPECT_TRUE(fs::exists(d + "/hf/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(d + "/hf/tokenizer.json"));
  EXPECT_EQ(json::parse(read_file(d + "/hf/config.json"))["torch_dtype"], "bfloat16");

  // Failures: non-zero and a clear message.
  rc = run_engine({"convert", d + "/missing", "--to", "hf", "--out", d + "/x"}, d);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(read_file(d + "/stderr.txt").find("does not exist"), std::string::npos);
  rc = run_engine({"convert", fixture("llama"), "--to", "fathom", "--out", d + "/run"}, d);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(read_file(d + "/stderr.txt").find("not an empty directory"), std::string::npos);
  rc = run_engine({"convert", fixture("llama"), "--to", "onnx", "--out", d + "/y"}, d);
  EXPECT_NE(rc, 0);
}

// The fixture with its vocabulary padded to `vocab` rows (embedding and head), in one file.
std::string padded_vocab_copy(const std::string& family, int64_t vocab, const std::string& dir) {
  fs::create_directories(dir);
  json c = json::parse(read_file(fixture(family) + "/config.json"));
  c["vocab_size"] = vocab;
  write_file(dir + "/config.json", c.dump(2));
  NamedTensors all;
  for (const auto& e : fs::directory_iterator(fixture(family))) {
    const std::string n = e.path().filename().string();
    if (n.rfind("model", 0) != 0 || e.path().extension() != ".safetensors") continue;
    for (auto& [k, t] : fathom::ckpt::load_tensors(e.path().string())) {
      if (k == "model.embed_tokens.weight" || k == "lm_head.weight")
        t = torch::cat({t, 0.02 * torch::randn({vocab - t.size(0), t.size(1)})}, 0);
      all.emplace_back(k, t);
    }
  }
  fathom::ckpt::save_tensors(dir + "/model.safetensors", all, {{"format", "pt"}});
  return dir;
}

// Qwen2 (tied head, q/k/v biases) and DeepSeek-V3 (MLA + MoE, routing biases as buffers) imports
// train too. They come without a tokenizer, so the placeholder byte-level bpe of the model's
// vocabulary size is trained on the corpus; a byte-level bpe needs 257 tokens (256 bytes + eos)
// and the fixtures have 256, hence the padded copies.
TEST(HfCli, ImportedQwen2AndDeepseekTrain) {
  using fathom::testing::run_engine;
  for (const std::string family : {"qwen2", "deepseek_v3"}) {
    TempDir tmp;
    const std::string d = tmp.path;
    const std::string src = padded_vocab_copy(family, 320, d + "/" + family);
    int rc = run_engine({"convert", src, "--to", "fathom", "--out", d + "/run"}, d);
    ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
    EXPECT_NE(read_file(d + "/stderr.txt").find("no tokenizer.json"), std::string::npos);
    rc = run_engine({"train", d + "/run/config.yaml", "--run-dir", d + "/ft", "--set",
                     "data.train=[" + std::string(FATHOM_FIXTURES_DIR) + "/corpus]", "--set", "data.seq_len=32", "--set",
                     "data.shards_dir=" + d + "/data", "--set", "run.workspace=" + d + "/ws", "--set", "run.device=cpu",
                     "--set", "train.max_steps=2", "--set", "train.micro_batch_size=2", "--set", "train.log_interval=1",
                     "--set", "train.eval_interval=0", "--set", "optimizer.warmup_steps=1", "--set",
                     "checkpoint.save_every_steps=2", "--set", "checkpoint.async=false"},
                    d, 300);
    ASSERT_EQ(rc, 0) << family << "\n" << read_file(d + "/stderr.txt");
    const auto recs = fathom::testing::read_records(d + "/ft/events.jsonl");
    EXPECT_FALSE(fathom::testing::records_of(recs, "event", "initialized").empty()) << family;
    EXPECT_GT(first_step_loss(d + "/ft/events.jsonl"), 0.0) << family;
    // And the fine-tuned checkpoint exports again.
    rc = run_engine({"convert", d + "/ft/checkpoints/step-2", "--to", "hf", "--out", d + "/hf"}, d);
    ASSERT_EQ(rc, 0) << read_file(d + "/stderr.txt");
    const auto back = fathom::ckpt::read_hf_model_dir(d + "/hf");
    EXPECT_EQ(back.architecture, json::parse(read_file(fixture(family) + "/config.json"))["architectures"][0]);
    EXPECT_NO_THROW(fathom::ckpt::load_hf_weights(back));
  }
}

// ---- material for the transformers parity check (tools/hf/check_export.py) ----------------

TEST(HfParity, ExportForTransformersParity) {
  const char* out = std::getenv("FATHOM_HF_PARITY_OUT");
  if (!out) GTEST_SKIP() << "set FATHOM_HF_PARITY_OUT=DIR to write exports for tools/hf/check_export.py";
  const std::string sample = "Fellow-Citizens of the Senate and House of Representatives: the state of the Union, 1862.";
  for (const std::string family : {"llama", "qwen2", "deepseek_v3"}) {
    TempDir tmp;
    fathom::ckpt::HfImportOptions io;
    io.hf_dir = fixture(family);
    io.run_dir = tmp.path + "/run";
    const std::string ck = fathom::ckpt::import_hf_to_run(io);
    if (family == "llama") {
      // Export Fathom's own bpe tokenizer (trained_bpe_400.json, the same 400 tokens), which goes
      // through Tokenizer::save rather than a copy.
      std::string yaml = read_file(tmp.path + "/run/config.yaml");
      const auto at = yaml.find("tokenizer:\n");
      ASSERT_NE(at, std::string::npos);
      const auto end = yaml.find("data:\n", at);
      yaml = yaml.substr(0, at) + "tokenizer:\n  kind: bpe\n  path: \"" + std::string(FATHOM_FIXTURES_DIR) +
             "/tokenizer/trained_bpe_400.json\"\n  vocab_size: 400\n" + yaml.substr(end);
      write_file(tmp.path + "/run/config.yaml", yaml);
    }
    // Perturb the weights as a fine-tune would, so the export is not just the fixture back.
    NamedTensors w = fathom::ckpt::load_pretrained_weights(ck);
    torch::manual_seed(5);
    for (auto& [n, t] : w) t = t + 0.01 * torch::randn_like(t);
    fathom::ckpt::CheckpointPolicy pol;
    pol.save_dir = tmp.path + "/run/checkpoints";
    pol.async = false;
    pol.save_every_steps = 0;
    pol.save_interval_s = 0;
    pol.keep_n_latest = 0;
    {
      fathom::ckpt::CheckpointManager mgr(pol);
      fathom::ckpt::CheckpointPayload p;
      p.step = 1;
      p.model = w;
      mgr.save(std::move(p));
    }
    const auto info = fathom::ckpt::read_hf_model_dir(fixture(family));
    const Expected ex = expected(family);
    for (const std::string dtype : {"fp32", "bf16"}) {
      const std::string dst = std::string(out) + "/" + family + (dtype == "fp32" ? "" : "_bf16");
      fathom::ckpt::HfExportOptions eo;
      eo.checkpoint_dir = tmp.path + "/run/checkpoints/step-1";
      eo.out_dir = dst;
      eo.overwrite = true;
      eo.dtype = dtype;
      eo.max_shard_bytes = family == "deepseek_v3" ? 200000 : 0;
      fathom::ckpt::export_checkpoint_to_hf(eo);
      // What Fathom computes from exactly the weights in the export (bf16-rounded for bf16).
      NamedTensors wd = w;
      if (dtype == "bf16")
        for (auto& [n, t] : wd)
          if (n.find("e_score_correction_bias") == std::string::npos) t = t.to(torch::kBFloat16).to(torch::kFloat32);
      const torch::Tensor logits = fathom_logits(info.model, wd, ex.ids);
      fathom::ckpt::save_tensors(dst + "/fathom_logits.safetensors",
                                 {{"input_ids", ex.ids}, {"logits", logits.contiguous()}});
      if (fs::exists(dst + "/tokenizer.json")) {
        const auto tk = fathom::tok::Tokenizer::load(dst + "/tokenizer.json");
        json t = {{"text", sample}, {"ids", tk.encode(sample)}};
        write_file(dst + "/fathom_tokens.json", t.dump());
      }
      std::cout << "wrote " << dst << "\n";
    }
  }
}

}  // namespace
