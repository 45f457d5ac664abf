// Loading and validation: presets, broken fixtures with their exact errors (file:line:col, key),
// extends chains, --set overrides, path expansion, round trips and the config hash.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/config/config.h"
#include "engine/config/schema.h"

using namespace fathom::config;

namespace {

const std::string kDir = std::string(FATHOM_FIXTURES_DIR) + "/configs/";

struct Expected {
  std::string file;  // relative to tests/fixtures/configs, or "--set" / "preset:..." / "<...>" verbatim
  int line, column;
  std::string key;
  std::string rule_part;  // a piece of the rule text
};

std::string file_of(const std::string& f) {
  if (f.rfind("--", 0) == 0 || f.rfind("preset:", 0) == 0 || f.rfind("<", 0) == 0) return f;
  return kDir + f;
}

std::string dump(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) out += "  " + e.message() + "\n";
  return out;
}

void expect_problems(const std::vector<ConfigError>& got, const std::vector<Expected>& want) {
  ASSERT_EQ(got.size(), want.size()) << dump(got);
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("problem #" + std::to_string(i) + ": " + got[i].message());
    EXPECT_EQ(got[i].file, file_of(want[i].file));
    EXPECT_EQ(got[i].line, want[i].line);
    EXPECT_EQ(got[i].column, want[i].column);
    EXPECT_EQ(got[i].key_path, want[i].key);
    EXPECT_NE(got[i].rule.find(want[i].rule_part), std::string::npos) << got[i].rule;
    EXPECT_FALSE(got[i].fix.empty());
  }
}

LoadResult load(const std::string& name, std::vector<std::string> overrides = {}) {
  LoadOptions o;
  o.overrides = std::move(overrides);
  o.check_paths = false;
  return load_config_file(kDir + name, o);
}

}  // namespace

TEST(ConfigLoad, EveryPresetValidatesWithoutWarnings) {
  const auto names = preset_names();
  ASSERT_EQ(names.size(), 6u);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const std::string text = preset_text(name);
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.rfind("# " + name + ":", 0), 0u) << "a preset opens with a comment saying what it is for";
    LoadOptions o;
    o.check_paths = false;
    const LoadResult r = load_config_text("extends: " + name + "\n", "<test>", o);
    EXPECT_TRUE(r.ok()) << dump(r.errors);
    EXPECT_TRUE(r.warnings.empty()) << dump(r.warnings);
    ASSERT_GE(r.sources.size(), 2u);
    EXPECT_EQ(r.sources[1], "preset:" + name);
  }
  EXPECT_EQ(preset_text("no-such-preset"), "");
}

TEST(ConfigLoad, EmbeddedPresetsMatchTheResourceFiles) {
  // The build regenerates the embedded copies whenever a preset file changes.
  for (const auto& name : preset_names()) {
    std::ifstream in(std::string(FATHOM_SOURCE_DIR) + "/resources/presets/" + name + ".yaml", std::ios::binary);
    ASSERT_TRUE(in) << name;
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(preset_text(name), ss.str()) << name << " is stale in the build";
  }
}

TEST(ConfigLoad, PresetShapes) {
  LoadOptions o;
  o.check_paths = false;
  const RunConfig tiny = load_config_text("extends: debug-tiny", "<t>", o).config;
  EXPECT_EQ(tiny.model.d_model, 64);
  EXPECT_EQ(tiny.model.n_kv_heads, 2);
  EXPECT_EQ(tiny.model.d_ff, 192);  // derived: 32 * ceil(floor(8*64/3) / 32)
  EXPECT_EQ(tiny.tokenizer.vocab_size, 512);
  EXPECT_EQ(tiny.run.device, "cpu");
  const RunConfig moe = load_config_text("extends: deepseek-moe-tiny", "<t>", o).config;
  EXPECT_EQ(moe.model.family, "deepseek");
  EXPECT_EQ(moe.model.attention, "mla");
  EXPECT_EQ(moe.model.moe.n_routed_experts, 8);
  EXPECT_EQ(moe.train.max_steps, 60);  // inherited from debug-tiny
  const RunConfig big = load_config_text("extends: deepseek-moe-16b", "<t>", o).config;
  EXPECT_EQ(big.model.n_layers, 28);
  EXPECT_EQ(big.model.moe.top_k, 6);
  EXPECT_EQ(big.model.attention, "mha");
  const RunConfig demo = load_config_text("extends: demo", "<t>", o).config;
  EXPECT_EQ(demo.train.sample_prompt, "My fellow citizens,");
  EXPECT_GT(demo.train.sample_interval, 0);
  EXPECT_EQ(demo.model.d_ff, 704);
}

