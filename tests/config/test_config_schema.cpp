// The schema table: every key bound to the right field type, defaults equal to RunConfig{},
// groups contiguous (the YAML emitter relies on it), docs generated from it and committed.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/config/config.h"
#include "engine/config/schema.h"

using namespace fathom::config;

TEST(ConfigSchema, EveryKeyIsBoundToAFieldOfItsType) {
  RunConfig c;
  std::set<std::string> seen;
  for (const auto& k : schema_keys()) {
    SCOPED_TRACE(k.path);
    EXPECT_TRUE(seen.insert(k.path).second) << "duplicate key";
    ASSERT_NE(k.field, nullptr);
    const FieldPtr p = k.field(c);
    switch (k.type) {
      case KeyType::Bool: EXPECT_TRUE(std::holds_alternative<bool*>(p)); break;
      case KeyType::Int: EXPECT_TRUE(std::holds_alternative<int64_t*>(p)); break;
      case KeyType::Float: EXPECT_TRUE(std::holds_alternative<double*>(p)); break;
      case KeyType::String:
      case KeyType::Enum: EXPECT_TRUE(std::holds_alternative<std::string*>(p)); break;
      case KeyType::StringList: EXPECT_TRUE(std::holds_alternative<std::vector<std::string>*>(p)); break;
      case KeyType::IntList: EXPECT_TRUE(std::holds_alternative<std::vector<int64_t>*>(p)); break;
    }
    EXPECT_FALSE(k.description.empty());
    EXPECT_NE(find_section(k.section()), nullptr);
    if (k.type == KeyType::Enum) {
      EXPECT_FALSE(k.choices.empty());
      const auto& d = std::get<std::string>(k.default_value);
      EXPECT_NE(std::find(k.choices.begin(), k.choices.end(), d), k.choices.end()) << "default is not a choice";
    }
    if (k.type == KeyType::Int) {
      const double d = static_cast<double>(std::get<int64_t>(k.default_value));
      if (k.min) { EXPECT_GE(d, *k.min); }
      if (k.max) { EXPECT_LE(d, *k.max); }
    }
  }
  EXPECT_GE(schema_keys().size(), 100u);
}

TEST(ConfigSchema, KeyNamesOtherEngineersCodeAgainst) {
  for (const char* path :
       {"run.name", "run.seed", "run.workspace", "run.device", "run.threads", "model.family", "model.vocab_size",
        "model.d_model", "model.n_layers", "model.n_heads", "model.n_kv_heads", "model.d_ff", "model.multiple_of",
        "model.max_seq_len", "model.rope_theta", "model.norm_eps", "model.tie_embeddings", "model.init_std",
        "model.attention", "model.activation_checkpointing", "model.activation_sharding.enabled",
        "model.activation_sharding.num_shards", "model.moe.n_routed_experts", "model.moe.n_shared_experts",
        "model.moe.top_k", "model.moe.d_expert", "model.moe.first_k_dense", "model.moe.gate", "model.moe.balance",
        "model.moe.aux_loss_coef", "model.moe.bias_update_rate", "model.moe.capacity_factor", "model.mla.kv_lora_rank",
        "model.mla.q_lora_rank", "model.mla.qk_rope_head_dim", "model.mla.qk_nope_head_dim", "model.mla.v_head_dim",
        "tokenizer.kind", "tokenizer.path", "tokenizer.vocab_size", "tokenizer.train_bytes", "data.train", "data.format",
        "data.text_field", "data.validation_fraction", "data.shards_dir", "data.seq_len", "train.micro_batch_size",
        "train.gradient_accumulation_steps", "train.max_steps", "train.precision", "train.fp16_enabled", "train.grad_clip",
        "train.log_interval", "train.eval_interval", "train.eval_batches", "train.sample_interval", "train.sample_prompt",
        "train.sample_tokens", "train.max_nan_skips", "optimizer.name", "optimizer.lr", "optimizer.min_lr",
        "optimizer.weight_decay", "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.schedule",
        "optimizer.warmup_steps", "optimizer.zero.stage", "lora.enabled", "lora.r", "lora.lora_alpha",
        "lora.target_modules", "lora.dropout", "lora.use_rslora", "lora.base", "lora.quantize_base",
        "checkpoint.save_dir", "checkpoint.save_interval", "checkpoint.save_every_steps", "checkpoint.keep_n_latest",
        "checkpoint.keep_best", "checkpoint.async", "distributed.backend", "distributed.init_method",
        "distributed.world_size", "distributed.rank", "distributed.gpu_ids", "distributed.timeout_s",
        "telemetry.system_interval_s", "telemetry.prometheus_port", "telemetry.prometheus_bind", "serve.host",
        "serve.port", "serve.max_batch_size", "serve.max_kv_tokens", "serve.quantize", "serve.api_key_env",
        "serve.default_max_tokens"})
    EXPECT_NE(find_key(path), nullptr) << path;
}

