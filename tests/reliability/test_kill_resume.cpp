// Issue #12 (faults): a CPU fp32 training run SIGKILLed at 20 random points (during start-up,
// resume, training steps and checkpoint writes), each time restarted with --resume auto, ends
// bit-identical (weights and optimizer state) to the same run left alone. The kill delays come from
// a seeded generator; the seed and every kill are printed (FATHOM_KILL_SEED=N repeats a sequence of
// delays — the points they land on still depend on the machine's speed).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "checkpoint_compare.h"
#include "engine/engine_process.h"

namespace fs = std::filesystem;
using namespace fathom::testing;

namespace {

constexpr int64_t kSteps = 60;
constexpr int kKills = 20;

std::string tiny_config(const std::string& dir) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: kill20, seed: 7, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data, validation_fraction: 0.25}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
    << "train: {micro_batch_size: 8, gradient_accumulation_steps: 1, max_steps: " << kSteps
    << ", log_interval: 1, eval_interval: 0, sample_interval: 0, precision: fp32, grad_clip: 1.0}\n"
    << "optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 5, schedule: cosine}\n"
    << "checkpoint: {save_every_steps: 2, save_interval: 0, keep_n_latest: 2, async: true}\n";
  write_text(dir + "/run.yaml", y.str());
  return dir + "/run.yaml";
}

int64_t last_metric_step(const std::string& events) {
  auto m = records_of(read_records(events), "metric");
  return m.empty() ? 0 : m.back()["data"]["step"].get<int64_t>();
}

// Leftovers of an interrupted checkpoint write (step-N.tmp; removed at the next start).
std::set<std::string> tmp_leftovers(const std::string& ckpt_dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    const auto n = e.path().filename().string();
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) out.insert(n);
  }
  return out;
}

}  // namespace

