// `inspect` reports: safetensors header summary, checkpoint verification per file, checkpoint
// directory listing; and the real `fathom-engine inspect` binary when it has been built.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "checkpoint/test_util.h"
#include "engine/checkpoint/inspect.h"
#include "engine/checkpoint/manifest.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/sha256.h"

using namespace fathom::ckpt;
using fathom::test::read_file;
using fathom::test::TempDir;
using fathom::test::write_file;

namespace {

// A checkpoint directory assembled from the documented layout, without the (torch) manager.
std::string make_checkpoint(const std::string& save_dir, int64_t step, const std::vector<float>& w) {
  const std::string dir = save_dir + "/" + checkpoint_dir_name(step);
  fathom::test::make_dirs(dir);
  Manifest m;
  m.step = step;
  m.val_loss = 1.25;
  SafetensorsWriter model;
  model.add("model.embed_tokens.weight", DType::DTYPE_F32, {static_cast<int64_t>(w.size()) / 4, 4}, w.data(),
            w.size() * 4);
  model.add("model.norm.weight", DType::DTYPE_F32, {4}, w.data(), 16);
  model.set_metadata("format", "pt");
  WriteResult r = model.write(dir + "/" + kModelFile, {true, true});
  m.files.push_back({kModelFile, r.bytes, r.sha256});
  SafetensorsWriter opt;
  r = opt.write(dir + "/" + kOptimizerFile, {true, true});
  m.files.push_back({kOptimizerFile, r.bytes, r.sha256});
  const std::string state = nlohmann::json{{"format", kStateFormat},
                                           {"version", 1},
                                           {"step", step},
                                           {"tokens", 123456},
                                           {"rng", {{"cpu", {1, 2, 3}}}},
                                           {"config_hash", "abc123"}}
                                .dump(2);
  write_file(dir + "/" + kStateFile, state);
  m.files.push_back({kStateFile, state.size(), sha256_hex(state.data(), state.size())});
  write_file(dir + "/" + kManifestFile, manifest_to_json(m).dump(2));
  return dir;
}

// Runs a command, returns (exit status, stdout).
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST(Inspect, Units) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(uint64_t{3} << 30), "3.00 GiB");
  EXPECT_EQ(format_bytes(uint64_t{250} << 20), "250 MiB");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_count(12345), "12.3K");
  EXPECT_EQ(format_count(1100048384), "1.10B");
}

TEST(Inspect, SafetensorsReportComesFromTheHeader) {
  TempDir dir;
  const std::vector<float> w(32, 1.f);
  const uint16_t h[3] = {1, 2, 3};
  SafetensorsWriter wr;
  wr.add("a.weight", DType::DTYPE_F32, {8, 4}, w.data(), 128);
  wr.add("b.bias", DType::DTYPE_BF16, {3}, h, 6);
  wr.add("scalar", DType::DTYPE_F32, {}, w.data(), 4);
  wr.set_metadata("format", "pt");
  wr.write(dir / "m.safetensors");

  const auto r = inspect_path(dir / "m.safetensors");
  EXPECT_EQ(r["kind"], "safetensors");
  EXPECT_EQ(r["tensor_count"], 3);
  EXPECT_EQ(r["total_params"], 32 + 3 + 1);
  EXPECT_EQ(r["data_bytes"], 128 + 6 + 4);
  EXPECT_EQ(r["metadata"]["format"], "pt");
  EXPECT_EQ(r["dtypes"]["F32"]["tensors"], 2);
  EXPECT_EQ(r["dtypes"]["BF16"]["bytes"], 6);
  ASSERT_EQ(r["tensors"].size(), 3u);
  EXPECT_EQ(r["tensors"][0]["name"], "a.weight");  // file order: F32 first
  EXPECT_EQ(r["tensors"][0]["shape"], nlohmann::json::array({8, 4}));
  EXPECT_EQ(inspect_exit_code(r), 0);
  const std::string text = format_inspect_report(r);
  EXPECT_NE(text.find("a.weight"), std::string::npos) << text;
  EXPECT_NE(text.find("[8, 4]"), std::string::npos) << text;
  EXPECT_NE(text.find("3 tensors, 36 parameters"), std::string::npos) << text;
  EXPECT_NE(text.find("BF16    1 tensor "), std::string::npos) << text;

  // Control characters from a file are shown escaped.
  SafetensorsWriter odd;
  odd.add("tab\there", DType::DTYPE_U8, {0}, nullptr, 0);
  odd.set_metadata("k", "line\nbreak");
  odd.write(dir / "odd.safetensors");
  const std::string odd_text = format_inspect_report(inspect_path(dir / "odd.safetensors"));
  EXPECT_NE(odd_text.find("\"tab\\there\""), std::string::npos) << odd_text;
  EXPECT_NE(odd_text.find("\"line\\nbreak\""), std::string::npos) << odd_text;
  EXPECT_NE(text.find("format: pt"), std::string::npos) << text;

  write_file(dir / "bad.safetensors", "not a safetensors file at all");
  EXPECT_THROW(inspect_path(dir / "bad.safetensors"), SafetensorsError);
  EXPECT_THROW(inspect_path(dir / "missing"), CheckpointError);
}

