// End to end through the real fathom-engine binary: a tiny model trains on CPU and its loss falls;
// a run SIGKILLed at a random step and resumed ends bit-identical to an uninterrupted one; a
// corrupted newest checkpoint is skipped with a clear message; stop and SIGTERM checkpoint first.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "engine/checkpoint/tensor_io.h"
#include <nlohmann/json.hpp>
#include "engine/engine_process.h"
#include "engine/train/profile.h"

namespace fs = std::filesystem;
using namespace fathom::testing;

namespace {

const char* kDenseModel = "{d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}";
// deepseek-moe-tiny's shapes (MLA + one dense layer + DeepSeekMoE), here with DeepSeek-V3 routing:
// sigmoid gates, group-limited top-2, bias-update balancing.
const char* kMoeModel =
    "{family: deepseek, d_model: 64, n_layers: 2, n_heads: 4, d_ff: 192, max_seq_len: 64, vocab_size: 0, attention: mla,"
    " mla: {kv_lora_rank: 32, q_lora_rank: 24, qk_rope_head_dim: 8, qk_nope_head_dim: 16, v_head_dim: 16},"
    " moe: {n_routed_experts: 8, n_shared_experts: 1, top_k: 2, d_expert: 32, first_k_dense: 1, gate: sigmoid,"
    " balance: bias_update, bias_update_rate: 0.01, n_group: 2, topk_group: 1, norm_topk_prob: true}}";

std::string tiny_config(const std::string& dir, int64_t max_steps, int64_t save_every, const std::string& extra = "",
                        const std::string& model = kDenseModel) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: e2e, seed: 7, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data, validation_fraction: 0.25}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: " << model << "\n"
    << "train: {micro_batch_size: 8, gradient_accumulation_steps: 1, max_steps: " << max_steps
    << ", log_interval: 1, eval_interval: 0, sample_interval: 0, precision: fp32, grad_clip: 1.0}\n"
    << "optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 5, schedule: cosine}\n"
    << "checkpoint: {save_every_steps: " << save_every << ", save_interval: 0, keep_n_latest: 3, async: true}\n"
    << extra;
  const std::string path = dir + "/run.yaml";
  write_text(path, y.str());
  return path;
}

std::map<std::string, torch::Tensor> load_map(const std::string& path) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, v] : fathom::ckpt::load_tensors(path)) m[k] = v;
  return m;
}

void expect_identical(const std::string& a, const std::string& b) {
  auto ma = load_map(a), mb = load_map(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (auto& [k, v] : ma) {
    ASSERT_TRUE(mb.count(k)) << k;
    EXPECT_TRUE(torch::equal(v, mb[k])) << "tensor " << k << " differs between " << a << " and " << b;
  }
}

}  // namespace

TEST(TrainE2E, DebugTinyLossFalls) {
  const auto dir = make_temp_dir("train");
  const auto cfg = tiny_config(dir, 150, 75);
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/run"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto recs = read_records(dir + "/run/events.jsonl");
  auto metrics = records_of(recs, "metric");
  ASSERT_EQ(metrics.size(), 150u);
  const double first = metrics.front()["data"]["loss"].get<double>();
  const double last = metrics.back()["data"]["loss"].get<double>();
  EXPECT_NEAR(first, std::log(384.0), 0.5);
  EXPECT_LT(last, 4.6) << "loss went " << first << " → " << last;
  auto exits = records_of(recs, "exit");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0]["data"]["status"], "completed");
  EXPECT_TRUE(fs::exists(dir + "/run/checkpoints/step-150/MANIFEST.json"));
  EXPECT_TRUE(fs::exists(dir + "/run/config.yaml"));
  EXPECT_EQ(records_of(recs, "hello").size(), 1u);
  // stdout carried the same records as events.jsonl
  EXPECT_EQ(read_records(dir + "/stdout.txt").size(), recs.size());
}