TEST(ConfigLoad, TypeError) {
  expect_problems(load("type_error.yaml").errors, {{"type_error.yaml", 2, 21, "train.micro_batch_size", "'eight' is not an integer"}});
}

TEST(ConfigLoad, OutOfRange) {
  const LoadResult r = load("out_of_range.yaml");
  expect_problems(r.errors, {{"out_of_range.yaml", 2, 21, "train.micro_batch_size", "-4 must be >= 1"},
                             {"out_of_range.yaml", 4, 24, "data.validation_fraction", "0.7 must be <= 0.5"}});
  EXPECT_EQ(r.errors[0].message(),
            kDir + "out_of_range.yaml:2:21: train.micro_batch_size: -4 must be >= 1 (fix: set a positive integer)");
}

TEST(ConfigLoad, UnknownKeyWithTypoSuggestsTheKey) {
  const LoadResult r = load("unknown_key_typo.yaml");
  expect_problems(r.errors, {{"unknown_key_typo.yaml", 2, 3, "train.micro_batch_sise", "unknown key 'micro_batch_sise'"}});
  EXPECT_NE(r.errors[0].fix.find("train.micro_batch_size"), std::string::npos);
}

TEST(ConfigLoad, UnknownSectionSuggestsTheSection) {
  const LoadResult r = load("unknown_section.yaml");
  expect_problems(r.errors, {{"unknown_section.yaml", 1, 1, "optimiser", "unknown section 'optimiser'"}});
  EXPECT_NE(r.errors[0].fix.find("'optimizer'"), std::string::npos);
}

TEST(ConfigLoad, BadEnumSuggestsTheChoice) {
  const LoadResult r = load("bad_enum.yaml");
  expect_problems(r.errors, {{"bad_enum.yaml", 2, 11, "run.device", "'cdua' is not one of auto, cpu, cuda"}});
  EXPECT_NE(r.errors[0].fix.find("'cuda'"), std::string::npos) << r.errors[0].fix;
}

TEST(ConfigLoad, YamlSyntaxError) {
  // yaml-cpp reports where it noticed: the start of the next key after the unclosed list.
  expect_problems(load("yaml_syntax.yaml").errors, {{"yaml_syntax.yaml", 4, 6, "", "YAML syntax error"}});
}

TEST(ConfigLoad, CrossKeyRules) {
  expect_problems(load("cross_key.yaml").errors,
                  {{"cross_key.yaml", 3, 12, "model.n_heads", "d_model 100 is not divisible by n_heads 3"},
                   {"cross_key.yaml", 6, 12, "data.seq_len", "seq_len 256 exceeds model.max_seq_len 128"}});
  expect_problems(load("moe_rules.yaml").errors,
                  {{"moe_rules.yaml", 6, 12, "model.moe.top_k", "top_k 6 exceeds n_routed_experts 4"},
                   {"moe_rules.yaml", 12, 11, "optimizer.min_lr", "min_lr 0.001 exceeds lr 0.0001"},
                   {"moe_rules.yaml", 9, 9, "distributed.rank", "rank 2 is not below world_size 2"}});
  expect_problems(load("fp16_cpu.yaml").errors,
                  {{"fp16_cpu.yaml", 3, 14, "train.precision", "fp16 needs a CUDA device"}});
  expect_problems(load("precision_conflict.yaml").errors,
                  {{"precision_conflict.yaml", 3, 17, "train.fp16_enabled", "fp16_enabled is true but precision is bf16"}});
  // Missing MLA keys have no line of their own: they point at `attention: mla`.
  expect_problems(load("mla_missing.yaml").errors,
                  {{"mla_missing.yaml", 3, 14, "model.mla.qk_nope_head_dim", "needs model.mla.qk_nope_head_dim > 0"},
                   {"mla_missing.yaml", 3, 14, "model.mla.v_head_dim", "needs model.mla.v_head_dim > 0"}});
}