TEST(ConfigSchema, DefaultsAreTheStructInitialisers) {
  const RunConfig c;
  EXPECT_EQ(std::get<int64_t>(find_key("run.seed")->default_value), 1337);
  EXPECT_EQ(std::get<std::string>(find_key("run.device")->default_value), "auto");
  EXPECT_EQ(std::get<int64_t>(find_key("checkpoint.save_interval")->default_value), 3600);
  EXPECT_EQ(std::get<std::vector<std::string>>(find_key("lora.target_modules")->default_value),
            (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(std::get<std::vector<int64_t>>(find_key("distributed.gpu_ids")->default_value), (std::vector<int64_t>{0}));
  for (const auto& k : schema_keys()) EXPECT_EQ(get_value(c, k), k.default_value) << k.path;
  RunConfig d;
  set_value(d, *find_key("model.moe.top_k"), Value{int64_t{6}});
  EXPECT_EQ(d.model.moe.top_k, 6);
}

TEST(ConfigSchema, GroupsAreContiguousForTheEmitter) {
  std::vector<std::string> order;
  for (const auto& k : schema_keys()) {
    const std::string parent = k.path.substr(0, k.path.rfind('.'));
    if (order.empty() || order.back() != parent) {
      EXPECT_EQ(std::find(order.begin(), order.end(), parent), order.end()) << parent << " is split";
      order.push_back(parent);
    }
  }
  EXPECT_EQ(schema_children(""), (std::vector<std::string>{"run", "model", "tokenizer", "data", "train", "optimizer", "lora",
                                                           "checkpoint", "distributed", "telemetry", "serve"}));
  const auto moe = schema_children("model.moe");
  EXPECT_EQ(moe.front(), "n_routed_experts");
}

TEST(ConfigSchema, FormatDoubleRoundTrips) {
  for (double v : {3e-4, 1e-5, 0.1, 500000.0, 1.0, 0.95, 1e-8, 6e-4, 123456.789})
    EXPECT_EQ(std::strtod(format_double(v).c_str(), nullptr), v) << format_double(v);
  EXPECT_EQ(format_double(1.0), "1.0");
  EXPECT_EQ(format_double(3e-4), "0.0003");
  EXPECT_EQ(format_double(500000.0), "500000.0");
  EXPECT_EQ(format_double(1e-5), "1e-05");
}

TEST(ConfigSchema, JsonSchemaIsDraft07WithEveryKey) {
  const auto j = nlohmann::json::parse(schema_json_schema());
  EXPECT_EQ(j["$schema"], "http://json-schema.org/draft-07/schema#");
  EXPECT_EQ(j["additionalProperties"], false);
  const auto& mbs = j["properties"]["train"]["properties"]["micro_batch_size"];
  EXPECT_EQ(mbs["type"], "integer");
  EXPECT_EQ(mbs["default"], 8);
  EXPECT_EQ(mbs["minimum"], 1);
  const auto& device = j["properties"]["run"]["properties"]["device"];
  EXPECT_EQ(device["enum"], nlohmann::json::array({"auto", "cpu", "cuda"}));
  EXPECT_EQ(j["properties"]["optimizer"]["properties"]["beta2"]["exclusiveMaximum"], 1.0);
  EXPECT_EQ(j["properties"]["model"]["properties"]["moe"]["properties"]["top_k"]["type"], "integer");
  size_t leaves = 0;
  for (const auto& k : schema_keys()) {
    const nlohmann::json* node = &j;
    std::stringstream ss(k.path);
    for (std::string part; std::getline(ss, part, '.');) node = &(*node)["properties"][part];
    EXPECT_TRUE(node->contains("description")) << k.path;
    ++leaves;
  }
  EXPECT_EQ(leaves, schema_keys().size());
}

TEST(ConfigSchema, MarkdownListsEveryKeyAndDocsAreUpToDate) {
  const std::string md = schema_markdown();
  for (const auto& k : schema_keys()) EXPECT_NE(md.find("| `" + k.path + "` |"), std::string::npos) << k.path;
  EXPECT_NE(md.find("## Cross-key rules"), std::string::npos);
  std::ifstream in(std::string(FATHOM_SOURCE_DIR) + "/docs/config-reference.md");
  ASSERT_TRUE(in) << "docs/config-reference.md is missing: fathom-engine config --schema --markdown > docs/config-reference.md";
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_EQ(committed.str(), md) << "docs/config-reference.md is stale: regenerate it with "
                                    "fathom-engine config --schema --markdown > docs/config-reference.md";
}
