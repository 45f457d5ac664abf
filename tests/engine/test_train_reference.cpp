// The engine's first 20 training steps against an independent implementation: Debian's
// python3-torch runs tests/engine/reference_llama.py from the same initial weights (dumped by the
// engine as safetensors) on the same batches (the engine's window rule replayed from its token
// shard), with torch.optim.AdamW and clip_grad_norm_. Losses must agree within 1e-4.
#include <gtest/gtest.h>

#include "engine/engine_process.h"

namespace fs = std::filesystem;
using namespace fathom::testing;

TEST(TrainReference, First20StepsMatchPyTorch) {
  if (!fs::exists("/usr/bin/python3") || std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed (packaging/setup.sh installs it)";
  }
  const auto dir = make_temp_dir("reference");
  const int steps = 20;
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: ref, seed: 11, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data}\n"
    << "tokenizer: {kind: bpe, vocab_size: 320, path: ''}\n"
    << "model: {d_model: 48, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 96, max_seq_len: 32, vocab_size: 0, "
       "tie_embeddings: true, rope_theta: 10000, norm_eps: 1.0e-5}\n"
    << "train: {micro_batch_size: 4, gradient_accumulation_steps: 1, max_steps: " << steps
    << ", log_interval: 1, eval_interval: 0, sample_interval: 0, precision: fp32, grad_clip: 0.5}\n"
    << "optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 4, schedule: cosine, weight_decay: 0.1, beta1: 0.9, "
       "beta2: 0.95, eps: 1.0e-8}\n"
    << "checkpoint: {save_every_steps: 0, save_interval: 0}\n";
  write_text(dir + "/ref.yaml", y.str());
  ASSERT_EQ(run_engine({"train", dir + "/ref.yaml", "--run-dir", dir + "/run", "--dump-initial-weights", dir + "/init.safetensors"}, dir), 0)
      << read_text(dir + "/stderr.txt");
  auto metrics = records_of(read_records(dir + "/run/events.jsonl"), "metric");
  ASSERT_EQ(metrics.size(), static_cast<size_t>(steps));

  nlohmann::json cfg{{"n_layers", 2}, {"n_heads", 4}, {"n_kv_heads", 2}, {"d_model", 48}, {"rope_theta", 10000.0},
                     {"norm_eps", 1e-5}, {"micro_batch_size", 4}, {"seq_len", 32}, {"seed", 11}, {"steps", steps},
                     {"lr", 1e-2}, {"min_lr", 1e-3}, {"warmup_steps", 4}, {"max_steps", steps}, {"weight_decay", 0.1},
                     {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8}, {"grad_clip", 0.5}};
  write_text(dir + "/ref.json", cfg.dump());
  const std::string cmd = "/usr/bin/python3 " + std::string(FATHOM_SOURCE_DIR) + "/tests/engine/reference_llama.py " + dir +
                          "/init.safetensors " + dir + "/data/train.bin " + dir + "/ref.json > " + dir + "/ref_out.json 2> " +
                          dir + "/ref_err.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(dir + "/ref_err.txt");
  auto ref = nlohmann::json::parse(read_text(dir + "/ref_out.json"));
  ASSERT_EQ(ref.size(), static_cast<size_t>(steps));
  for (int i = 0; i < steps; ++i) {
    const double ours = metrics[i]["data"]["loss"].get<double>();
    EXPECT_NEAR(ours, ref[i].get<double>(), 1e-4) << "step " << i + 1;
  }
  // The run must actually learn, or equality would prove little.
  EXPECT_LT(ref[steps - 1].get<double>(), ref[0].get<double>() - 0.5);
}