TEST(ConfigLoad, WarmupNotBelowMaxStepsIsAWarning) {
  const LoadResult r = load("warmup_warning.yaml");
  EXPECT_TRUE(r.ok()) << dump(r.errors);
  std::vector<ConfigError> warmup;
  for (const auto& w : r.warnings)
    if (w.key_path == "optimizer.warmup_steps") warmup.push_back(w);
  expect_problems(warmup, {{"warmup_warning.yaml", 4, 17, "optimizer.warmup_steps", "warmup_steps 100 >= max_steps 50"}});
}

TEST(ConfigLoad, AllErrorsOfAFileAtOnce) {
  expect_problems(load("multiple_errors.yaml").errors,
                  {{"multiple_errors.yaml", 3, 11, "run.device", "'gpu' is not one of"},
                   {"multiple_errors.yaml", 5, 13, "model.n_layers", "0 must be >= 1"},
                   {"multiple_errors.yaml", 6, 3, "model.dmodel", "unknown key 'dmodel'"},
                   {"multiple_errors.yaml", 8, 17, "train.fp16_enabled", "'maybe' is not true or false"}});
}

TEST(ConfigLoad, ExtendsCycleIsAnError) {
  const LoadResult r = load("extends_cycle_a.yaml");
  expect_problems(r.errors, {{"extends_cycle_b.yaml", 1, 10, "extends", "extends cycle: " + kDir + "extends_cycle_a.yaml -> " +
                                                                            kDir + "extends_cycle_b.yaml -> " + kDir +
                                                                            "extends_cycle_a.yaml"}});
}

TEST(ConfigLoad, UnknownPresetSuggestsTheName) {
  const LoadResult r = load("unknown_preset.yaml");
  expect_problems(r.errors, {{"unknown_preset.yaml", 1, 10, "extends", "unknown preset 'debug-tinny'"}});
  EXPECT_NE(r.errors[0].fix.find("'debug-tiny'"), std::string::npos);
}

TEST(ConfigLoad, ErrorsInAnExtendedFileNameThatFile) {
  const LoadResult r = load("extends_broken_base.yaml");
  expect_problems(r.errors, {{"base_with_error.yaml", 3, 17, "optimizer.warmup_steps", "'many' is not an integer"}});
  EXPECT_EQ(r.config.train.max_steps, 500);
}

TEST(ConfigLoad, ExtendsChainMergesMapsAndReplacesLists) {
  LoadOptions o;
  o.check_paths = false;
  // The file's data.train replaces the preset's list; other keys of the preset stay.
  const LoadResult r = load_config_file(kDir + "sub/uses_parent.yaml", o);
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  ASSERT_EQ(r.config.data.train.size(), 1u);
  EXPECT_EQ(r.config.data.train[0], kDir + "sub/local.txt");
  EXPECT_EQ(r.config.train.max_steps, 40);          // valid.yaml
  EXPECT_EQ(r.config.model.d_model, 64);            // debug-tiny
  EXPECT_EQ(r.config.data.validation_fraction, 0.05);
  EXPECT_EQ(r.sources, (std::vector<std::string>{kDir + "sub/uses_parent.yaml", kDir + "valid.yaml", "preset:debug-tiny"}));
  EXPECT_EQ(r.origins.at("train.max_steps").file, kDir + "valid.yaml");
  EXPECT_EQ(r.origins.at("train.max_steps").line, 6);
  EXPECT_EQ(r.origins.at("model.d_model").file, "preset:debug-tiny");
  EXPECT_EQ(r.origins.at("model.d_model").layer, 0);
  EXPECT_EQ(r.origins.at("data.train").layer, 2);
  EXPECT_EQ(r.origins.count("serve.port"), 0u);  // default: no origin
}