TEST(KillResume, TwentySigkillsEndBitIdentical) {
  const auto dir = make_temp_dir("kill20");
  const auto cfg = tiny_config(dir);

  // The reference: the same run left alone (it also prepares the shared data shards). Timed from
  // the spawn: start-up (process, LibTorch, tokenizer, shards) until the first step is logged, then
  // training.
  const auto t0 = std::chrono::steady_clock::now();
  auto ref = Child::spawn({engine_bin(), "train", cfg, "--run-dir", dir + "/a"}, dir + "/a-stdout.txt", dir + "/a-stderr.txt");
  double startup_s = 0;
  for (int i = 0; i < 60000 && startup_s == 0; ++i) {
    if (!records_of(read_records(dir + "/a/events.jsonl"), "metric").empty())
      startup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    else if (::waitpid(ref.pid, nullptr, WNOHANG) != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(ref.wait(600), 0) << read_text(dir + "/a-stderr.txt");
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GT(startup_s, 0);
  const auto metrics_a = records_of(read_records(dir + "/a/events.jsonl"), "metric");
  ASSERT_EQ(metrics_a.size(), static_cast<size_t>(kSteps));
  const double train_s = std::max(0.2, total_s - startup_s);

  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("FATHOM_KILL_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("kill seed %llu (FATHOM_KILL_SEED repeats it); uninterrupted run %.2f s, of which start-up %.2f s\n",
              static_cast<unsigned long long>(seed), total_s, startup_s);
  std::mt19937_64 rng(seed);
  // Where each life is killed: a quarter in start-up or resume (a random time before the first step,
  // measured on the reference), the others a random time within one step after a random step 1-3
  // steps past the furthest one reached so far (async checkpoints every 2 steps, so many kills cut
  // a checkpoint write). Tied to progress rather than to the clock, so a loaded machine moves the
  // kill points but cannot make the run finish before it has been killed 20 times.
  const double step_s = train_s / kSteps;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int64_t> ahead(1, 3);

  const std::string run_b = dir + "/b";
  int kills = 0, in_startup = 0, mid_checkpoint = 0, lives = 0;
  while (kills < kKills) {
    ++lives;
    const int64_t before = last_metric_step(run_b + "/events.jsonl");
    const auto tmp_before = tmp_leftovers(run_b + "/checkpoints");
    const int64_t target = before + ahead(rng);
    const bool startup_kill = unit(rng) < 0.25 || target > kSteps - 2;
    const double delay = startup_kill ? unit(rng) * 0.9 * startup_s : unit(rng) * step_s;
    auto child = Child::spawn({engine_bin(), "train", cfg, "--run-dir", run_b, "--resume", "auto"}, dir + "/b-stdout.txt",
                              dir + "/b-stderr.txt");
    if (!startup_kill) {
      while (last_metric_step(run_b + "/events.jsonl") < target && ::waitpid(child.pid, nullptr, WNOHANG) == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(delay * 1e6)));
    } else {
      // A life that starts faster than the reference did must not run on far: cut the wait short
      // once it has trained two steps past the furthest one reached.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay * 1e6));
      while (std::chrono::steady_clock::now() < until && last_metric_step(run_b + "/events.jsonl") <= std::min(before + 2, kSteps - 2))
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0) << "life " << lives << " ended by itself:\n" << read_text(dir + "/b-stderr.txt");
    ASSERT_EQ(child.wait(60), -SIGKILL) << "life " << lives << " ended by itself:\n" << read_text(dir + "/b-stderr.txt");
    ++kills;
    const int64_t reached = last_metric_step(run_b + "/events.jsonl");
    const auto tmp_after = tmp_leftovers(run_b + "/checkpoints");
    const bool tmp = !tmp_after.empty() && tmp_after != tmp_before;  // this life's write was cut
    const bool startup = reached == before;  // no new step trained in this life
    in_startup += startup;
    mid_checkpoint += tmp;
    if (startup_kill)
      std::printf("kill %2d: %6.3f s after the spawn: trained to step %lld%s%s\n", kills, delay, static_cast<long long>(reached),
                  startup ? " (in start-up/resume)" : "", tmp ? " (a checkpoint write was cut)" : "");
    else
      std::printf("kill %2d: %6.1f ms after step %lld was logged: trained to step %lld%s\n", kills, delay * 1000,
                  static_cast<long long>(target), static_cast<long long>(reached), tmp ? " (a checkpoint write was cut)" : "");
  }
  // One last life, left alone to finish.
  ASSERT_FALSE(fs::exists(run_b + "/checkpoints/step-" + std::to_string(kSteps)));
  ASSERT_EQ(run_engine({"train", cfg, "--run-dir", run_b, "--resume", "auto"}, dir, 600), 0) << read_text(dir + "/stderr.txt");
  const auto recs_b = read_records(run_b + "/events.jsonl");
  const auto resumed = records_of(recs_b, "event", "resumed");
  std::printf("kills: %d (%d in start-up/resume, %d cut a checkpoint write), lives: %d, resumes from a checkpoint: %zu\n",
              kills, in_startup, mid_checkpoint, lives + 1, resumed.size());
  EXPECT_EQ(kills, kKills);
  EXPECT_GE(resumed.size(), 5u) << "too few kills landed after a checkpoint to test resuming";
  // Every resume started from a whole checkpoint no newer than the last step trained before.
  for (const auto& r : resumed) EXPECT_GT(r["data"]["step"].get<int64_t>(), 0);
  EXPECT_EQ(records_of(recs_b, "exit").size(), 1u) << "only the last life exits; the killed ones leave no exit record";
  const std::string ca = dir + "/a/checkpoints/step-" + std::to_string(kSteps);
  const std::string cb = run_b + "/checkpoints/step-" + std::to_string(kSteps);
  expect_identical_checkpoints(ca, cb, dir);
  // Same loss curve too: every step's last logged loss equals the reference's.
  std::map<int64_t, double> loss_b;
  for (const auto& m : records_of(recs_b, "metric")) loss_b[m["data"]["step"].get<int64_t>()] = m["data"]["loss"].get<double>();
  for (const auto& m : metrics_a) {
    const int64_t s = m["data"]["step"].get<int64_t>();
    ASSERT_TRUE(loss_b.count(s)) << "step " << s << " never trained in the killed run";
    EXPECT_EQ(loss_b[s], m["data"]["loss"].get<double>()) << "step " << s;
  }
}