// Trains `cfg` for 40 steps straight, and again SIGKILLed at a random step and resumed; the two
// final checkpoints must be bit-identical.
void expect_kill_resume_bit_identical(const std::string& dir, const std::string& cfg) {
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/a"}, dir), 0) << read_text(dir + "/stderr.txt");

  std::mt19937 rng(std::random_device{}());
  const int64_t kill_after = std::uniform_int_distribution<int>(6, 33)(rng);
  auto child = Child::spawn({engine_bin(), "train", cfg, "--run-dir", dir + "/b"}, dir + "/b-stdout.txt", dir + "/b-stderr.txt");
  // Kill once training has passed `kill_after` steps (there is then at least one checkpoint).
  for (int i = 0; i < 3000; ++i) {
    auto metrics = records_of(read_records(dir + "/b/events.jsonl"), "metric");
    if (!metrics.empty() && metrics.back()["data"]["step"].get<int64_t>() >= kill_after) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(child.pid, SIGKILL);
  EXPECT_EQ(child.wait(), -SIGKILL);
  ASSERT_FALSE(fs::exists(dir + "/b/checkpoints/step-40")) << "killed too late to test anything";
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/b", "--resume", "auto"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto resumed = records_of(read_records(dir + "/b/events.jsonl"), "event", "resumed");
  ASSERT_EQ(resumed.size(), 1u) << "killed after step " << kill_after;
  EXPECT_GT(resumed[0]["data"]["step"].get<int64_t>(), 0);
  expect_identical(dir + "/a/checkpoints/step-40/model.safetensors", dir + "/b/checkpoints/step-40/model.safetensors");
  expect_identical(dir + "/a/checkpoints/step-40/optimizer.safetensors", dir + "/b/checkpoints/step-40/optimizer.safetensors");
}

// `bench train`: one JSON line of speed; with --profile, where a step's time goes (CPU operators by
// self time here) and a Chrome trace that parses.
TEST(TrainE2E, BenchTrainReportsSpeedAndAProfile) {
  const auto dir = make_temp_dir("bench");
  const auto cfg = tiny_config(dir, 10, 0);
  ASSERT_EQ(run_engine({"bench", "train", cfg, "--steps", "3", "--warmup", "1", "--profile", dir + "/trace.json"}, dir), 0)
      << read_text(dir + "/stderr.txt");
  const auto lines = read_records(dir + "/stdout.txt");
  ASSERT_EQ(lines.size(), 1u) << read_text(dir + "/stdout.txt");
  const auto& r = lines[0];
  EXPECT_GT(r["tokens_per_s"].get<double>(), 0.0);
  EXPECT_EQ(r["steps"].get<int64_t>(), 3);
  EXPECT_TRUE(r["profiled"].get<bool>());
  const auto& p = r["profile"];
  EXPECT_EQ(p["device"], "cpu");
  EXPECT_GT(p["total_ms_per_step"].get<double>(), 0.0);
  ASSERT_FALSE(p["top"].empty());
  double share = 0;
  bool saw_matmul = false;
  for (const auto& row : p["top"]) {
    share += row["share"].get<double>();
    const auto name = row["name"].get<std::string>();
    saw_matmul = saw_matmul || name == "aten::mm" || name == "aten::addmm" || name == "aten::bmm";
    EXPECT_GT(row["calls_per_step"].get<double>(), 0.0) << name;
  }
  EXPECT_LE(share, 1.0 + 1e-9);
  EXPECT_TRUE(saw_matmul) << p.dump();
  EXPECT_NE(read_text(dir + "/stderr.txt").find("profile over 3 steps"), std::string::npos);
  const auto trace = nlohmann::json::parse(read_text(dir + "/trace.json"));
  ASSERT_TRUE(trace.contains("traceEvents"));
  EXPECT_GT(trace["traceEvents"].size(), 100u);
  // The kernel names of a CUDA profile fall into the categories the summary reports.
  EXPECT_EQ(fathom::train::kernel_category("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"), "matrix products");
  EXPECT_EQ(fathom::train::kernel_category("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT"), "matrix products");
  EXPECT_EQ(fathom::train::kernel_category("void fathom::kernels::(anonymous namespace)::swiglu_fwd_kernel<__nv_bfloat16>"),
            "Fathom kernels");
  EXPECT_EQ(fathom::train::kernel_category("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>"), "attention");
  EXPECT_EQ(fathom::train::kernel_category("ncclDevKernel_AllReduce_Sum_bf16_RING_LL"), "communication (NCCL)");
  EXPECT_EQ(fathom::train::kernel_category("void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor>"),
            "elementwise");
}

TEST(TrainE2E, SigkillAndResumeIsBitIdentical) {
  const auto dir = make_temp_dir("resume");
  const auto cfg = tiny_config(dir, 40, 5);
  expect_kill_resume_bit_identical(dir, cfg);
  if (HasFatalFailure()) return;

  // Resuming a finished run does nothing and leaves its last checkpoint untouched.
  const auto before = read_text(dir + "/b/checkpoints/step-40/state.json");
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/b", "--resume", "auto"}, dir), 0);
  EXPECT_NE(read_text(dir + "/stderr.txt").find("already complete"), std::string::npos);
  EXPECT_EQ(read_text(dir + "/b/checkpoints/step-40/state.json"), before);
  // --resume auto without a run directory cannot resume anything: refused, not silently fresh.
  EXPECT_EQ(run_engine({"train", cfg, "--resume", "auto"}, dir), 2);
  EXPECT_NE(read_text(dir + "/stderr.txt").find("--run-dir"), std::string::npos);
}

// The DeepSeek model (MLA + MoE with bias-update balancing) resumes exactly like the dense one:
// the routing biases are part of the checkpoint.
TEST(TrainE2E, DeepSeekMoeSigkillAndResumeIsBitIdentical) {
  const auto dir = make_temp_dir("resume-moe");
  const auto cfg = tiny_config(dir, 40, 5, "", kMoeModel);
  expect_kill_resume_bit_identical(dir, cfg);
  if (HasFatalFailure()) return;
  auto weights = load_map(dir + "/a/checkpoints/step-40/model.safetensors");
  ASSERT_TRUE(weights.count("model.layers.1.mlp.gate.e_score_correction_bias"));
  EXPECT_GT(weights["model.layers.1.mlp.gate.e_score_correction_bias"].abs().max().item<float>(), 0.0f)
      << "bias-update balancing never moved the routing bias";
  EXPECT_TRUE(weights.count("model.layers.1.self_attn.kv_b_proj.weight"));
  EXPECT_TRUE(weights.count("model.layers.1.mlp.experts.7.down_proj.weight"));
  EXPECT_TRUE(weights.count("model.layers.0.mlp.gate_proj.weight")) << "layer 0 is dense (first_k_dense 1)";
}

// deepseek-moe-tiny's loss falls as the dense model's does, and every metric record carries the
// expert load of the MoE layer (summing to 1) and the auxiliary loss.
TEST(TrainE2E, DeepSeekMoeLossFallsAndReportsExpertLoad) {
  const auto dir = make_temp_dir("moe");
  const std::string aux_model = std::string(kMoeModel).replace(std::string(kMoeModel).find("balance: bias_update"),
                                                              20, "balance: aux_loss");
  const auto cfg = tiny_config(dir, 120, 60, "", aux_model);
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/run"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto metrics = records_of(read_records(dir + "/run/events.jsonl"), "metric");
  ASSERT_EQ(metrics.size(), 120u);
  const double first = metrics.front()["data"]["loss"].get<double>();
  const double last = metrics.back()["data"]["loss"].get<double>();
  EXPECT_NEAR(first, std::log(384.0), 0.6);
  EXPECT_LT(last, first - 1.0) << "loss went " << first << " → " << last;
  const auto& extra = metrics.back()["data"]["extra"];
  double sum = 0;
  for (int e = 0; e < 8; ++e) sum += extra.at("moe.load.1." + std::to_string(e)).get<double>();
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_FALSE(extra.contains("moe.load.0.0")) << "layer 0 is dense";
  EXPECT_GT(extra.at("moe.aux_loss").get<double>(), 0.0);
  EXPECT_GE(extra.at("moe.load_imbalance").get<double>(), 1.0);
  EXPECT_EQ(extra.at("moe.dropped_frac").get<double>(), 0.0);
}

TEST(TrainE2E, CorruptedNewestCheckpointIsSkipped) {
  const auto dir = make_temp_dir("corrupt");
  auto cfg = tiny_config(dir, 20, 5);
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/run"}, dir), 0) << read_text(dir + "/stderr.txt");
  const std::string victim = dir + "/run/checkpoints/step-20/model.safetensors";
  ASSERT_TRUE(fs::exists(victim));
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) - 7));
    char c;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) - 7));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  cfg = tiny_config(dir, 25, 5);
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", dir + "/run", "--resume", "auto"}, dir), 0) << read_text(dir + "/stderr.txt");
  const auto err = read_text(dir + "/stderr.txt");
  EXPECT_NE(err.find("step-20"), std::string::npos) << err;
  auto recs = read_records(dir + "/run/events.jsonl");
  auto resumed = records_of(recs, "event", "resumed");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0]["data"]["step"].get<int64_t>(), 15);
  EXPECT_FALSE(records_of(recs, "event", "checkpoint_skipped").empty());
}