TEST(ConfigLoad, Overrides) {
  const LoadResult r = load("valid.yaml", {"optimizer.lr=1e-3", "lora.target_modules=[q_proj, k_proj]",
                                           "train.sample_prompt=Hello: world", "train.fp16_enabled=false",
                                           "distributed.gpu_ids=[0, 1]", "model.tie_embeddings=no"});
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  EXPECT_DOUBLE_EQ(r.config.optimizer.lr, 1e-3);
  EXPECT_EQ(r.config.lora.target_modules, (std::vector<std::string>{"q_proj", "k_proj"}));
  EXPECT_EQ(r.config.train.sample_prompt, "Hello: world");
  EXPECT_EQ(r.config.distributed.gpu_ids, (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(r.config.model.tie_embeddings);
  EXPECT_EQ(r.origins.at("optimizer.lr").file, "--set");
  EXPECT_EQ(r.config.train.max_steps, 40);  // untouched keys keep the file's values
  // A relative path given with --set resolves against the current directory.
  const LoadResult p = load("valid.yaml", {"data.train=extra.txt"});
  ASSERT_TRUE(p.ok()) << dump(p.errors);
  EXPECT_EQ(p.config.data.train, (std::vector<std::string>{(std::filesystem::current_path() / "extra.txt").string()}));
}

TEST(ConfigLoad, OverrideWinsOverTheFileAndTriggersRulesAtSet) {
  const LoadResult r = load("valid.yaml", {"data.seq_len=128"});
  expect_problems(r.errors, {{"--set", 0, 0, "data.seq_len", "seq_len 128 exceeds model.max_seq_len 64"}});
  EXPECT_EQ(r.errors[0].message().rfind("--set: data.seq_len: ", 0), 0u) << r.errors[0].message();
}

TEST(ConfigLoad, BadOverrides) {
  const LoadResult r = load("valid.yaml", {"optimizer.lrr=1", "train.micro_batch_size=abc", "no-equals-sign", "lr=1",
                                           "model=3", "run.device=gpu"});
  expect_problems(r.errors, {{"--set", 0, 0, "optimizer.lrr", "unknown key 'optimizer.lrr'"},
                             {"--set", 0, 0, "train.micro_batch_size", "'abc' is not an integer"},
                             {"--set", 0, 0, "", "'no-equals-sign' is not key=value"},
                             {"--set", 0, 0, "lr", "unknown key 'lr'"},
                             {"--set", 0, 0, "model", "unknown key 'model'"},
                             {"--set", 0, 0, "run.device", "'gpu' is not one of"}});
  EXPECT_NE(r.errors[0].fix.find("'optimizer.lr'"), std::string::npos) << r.errors[0].fix;
  EXPECT_NE(r.errors[3].fix.find("'optimizer.lr'"), std::string::npos) << r.errors[3].fix;
  EXPECT_NE(r.errors[4].fix.find("section"), std::string::npos) << r.errors[4].fix;
  EXPECT_NE(r.errors[5].fix.find("cuda"), std::string::npos) << r.errors[5].fix;
}

TEST(ConfigLoad, PathExpansion) {
  setenv("FATHOM_TEST_CORPUS", "/corpus", 1);
  unsetenv("FATHOM_TEST_UNSET");
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  const LoadResult r = load("sub/paths.yaml");
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  const std::string sub = kDir + "sub/";
  EXPECT_EQ(r.config.run.workspace, sub + "ws");
  EXPECT_EQ(r.config.data.train, (std::vector<std::string>{sub + "corpus/*.txt", "/corpus/extra.txt", "/abs/data.jsonl"}));
  EXPECT_EQ(r.config.data.shards_dir, sub + "shards");       // ${VAR:-default}, then made relative to the file
  EXPECT_EQ(r.config.tokenizer.path, home + "/tok");         // leading ~
  EXPECT_EQ(r.config.checkpoint.save_dir, "ckpt");           // relative to the run directory: left alone
  unsetenv("FATHOM_TEST_CORPUS");

  // An unset variable without a default is an error at its value.
  expect_problems(load("missing_env.yaml").errors,
                  {{"missing_env.yaml", 2, 11, "data.train", "environment variable FATHOM_TEST_DEFINITELY_UNSET is not set"}});
}

TEST(ConfigLoad, DataDirDefaultsAndPresetPathsStayAsWritten) {
  const char* saved = std::getenv("FATHOM_DATA_DIR");
  const std::string saved_value = saved ? saved : "";
  unsetenv("FATHOM_DATA_DIR");
  setenv("XDG_CACHE_HOME", "/xdg-cache", 1);
  EXPECT_EQ(default_data_dir(), "/xdg-cache/fathom");
  LoadOptions o;
  o.check_paths = false;
  const LoadResult demo = load_config_text("extends: demo", kDir + "x.yaml", o);
  ASSERT_TRUE(demo.ok()) << dump(demo.errors);
  EXPECT_EQ(demo.config.data.train, (std::vector<std::string>{"/xdg-cache/fathom/corpus/sotu"}));
  setenv("FATHOM_DATA_DIR", "/data-dir", 1);
  EXPECT_EQ(load_config_text("extends: demo", "x.yaml", o).config.tokenizer.path, "/data-dir/tokenizers/sotu-bpe-4096");
  // Relative paths set by an embedded preset are left relative.
  EXPECT_EQ(load_config_text("extends: debug-tiny", kDir + "x.yaml", o).config.checkpoint.save_dir, "checkpoints");
  unsetenv("XDG_CACHE_HOME");
  if (saved) setenv("FATHOM_DATA_DIR", saved_value.c_str(), 1);
  else unsetenv("FATHOM_DATA_DIR");
  setenv("XDG_DATA_HOME", "/xdg-data", 1);
  EXPECT_EQ(default_workspace(), "/xdg-data/fathom");
  EXPECT_EQ(resolved_workspace(RunConfig{}), "/xdg-data/fathom");
  unsetenv("XDG_DATA_HOME");
}

TEST(ConfigLoad, LoadTextReportsPositionsUnderItsDisplayName) {
  LoadOptions o;
  o.check_paths = false;
  const LoadResult r = load_config_text("extends: debug-tiny\nmodel:\n  n_heads: 3\n", "<designer>", o);
  // Both rules that n_heads breaks, placed at the designer's line (more derived than the preset).
  expect_problems(r.errors, {{"<designer>", 3, 12, "model.n_heads", "d_model 64 is not divisible by n_heads 3"},
                             {"<designer>", 3, 12, "model.n_heads", "n_heads 3 is not divisible by n_kv_heads 2"}});
  // An empty text is a valid all-defaults config.
  const LoadResult empty = load_config_text("", "<designer>", o);
  EXPECT_TRUE(empty.ok()) << dump(empty.errors);
  EXPECT_EQ(empty.config.model.d_ff, 704);  // derived from the default d_model 256
  EXPECT_EQ(empty.config.model.n_kv_heads, empty.config.model.n_heads);
  // A top level that is not a mapping.
  expect_problems(load_config_text("- a\n- b\n", "<designer>", o).errors, {{"<designer>", 1, 1, "", "top level must be a mapping"}});
}

TEST(ConfigLoad, MissingFile) {
  const LoadResult r = load_config_file(kDir + "does-not-exist.yaml");
  expect_problems(r.errors, {{"does-not-exist.yaml", 0, 0, "", "no such file"}});
}

TEST(ConfigLoad, DuplicateKeysAndSectionsWithoutKeys) {
  LoadOptions o;
  o.check_paths = false;
  expect_problems(load_config_text("train:\n  max_steps: 10\n  max_steps: 20\nlora:\nserve: 5\n", "<t>", o).errors,
                  {{"<t>", 3, 3, "train.max_steps", "duplicate key 'max_steps'"},
                   {"<t>", 5, 8, "serve", "'serve' is a section and needs keys under it"}});
}

TEST(ConfigLoad, Fp16EnabledFromAMoreDerivedLayerWins) {
  LoadOptions o;
  o.check_paths = false;
  // gpt2-124m says precision bf16; the file's fp16_enabled: true overrides it.
  const LoadResult r = load_config_text("extends: gpt2-124m\ntrain:\n  fp16_enabled: true\n", "<t>", o);
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  EXPECT_EQ(r.config.train.precision, "fp16");
  EXPECT_TRUE(r.config.train.fp16_enabled);
  // And precision set in a more derived layer wins over fp16_enabled.
  o.overrides = {"train.precision=bf16"};
  const LoadResult s = load_config_text("extends: gpt2-124m\ntrain:\n  fp16_enabled: true\n", "<t>", o);
  ASSERT_TRUE(s.ok()) << dump(s.errors);
  EXPECT_EQ(s.config.train.precision, "bf16");
  EXPECT_FALSE(s.config.train.fp16_enabled);
}

TEST(ConfigLoad, ResolvedYamlRoundTripsAndHashIsStable) {
  LoadOptions o;
  o.check_paths = false;
  for (const auto& name : preset_names()) {
    SCOPED_TRACE(name);
    const LoadResult a = load_config_text("extends: " + name, "<t>", o);
    const LoadResult b = load_config_text(a.resolved_yaml, "<resolved>", o);
    ASSERT_TRUE(b.ok()) << dump(b.errors) << a.resolved_yaml;
    EXPECT_EQ(a.resolved_yaml, b.resolved_yaml);
    EXPECT_EQ(config_hash(a), config_hash(b));
    EXPECT_EQ(config_hash(a).size(), 16u);
    EXPECT_EQ(config_hash(a).find_first_not_of("0123456789abcdef"), std::string::npos);
  }
  const LoadResult x = load("valid.yaml"), y = load("valid.yaml"), z = load("valid.yaml", {"train.max_steps=41"});
  EXPECT_EQ(config_hash(x), config_hash(y));
  EXPECT_NE(config_hash(x), config_hash(z));
  EXPECT_NE(x.resolved_yaml.find("  max_steps: 40\n"), std::string::npos);
  EXPECT_NE(x.resolved_yaml.find("  name: \"valid-fixture\"\n"), std::string::npos);
  EXPECT_NE(x.resolved_yaml.find("  moe:\n    n_routed_experts: 0\n"), std::string::npos);
}

TEST(ConfigLoad, ErrorMessageFormat) {
  ConfigError e{"run.yaml", 12, 21, "train.micro_batch_size", "-4 must be >= 1", "set a positive integer"};
  EXPECT_EQ(e.message(), "run.yaml:12:21: train.micro_batch_size: -4 must be >= 1 (fix: set a positive integer)");
  ConfigError s{"--set", 0, 0, "train.lr", "unknown key", ""};
  EXPECT_EQ(s.message(), "--set: train.lr: unknown key");
}

// Found by fuzz/fuzz_config: both used to escape load_config_text as exceptions (a crash of the
// engine or the Designer) instead of becoming errors.
TEST(ConfigLoad, InvalidUtf8StringIsAnErrorWithItsPosition) {
  LoadOptions o;
  o.check_paths = false;
  const LoadResult r = load_config_text("run:\n  name: \"bad\xff name\"\n", "<t>", o);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r.errors);
  EXPECT_EQ(r.errors[0].key_path, "run.name");
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_NE(r.errors[0].rule.find("not valid UTF-8 (byte 0xff at offset 3)"), std::string::npos) << r.errors[0].rule;
  EXPECT_NE(r.resolved_yaml.find("name:"), std::string::npos);  // still emitted, without throwing
  const LoadResult s = load_config_text("", "<t>", {{"run.name=caf\xc3"}, "", false});
  ASSERT_EQ(s.errors.size(), 1u) << dump(s.errors);
  EXPECT_EQ(s.errors[0].file, "--set");
}

TEST(ConfigLoad, IntListElementThatIsNotANumber) {
  LoadOptions o;
  o.check_paths = false;
  const LoadResult r = load_config_text("distributed:\n  gpu_ids: [0, x]\n", "<t>", o);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r.errors);
  EXPECT_EQ(r.errors[0].key_path, "distributed.gpu_ids");
  EXPECT_NE(r.errors[0].rule.find("'x' is not an integer"), std::string::npos) << r.errors[0].rule;
}
