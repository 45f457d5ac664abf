// The trainer on CUDA end to end, through the real fathom-engine binary (label gpu; exit 77 where no
// CUDA device is visible). A tiny dense model in bf16 takes every default of the kernels path at
// once: residual adds inside the RMSNorms across blocks, q/k/v and gate/up as one autograd node each,
// the row-chunked cross-entropy with its in-place gradient scale, the one-pass mixed AdamW with the
// clip coefficient on the device, cuBLASLt. Its loss must fall as the LibTorch composites'
// (FATHOM_KERNELS=0) does; the update overlapped with the next forward must give the same weights;
// `bench train` must report the step clock.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "engine/checkpoint/tensor_io.h"
#include "engine/engine_process.h"

using namespace fathom::testing;

namespace {

// FATHOM_TEST_DEVICE=cpu runs these on the CPU instead: a check of the tests themselves (the kernels,
// the overlap and the step clock are CUDA's, so there they compare the CPU path with itself).
std::string test_device() {
  const char* d = std::getenv("FATHOM_TEST_DEVICE");
  return d ? d : "cuda";
}

// train_extra: more train keys (", key: value"); model_extra: more model keys.
std::string cuda_config(const std::string& dir, int64_t max_steps, const std::string& train_extra = ", log_interval: 1, eval_interval: 0",
                        const std::string& model_extra = "") {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: gpu-e2e, seed: 7, device: " << test_device() << ", workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 64, shards_dir: " << dir << "/data, validation_fraction: 0.25}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 128, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0" << model_extra << "}\n"
    << "train: {micro_batch_size: 8, max_steps: " << max_steps
    << ", sample_interval: 0, precision: bf16, grad_clip: 1.0" << train_extra << "}\n"
    << "optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 5, schedule: cosine}\n"
    << "checkpoint: {save_every_steps: 1000, save_interval: 0, keep_n_latest: 1, async: true}\n";
  const std::string path = dir + "/run.yaml";
  write_text(path, y.str());
  return path;
}

// The run's per-step losses (exit code checked), with FATHOM_KERNELS (and FATHOM_OVERLAP_UPDATE) set
// as given.
std::vector<double> train_losses(const std::string& dir, const std::string& cfg, const char* kernels, const char* overlap = "0") {
  std::filesystem::create_directories(dir);
  setenv("FATHOM_KERNELS", kernels, 1);
  setenv("FATHOM_OVERLAP_UPDATE", overlap, 1);
  const int rc = run_engine({"train", cfg, "--run-dir", dir}, dir, 300);
  unsetenv("FATHOM_KERNELS");
  unsetenv("FATHOM_OVERLAP_UPDATE");
  EXPECT_EQ(rc, 0) << read_text(dir + "/stderr.txt");
  const auto recs = read_records(dir + "/events.jsonl");
  EXPECT_TRUE(records_of(recs, "event", "nan_skipped").empty()) << "FATHOM_KERNELS=" << kernels << ": a step was skipped";
  std::vector<double> losses;
  for (const auto& m : records_of(recs, "metric")) losses.push_back(m["data"]["loss"].get<double>());
  return losses;
}

double mean(const std::vector<double>& v, size_t from, size_t n) {
  return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(from), v.begin() + static_cast<std::ptrdiff_t>(from + n), 0.0) /
         static_cast<double>(n);
}

}  // namespace

TEST(TrainGpu, Bf16KernelsTrainLikeTheComposites) {
  const auto dir = make_temp_dir("train-gpu");
  const int64_t steps = 80;
  const auto cfg = cuda_config(dir, steps);
  const auto fused = train_losses(dir + "/fused", cfg, "1");
  const auto plain = train_losses(dir + "/composite", cfg, "0");
  ASSERT_EQ(fused.size(), static_cast<size_t>(steps));
  ASSERT_EQ(plain.size(), static_cast<size_t>(steps));
  for (double l : fused) ASSERT_TRUE(std::isfinite(l));
  // Same weights, same first batch: the first losses differ only by bf16 rounding.
  EXPECT_NEAR(fused[0], plain[0], 0.02 * plain[0]);
  // Both learn (fp32 on the CPU: 5.35 → 4.77 from the first 10 steps to the last 10), and end close
  // together (bf16 runs drift apart slowly, hence a loose bar).
  const double fused_end = mean(fused, steps - 10, 10), plain_end = mean(plain, steps - 10, 10);
  EXPECT_LT(fused_end, mean(fused, 0, 10) - 0.3) << "the fused run's loss did not fall";
  EXPECT_LT(plain_end, mean(plain, 0, 10) - 0.3) << "the composite run's loss did not fall";
  EXPECT_NEAR(fused_end, plain_end, 0.05 * plain_end);
  std::cout << "loss first " << fused[0] << " / " << plain[0] << ", last 10 " << fused_end << " / " << plain_end
            << " (kernels / composites)\n";
}