TEST(TrainE2E, SigtermCheckpointsThenExitsZero) {
  const auto dir = make_temp_dir("sigterm");
  const auto cfg = tiny_config(dir, 100000, 0);
  auto child = Child::spawn({engine_bin(), "train", cfg, "--run-dir", dir + "/run"}, dir + "/stdout.txt", dir + "/stderr.txt");
  for (int i = 0; i < 3000; ++i) {
    if (records_of(read_records(dir + "/run/events.jsonl"), "metric").size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(child.pid, SIGTERM);
  EXPECT_EQ(child.wait(60), 0) << read_text(dir + "/stderr.txt");
  auto recs = read_records(dir + "/run/events.jsonl");
  auto exits = records_of(recs, "exit");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0]["data"]["status"], "stopped");
  EXPECT_EQ(records_of(recs, "event", "checkpoint_saved").size(), 1u);
}

TEST(TrainE2E, StopThroughControlFifo) {
  const auto dir = make_temp_dir("fifo");
  const auto cfg = tiny_config(dir, 100000, 0);
  const std::string fifo = dir + "/control.fifo";
  auto child = Child::spawn({engine_bin(), "train", cfg, "--run-dir", dir + "/run", "--control-fifo", fifo},
                            dir + "/stdout.txt", dir + "/stderr.txt");
  for (int i = 0; i < 3000; ++i) {
    if (records_of(read_records(dir + "/run/events.jsonl"), "metric").size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    ASSERT_GE(fd, 0);
    const std::string lines = "{\"op\":\"ping\"}\n{\"op\":\"dance\"}\n{\"op\":\"sample\",\"prompt\":\"The Congress\"}\n{\"op\":\"stop\"}\n";
    ASSERT_EQ(::write(fd, lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
    ::close(fd);
  }
  EXPECT_EQ(child.wait(60), 0) << read_text(dir + "/stderr.txt");
  auto recs = read_records(dir + "/run/events.jsonl");
  EXPECT_EQ(records_of(recs, "exit").at(0)["data"]["status"], "stopped");
  EXPECT_EQ(records_of(recs, "event", "checkpoint_saved").size(), 1u);
  auto samples = records_of(recs, "event", "sample");
  ASSERT_GE(samples.size(), 1u);
  EXPECT_EQ(samples[0]["data"]["prompt"], "The Congress");
  EXPECT_EQ(records_of(recs, "event", "pong").size(), 1u);
  bool warned = false;
  for (const auto& r : records_of(recs, "log"))
    warned |= r["data"].value("message", "").find("unsupported control op 'dance'") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(TrainE2E, InvalidConfigFailsBeforeStarting) {
  const auto dir = make_temp_dir("badcfg");
  write_text(dir + "/bad.yaml", "extends: debug-tiny\ntrain:\n  micro_batch_size: -4\n");
  EXPECT_EQ(run_engine({"train", dir + "/bad.yaml", "--run-dir", dir + "/run"}, dir), 2);
  const auto err = read_text(dir + "/stderr.txt");
  EXPECT_NE(err.find("bad.yaml:3"), std::string::npos) << err;
  EXPECT_NE(err.find("train.micro_batch_size"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir + "/run/events.jsonl"));
}

// Non-finite losses (injected from step 5 on) are skipped and reported, and after
// train.max_nan_skips in a row the run stops with an error instead of training on NaN.
TEST(TrainE2E, NanGuardSkipsThenStops) {
  const auto dir = make_temp_dir("nan");
  const auto cfg = tiny_config(dir, 50, 0);
  setenv("FATHOM_INJECT_NAN_FROM_STEP", "5", 1);
  const int rc = run_engine({"train", cfg, "--run-dir", dir + "/run", "--set", "train.max_nan_skips=3"}, dir);
  unsetenv("FATHOM_INJECT_NAN_FROM_STEP");
  ASSERT_EQ(rc, 1) << read_text(dir + "/stderr.txt");
  auto recs = read_records(dir + "/run/events.jsonl");
  auto skipped = records_of(recs, "event", "nan_skipped");
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_EQ(skipped.back()["data"]["consecutive"].get<int>(), 3);
  auto errors = records_of(recs, "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0]["data"]["message"].get<std::string>().find("NaN/Inf"), std::string::npos);
  EXPECT_EQ(records_of(recs, "exit").at(0)["data"]["status"], "failed");
  EXPECT_EQ(records_of(recs, "metric").size(), 5u);  // steps 1..5 trained normally
}

namespace {

// A base trained on the fixture corpus, then a LoRA fine-tune config on the fixture instruction set.
std::string finetune_config(const std::string& dir, const std::string& base_ckpt, int64_t max_steps, int64_t save_every) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: ft, seed: 11, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "model: {max_seq_len: 64}\n"
    << "lora: {enabled: true, base: " << base_ckpt << ", r: 16, lora_alpha: 32, dropout: 0.0,"
    << " target_modules: [query_key_value, o_proj, gate_proj, up_proj, down_proj]}\n"
    << "data: {task: instruct, train: [" << FATHOM_FIXTURES_DIR << "/instruct/tiny.jsonl], seq_len: 64, validation_fraction: 0.1}\n"
    << "train: {micro_batch_size: 4, max_steps: " << max_steps << ", log_interval: 1, eval_interval: 0, sample_interval: 0}\n"
    << "optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 5}\n"
    << "checkpoint: {save_every_steps: " << save_every << ", save_interval: 0, keep_n_latest: 3, async: true}\n";
  const std::string path = dir + "/ft.yaml";
  write_text(path, y.str());
  return path;
}

std::string trained_base(const std::string& dir) {
  const auto cfg = tiny_config(dir, 120, 120);
  if (run_engine({"train", cfg, "--run-dir", dir + "/base"}, dir) != 0) return "";
  return dir + "/base/checkpoints/step-120";
}

double mean_loss(const std::vector<nlohmann::json>& metrics, size_t from, size_t n) {
  double s = 0;
  for (size_t i = from; i < from + n; ++i) s += metrics[i]["data"]["loss"].get<double>();
  return s / static_cast<double>(n);
}

}  // namespace

// The done-when: a LoRA fine-tune of a small model on a tiny instruction set lowers the
// completion loss; the base checkpoint is untouched; the checkpoint directory is a PEFT adapter.
TEST(FinetuneE2E, LoraLowersCompletionLossAndWritesPeftAdapters) {
  const auto dir = make_temp_dir("ft");
  const auto base = trained_base(dir);
  ASSERT_FALSE(base.empty()) << read_text(dir + "/stderr.txt");
  const auto base_bytes = read_text(base + "/model.safetensors");
  const auto cfg = finetune_config(dir, base, 100, 100);
  ASSERT_EQ(run_engine({"finetune", cfg, "--run-dir", dir + "/ft"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto recs = read_records(dir + "/ft/events.jsonl");
  auto metrics = records_of(recs, "metric");
  ASSERT_EQ(metrics.size(), 100u);
  // (A fall of 0.3 nats between the first and last ten steps' means, about three times their noise.
  // The size of the fall moves with the CPU's BLAS kernels: 0.47 on one AVX-512 Xeon, over 0.5 on CI.)
  const double early = mean_loss(metrics, 0, 10), late = mean_loss(metrics, 90, 10);
  EXPECT_LT(late, early - 0.3) << "completion loss " << early << " → " << late;
  auto lora = records_of(recs, "event", "lora");
  ASSERT_EQ(lora.size(), 1u);
  EXPECT_EQ(lora[0]["data"]["adapted_layers"], 14);
  EXPECT_EQ(read_text(base + "/model.safetensors"), base_bytes);
  const auto ck = dir + "/ft/checkpoints/step-100";
  auto adapter = fathom::ckpt::load_tensors(ck + "/adapter_model.safetensors");
  ASSERT_EQ(adapter.size(), 28u);
  for (auto& [n, t] : adapter) EXPECT_EQ(n.rfind("base_model.model.model.layers.", 0), 0u) << n;
  auto cfg_json = nlohmann::json::parse(read_text(ck + "/adapter_config.json"));
  EXPECT_EQ(cfg_json["r"], 16);
  EXPECT_EQ(cfg_json["peft_type"], "LORA");
  EXPECT_NE(read_text(ck + "/MANIFEST.json").find("adapter_config.json"), std::string::npos);
  // Only the adapters are in the checkpoint (the base is not copied).
  EXPECT_EQ(fathom::ckpt::load_tensors(ck + "/model.safetensors").size(), 28u);

  // Merge: W' = W + (alpha / r)·B·A for every adapted layer; unmerge gives the base back; the
  // merged model exports to a Hugging Face directory.
  ASSERT_EQ(run_engine({"lora", "merge", ck, "--out", dir + "/merged"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto basew = load_map(base + "/model.safetensors");
  auto merged = load_map(dir + "/merged/checkpoints/step-0/model.safetensors");
  auto ad = load_map(ck + "/model.safetensors");
  ASSERT_EQ(merged.size(), basew.size());
  const std::string q = "model.layers.1.self_attn.q_proj";
  auto expect_q = basew[q + ".weight"] + torch::matmul(ad[q + ".lora_B.weight"], ad[q + ".lora_A.weight"]) * 2.0;
  EXPECT_LT((merged[q + ".weight"] - expect_q).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(torch::equal(merged["model.norm.weight"], basew["model.norm.weight"]));
  ASSERT_EQ(run_engine({"lora", "unmerge", dir + "/merged/checkpoints/step-0", "--adapter", ck, "--out", dir + "/unmerged"}, dir), 0)
      << read_text(dir + "/stderr.txt");
  for (auto& [n, t] : load_map(dir + "/unmerged/checkpoints/step-0/model.safetensors"))
    EXPECT_LT((t - basew.at(n)).abs().max().item<double>(), 1e-6) << n;
  // generate: the adapter (merged on load) and the merged model give the same greedy text.
  ASSERT_EQ(run_engine({"generate", ck, "--prompt", "### Instruction:\nWhat is a lease?\n\n### Response:\n", "-t", "0", "-n", "16", "--json"}, dir), 0)
      << read_text(dir + "/stderr.txt");
  const auto from_adapter = nlohmann::json::parse(read_text(dir + "/stdout.txt"));
  ASSERT_EQ(run_engine({"generate", dir + "/merged/checkpoints/step-0", "--prompt", "### Instruction:\nWhat is a lease?\n\n### Response:\n", "-t", "0", "-n", "16", "--json"}, dir), 0);
  const auto from_merged = nlohmann::json::parse(read_text(dir + "/stdout.txt"));
  EXPECT_EQ(from_adapter["text"], from_merged["text"]);
  EXPECT_GT(from_adapter["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(run_engine({"generate", ck, "--prompt", std::string(400, 'x'), "-n", "4"}, dir), 2) << "a prompt longer than the context";
  EXPECT_NE(read_text(dir + "/stderr.txt").find("context"), std::string::npos);
  ASSERT_EQ(run_engine({"lora", "merge", ck, "--out", dir + "/merged-hf", "--to", "hf"}, dir), 0) << read_text(dir + "/stderr.txt");
  EXPECT_TRUE(fs::exists(dir + "/merged-hf/config.json"));
  EXPECT_TRUE(fs::exists(dir + "/merged-hf/model.safetensors"));
}

TEST(FinetuneE2E, KilledFinetuneResumesBitIdentically) {
  const auto dir = make_temp_dir("ft-resume");
  const auto base = trained_base(dir);
  ASSERT_FALSE(base.empty()) << read_text(dir + "/stderr.txt");
  const auto cfg = finetune_config(dir, base, 40, 5);
  ASSERT_EQ(run_engine({"finetune", cfg, "--run-dir", dir + "/a"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto child = Child::spawn({engine_bin(), "finetune", cfg, "--run-dir", dir + "/b"}, dir + "/b-stdout.txt", dir + "/b-stderr.txt");
  for (int i = 0; i < 3000; ++i) {
    auto metrics = records_of(read_records(dir + "/b/events.jsonl"), "metric");
    if (!metrics.empty() && metrics.back()["data"]["step"].get<int64_t>() >= 17) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(child.pid, SIGKILL);
  child.wait();
  ASSERT_FALSE(fs::exists(dir + "/b/checkpoints/step-40")) << "killed too late";
  ASSERT_EQ(run_engine({"finetune", cfg, "--run-dir", dir + "/b", "--resume", "auto"}, dir), 0) << read_text(dir + "/stderr.txt");
  EXPECT_EQ(records_of(read_records(dir + "/b/events.jsonl"), "event", "resumed").size(), 1u);
  expect_identical(dir + "/a/checkpoints/step-40/model.safetensors", dir + "/b/checkpoints/step-40/model.safetensors");
  expect_identical(dir + "/a/checkpoints/step-40/optimizer.safetensors", dir + "/b/checkpoints/step-40/optimizer.safetensors");
}

TEST(FinetuneE2E, PreviewShowsExamplesAsTheModelSeesThem) {
  const auto dir = make_temp_dir("ft-preview");
  const auto base = trained_base(dir);
  ASSERT_FALSE(base.empty());
  const auto cfg = finetune_config(dir, base, 10, 10);
  ASSERT_EQ(run_engine({"finetune", cfg, "--preview", "--examples", "3"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto out = nlohmann::json::parse(read_text(dir + "/stdout.txt"));
  EXPECT_EQ(out["template"], "plain");
  EXPECT_EQ(out["seq_len"], 64);
  EXPECT_EQ(out["examples"].size(), 3u);
  EXPECT_GT(out["count"].get<int>(), 20);
  bool trained = false, masked = false;
  for (const auto& s : out["examples"][0]["segments"]) (s["train"].get<bool>() ? trained : masked) = true;
  EXPECT_TRUE(trained && masked);
  int64_t total = 0;
  for (const auto& c : out["histogram"]["counts"]) total += c.get<int64_t>();
  EXPECT_EQ(total, out["count"].get<int64_t>());
  EXPECT_GT(out["trainable_params"].get<int64_t>(), 0);
  EXPECT_FALSE(fs::exists(dir + "/ws/runs")) << "--preview must not start a run";
  // Bad data: file:line and exit 2.
  write_text(dir + "/bad.jsonl", "{\"prompt\": \"x\"}\n");
  ASSERT_EQ(run_engine({"finetune", cfg, "--preview", "--set", "data.train=[" + dir + "/bad.jsonl]"}, dir), 2);
  EXPECT_NE(read_text(dir + "/stderr.txt").find("bad.jsonl:1"), std::string::npos) << read_text(dir + "/stderr.txt");
}
