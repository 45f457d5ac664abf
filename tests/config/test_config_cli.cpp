// fathom-engine validate / estimate / config through the real binary (FATHOM_ENGINE_BIN): exit
// codes and the exact error lines a user sees. Each start of the engine costs about a second
// (torch libraries load), so the library tests cover the cases and this file only the plumbing.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/config/config.h"
#include "engine/config/schema.h"

namespace {

const std::string kDir = std::string(FATHOM_FIXTURES_DIR) + "/configs/";

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string engine() {
  const char* bin = std::getenv("FATHOM_ENGINE_BIN");
  return bin ? bin : "";
}

CliRun run_engine(const std::string& args) {
  CliRun r;
  const std::string err_file = ::testing::TempDir() + "fathom_cli_stderr.txt";
  const std::string cmd = "'" + engine() + "' " + args + " 2>'" + err_file + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  return r;
}

class ConfigCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(engine().empty()) << "FATHOM_ENGINE_BIN is not set (ctest sets it)";
    std::ifstream bin(engine());
    ASSERT_TRUE(bin.good()) << "no engine binary at " << engine() << ": build the fathom-engine target";
  }
};

}  // namespace

TEST_F(ConfigCli, ValidateOk) {
  const CliRun r = run_engine("validate --no-path-checks '" + kDir + "valid.yaml'");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  fathom::config::LoadOptions o;
  o.check_paths = false;
  const std::string hash = fathom::config::config_hash(fathom::config::load_config_file(kDir + "valid.yaml", o));
  EXPECT_EQ(r.out, "OK: " + kDir + "valid.yaml (resolved hash " + hash + ")\n");
}

TEST_F(ConfigCli, ValidatePrintsEveryErrorOnePerLine) {
  const CliRun r = run_engine("validate '" + kDir + "multiple_errors.yaml'");
  EXPECT_EQ(r.exit_code, 1);
  const std::string f = kDir + "multiple_errors.yaml";
  // Errors only: warnings of a config that has errors are not shown (they mislead).
  const std::string expected =
      f + ":3:11: run.device: 'gpu' is not one of auto, cpu, cuda (fix: did you mean 'cuda'?)\n" +
      f + ":5:13: model.n_layers: 0 must be >= 1 (fix: set an integer from 1 to 1024)\n" +
      f + ":6:3: model.dmodel: unknown key 'dmodel' in model (fix: did you mean 'model.d_model'?)\n" +
      f + ":8:17: train.fp16_enabled: 'maybe' is not true or false (fix: write true or false)\n";
  EXPECT_EQ(r.out, expected);
  EXPECT_NE(r.err.find("4 errors"), std::string::npos) << r.err;
}

TEST_F(ConfigCli, ValidateBadSetAndPrint) {
  const CliRun set = run_engine("validate --no-path-checks '" + kDir + "valid.yaml' --set optimizer.lrr=1 --set train.max_steps=20");
  EXPECT_EQ(set.exit_code, 1);
  EXPECT_EQ(set.out, "--set: optimizer.lrr: unknown key 'optimizer.lrr' (fix: did you mean 'optimizer.lr'?)\n");

  const CliRun p = run_engine("validate --no-path-checks '" + kDir + "valid.yaml' --set train.max_steps=33 --print");
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_NE(p.out.find("train:\n  micro_batch_size: 4\n"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("  max_steps: 33\n"), std::string::npos);
  EXPECT_NE(p.err.find("OK: "), std::string::npos);
}

TEST_F(ConfigCli, Estimate) {
  const CliRun table = run_engine("estimate '" + kDir + "valid.yaml' --devices h200:2");
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("131.4K"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("h200 #1"), std::string::npos) << table.out;
  const CliRun json = run_engine("estimate '" + kDir + "valid.yaml' --json --set model.tie_embeddings=false");
  EXPECT_EQ(json.exit_code, 0) << json.err;
  const auto doc = nlohmann::json::parse(json.out);
  EXPECT_EQ(doc["params"]["total"], 131392 + 32768);
  EXPECT_EQ(doc["devices"].size(), 1u);  // run.device cpu -> the cpu by default
}

TEST_F(ConfigCli, ConfigSchemaAndPresets) {
  const CliRun md = run_engine("config --schema --markdown");
  EXPECT_EQ(md.exit_code, 0);
  EXPECT_EQ(md.out, fathom::config::schema_markdown());
  const CliRun list = run_engine("config --presets");
  EXPECT_EQ(list.exit_code, 0);
  for (const auto& name : fathom::config::preset_names()) EXPECT_NE(list.out.find(name + " "), std::string::npos) << name;
}