// FATHOM_OVERLAP_UPDATE=1 moves the update to a side stream, a block's parameters at a time, and the
// next forward waits for each block's: the same arithmetic in another order of launches, so the same
// weights and optimizer state to the bit. The tiny model's update would finish long before the next
// forward reaches the GPU, hiding any missing wait, so the side stream first spins ~50 ms each step
// (FATHOM_TEST_OVERLAP_DELAY_CYCLES): a forward reading half-updated weights, or a gradient freed while
// the side stream still reads it, then shows as a difference. The negative control skips the forward's
// waits and must differ, so the comparison can see a race at all. Only the last step is logged (a
// logged step syncs the device, and nothing would overlap); evaluations every 10 steps, two
// micro-batches a step and full activation checkpointing take the other readers' paths. Deterministic
// kernels, and a second serial run as the control that the baseline repeats at all. Tied embeddings
// (the head in the first group) and an untied head (in the last group, waited for before the final norm).
TEST(TrainGpu, OverlappedUpdateGivesTheSameWeights) {
  const auto dir = make_temp_dir("overlap-gpu");
  const int64_t steps = 40;
  const bool cuda = test_device() == "cuda";
  using Tensors = std::map<std::string, torch::Tensor>;
  auto run = [&](const std::string& cfg, const std::string& name, const char* overlap, bool skip_waits = false) {
    if (std::string(overlap) == "1") setenv("FATHOM_TEST_OVERLAP_DELAY_CYCLES", "100000000", 1);  // ~50 ms at ~2 GHz
    if (skip_waits) setenv("FATHOM_TEST_OVERLAP_SKIP_WAITS", "1", 1);
    train_losses(dir + "/" + name, cfg, "1", overlap);
    unsetenv("FATHOM_TEST_OVERLAP_DELAY_CYCLES");
    unsetenv("FATHOM_TEST_OVERLAP_SKIP_WAITS");
    if (std::string(overlap) == "1" && cuda) {
      // Every step's update went to the side stream (nothing silently fell back to the serial path).
      const auto err = read_text(dir + "/" + name + "/stderr.txt");
      EXPECT_NE(err.find("overlapped update: " + std::to_string(steps) + " update(s) ran on a side stream"), std::string::npos) << err;
    }
    Tensors t;
    for (const char* f : {"model", "optimizer"})
      for (auto& [k, v] : fathom::ckpt::load_tensors(dir + "/" + name + "/checkpoints/step-40/" + f + ".safetensors"))
        t[std::string(f) + "/" + k] = v;
    const auto recs = read_records(dir + "/" + name + "/events.jsonl");
    for (const auto& e : records_of(recs, "event", "eval"))
      t["eval/" + e["data"]["step"].dump()] = torch::tensor(e["data"]["val_loss"].get<double>(), torch::kFloat64);
    return t;
  };
  auto same = [](const Tensors& x, const Tensors& y, const std::string& what) {
    ASSERT_EQ(x.size(), y.size()) << what;
    for (const auto& [k, v] : x) {
      ASSERT_TRUE(y.count(k)) << what << ": " << k;
      EXPECT_TRUE(torch::equal(v, y.at(k))) << what << ": " << k << " differs";
    }
  };
  auto differs = [](const Tensors& x, const Tensors& y) {
    for (const auto& [k, v] : x)
      if (y.count(k) && !torch::equal(v, y.at(k))) return true;
    return false;
  };
  const std::string train = ", log_interval: 40, eval_interval: 10, gradient_accumulation_steps: 2, deterministic: true";
  const auto tied = cuda_config(dir, steps, train, ", activation_checkpointing: full");
  const auto a = run(tied, "serial-a", "0"), b = run(tied, "serial-b", "0"), o = run(tied, "overlapped", "1");
  ASSERT_GT(a.size(), 4u);
  same(a, b, "two serial runs (the control)");
  same(a, o, "serial vs overlapped");
  if (cuda) {
    EXPECT_TRUE(differs(a, run(tied, "racing", "1", /*skip_waits=*/true))) << "without the waits the results must change";
  }

  const auto untied = cuda_config(dir + "/untied", steps, train, ", activation_checkpointing: full, tie_embeddings: false");
  same(run(untied, "untied/serial", "0"), run(untied, "untied/overlapped", "1"), "untied head: serial vs overlapped");
}

// `bench train` on CUDA: one JSON line whose step clock (CUDA events around each timed step) has a
// time for every step.
TEST(TrainGpu, BenchReportsTheStepClock) {
  if (test_device() != "cuda") GTEST_SKIP() << "the step clock is CUDA's";
  const auto dir = make_temp_dir("bench-gpu");
  const auto cfg = cuda_config(dir, 10);
  ASSERT_EQ(run_engine({"bench", "train", cfg, "--steps", "4", "--warmup", "2"}, dir, 300), 0) << read_text(dir + "/stderr.txt");
  const auto lines = read_records(dir + "/stdout.txt");
  ASSERT_EQ(lines.size(), 1u) << read_text(dir + "/stdout.txt");
  const auto& r = lines[0];
  EXPECT_GT(r["tokens_per_s"].get<double>(), 0.0);
  ASSERT_TRUE(r.contains("step_clock")) << r.dump();
  const auto& c = r["step_clock"];
  EXPECT_EQ(c["steps"].get<int64_t>(), 4);
  EXPECT_GT(c["gpu_in_step_ms"].get<double>(), 0.0);
  EXPECT_GE(c["gpu_between_steps_ms"].get<double>(), 0.0);
  EXPECT_GE(c["host_blocked_ms"].get<double>(), 0.0);
  ASSERT_EQ(c["gpu_in_step_ms_each"].size(), 4u);
  // The timed seconds cover at least the GPU's time in the steps.
  EXPECT_GE(r["seconds"].get<double>() * 1e3, 0.9 * 4 * c["gpu_in_step_ms"].get<double>());
}

int main(int argc, char** argv) {
  if (test_device() == "cuda" && !torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device visible (gpu tests run on the GPU machine: tools/gpu/check_kernels.sh)\n";
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