TEST(Inspect, CheckpointReportVerifiesEveryFile) {
  TempDir dir;
  const std::string ck = make_checkpoint(dir / "ckpts", 40, std::vector<float>(64, 2.f));
  auto r = inspect_path(ck);
  EXPECT_EQ(r["kind"], "checkpoint");
  EXPECT_EQ(r["step"], 40);
  EXPECT_TRUE(r["verified"].get<bool>()) << r.dump(2);
  EXPECT_EQ(r["verify_level"], "sha256");
  ASSERT_EQ(r["files"].size(), 3u);
  for (const auto& f : r["files"]) EXPECT_EQ(f["status"], "ok") << f.dump();
  EXPECT_EQ(r["state"]["tokens"], 123456);
  EXPECT_EQ(r["state"]["rng"], "{1 keys}");
  EXPECT_EQ(r["model"]["tensor_count"], 2);
  EXPECT_EQ(r["model"]["total_params"], 68);
  EXPECT_EQ(inspect_exit_code(r), 0);

  // Damage the state and truncate the model: both are reported, verification fails.
  std::string state = read_file(ck + "/state.json");
  state[state.size() / 2] ^= 1;
  write_file(ck + "/state.json", state);
  fathom::test::resize_file(ck + "/model.safetensors", 50);
  r = inspect_path(ck);
  EXPECT_FALSE(r["verified"].get<bool>());
  EXPECT_EQ(inspect_exit_code(r), 1);
  EXPECT_EQ(r["files"][0]["status"], "size mismatch");
  EXPECT_EQ(r["files"][2]["status"], "sha256 mismatch");
  EXPECT_NE(r["error"].get<std::string>().find("model.safetensors"), std::string::npos);
  const std::string text = format_inspect_report(r);
  EXPECT_NE(text.find("FAILED"), std::string::npos) << text;
  EXPECT_NE(text.find("sha256 mismatch"), std::string::npos) << text;

  // --quick: sizes only.
  r = inspect_path(ck, InspectOptions{false});
  EXPECT_EQ(r["verify_level"], "sizes");
  EXPECT_EQ(r["files"][2]["status"], "not checked");
}

TEST(Inspect, CheckpointDirectoryListsWholeAndBroken) {
  TempDir dir;
  const std::string sd = dir / "ckpts";
  make_checkpoint(sd, 10, std::vector<float>(16, 1.f));
  make_checkpoint(sd, 20, std::vector<float>(16, 1.f));
  fathom::test::make_dirs(sd + "/step-30");  // no manifest
  write_file(sd + "/latest", "step-20\n");
  const auto r = inspect_path(sd);
  EXPECT_EQ(r["kind"], "checkpoint_dir");
  EXPECT_EQ(r["latest"], "step-20");
  ASSERT_EQ(r["checkpoints"].size(), 3u);
  EXPECT_TRUE(r["checkpoints"][0]["whole"].get<bool>());
  EXPECT_EQ(r["checkpoints"][1]["val_loss"], 1.25);
  EXPECT_FALSE(r["checkpoints"][2]["whole"].get<bool>());
  EXPECT_NE(r["checkpoints"][2]["error"].get<std::string>().find("MANIFEST.json is missing"), std::string::npos);
  EXPECT_NE(format_inspect_report(r).find("NOT WHOLE"), std::string::npos);

  fathom::test::make_dirs(dir / "empty");
  try {
    inspect_path(dir / "empty");
    ADD_FAILURE() << "an empty directory was accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("neither a checkpoint"), std::string::npos) << e.what();
  }
}

// The real command, when fathom-engine has been built (it links every engine module, so a
// checkpoint-only build may not have it).
TEST(Inspect, EngineBinary) {
  const char* bin = std::getenv("FATHOM_ENGINE_BIN");
  if (!bin || ::access(bin, X_OK) != 0) GTEST_SKIP() << "fathom-engine not built (FATHOM_ENGINE_BIN)";
  TempDir dir;
  const std::string ck = make_checkpoint(dir / "ckpts", 5, std::vector<float>(16, 3.f));
  auto [rc, out] = run(std::string(bin) + " inspect --json " + ck + "/model.safetensors");
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j, inspect_path(ck + "/model.safetensors"));
  std::tie(rc, out) = run(std::string(bin) + " inspect " + ck);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verification (sha256): OK"), std::string::npos) << out;
  fathom::test::resize_file(ck + "/model.safetensors", 10);
  std::tie(rc, out) = run(std::string(bin) + " inspect " + ck + " 2>&1");
  EXPECT_EQ(rc, 1) << out;
  std::tie(rc, out) = run(std::string(bin) + " inspect " + ck + "/model.safetensors 2>&1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("header length prefix"), std::string::npos) << out;
}
