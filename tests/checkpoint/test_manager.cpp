// CheckpointManager: layout, latest, retention, async snapshots, corruption/truncation fallback,
// crash leftovers, write failures (file size limit standing in for a full disk), locking, due().
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "checkpoint/test_util.h"
#include "engine/checkpoint/manager.h"
#include "engine/checkpoint/sha256.h"

using namespace fathom::ckpt;
using fathom::test::read_file;
using fathom::test::TempDir;
using fathom::test::write_file;
namespace fs {
using fathom::test::exists;
using fathom::test::file_size;
using fathom::test::resize_file;
inline bool is_regular_file(const std::string& p) { return fathom::ckpt::posix::is_regular_file(p); }
inline void create_directories(const std::string& p) { fathom::test::make_dirs(p); }
inline void remove(const std::string& p) { fathom::test::remove_file(p); }
}  // namespace fs

namespace {

CheckpointPayload make_payload(int64_t step, std::optional<double> val_loss = std::nullopt, int64_t n = 64) {
  torch::manual_seed(static_cast<uint64_t>(step) + 1);
  CheckpointPayload p;
  p.step = step;
  p.val_loss = val_loss;
  p.model = {{"model.embed_tokens.weight", torch::randn({n, 16})},
             {"model.norm.weight", torch::randn({16}).to(torch::kBFloat16)},
             {"lm_head.weight", torch::randn({n, 16})}};
  p.optimizer = {{"state.0.exp_avg", torch::randn({n, 16})}, {"state.0.step", torch::tensor(step)}};
  p.state = {{"tokens", step * 4096},
             {"data_cursor", {{"shard", 3}, {"offset", step * 17}}},
             {"rng", {{"cpu", {1, 2, 3, step}}}},
             {"config_hash", "cafebabe"},
             {"parent", nullptr}};
  return p;
}

CheckpointPolicy inline_policy(const std::string& dir, int keep_n = 0, int keep_best = 0) {
  CheckpointPolicy p;
  p.save_dir = dir;
  p.keep_n_latest = keep_n;
  p.keep_best = keep_best;
  p.async = false;
  return p;
}

std::vector<int64_t> steps_of(const std::vector<CheckpointInfo>& infos) {
  std::vector<int64_t> s;
  for (const auto& i : infos) s.push_back(i.step);
  return s;
}

bool any_tmp(const std::string& dir) {
  for (const std::string& n : fathom::ckpt::posix::list_directory(dir)) {
    if (n.size() >= 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) return true;
  }
  return false;
}

void expect_payload_eq(const CheckpointPayload& a, const CheckpointPayload& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  auto as_map = [](const NamedTensors& v) {
    std::map<std::string, torch::Tensor> m(v.begin(), v.end());
    return m;
  };
  for (const auto* pair : {&a.model, &a.optimizer}) {
    const auto& other = pair == &a.model ? b.model : b.optimizer;
    auto mo = as_map(other);
    for (const auto& [name, t] : *pair) {
      ASSERT_TRUE(mo.count(name)) << name;
      EXPECT_EQ(t.scalar_type(), mo[name].scalar_type()) << name;
      EXPECT_TRUE(torch::equal(t, mo[name])) << name;
    }
  }
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Lowers the file size limit so writes fail with EFBIG, as on a full disk; restored on scope exit.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);  // otherwise the process is killed instead of write() failing
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() { ::setrlimit(RLIMIT_FSIZE, &saved_); }

 private:
  rlimit saved_{};
};

}  // namespace

TEST(CheckpointManager, SaveWritesTheLayoutAndLatestAndLoadsBack) {
  TempDir dir;
  const std::string save_dir = dir / "ckpts";
  CheckpointManager m(inline_policy(save_dir));
  std::vector<CheckpointPayload> saved;
  for (int64_t step : {10, 20, 30}) {
    saved.push_back(make_payload(step, 2.0 / static_cast<double>(step)));
    m.save(saved.back());
  }
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "state.json", "MANIFEST.json"}) {
    EXPECT_TRUE(fs::is_regular_file(save_dir + "/step-20/" + f)) << f;
  }
  EXPECT_EQ(read_file(save_dir + "/latest"), "step-30\n");
  EXPECT_FALSE(any_tmp(save_dir));

  // MANIFEST lists sizes and sha256 of the other three files.
  const Manifest man = read_manifest(save_dir + "/step-20");
  EXPECT_EQ(man.step, 20);
  ASSERT_EQ(man.files.size(), 3u);
  for (const auto& f : man.files) {
    uint64_t bytes = 0;
    EXPECT_EQ(sha256_file(save_dir + "/step-20/" + f.name, &bytes), f.sha256) << f.name;
    EXPECT_EQ(bytes, f.bytes) << f.name;
  }
  // state.json: pretty, the trainer's fields plus format/version/step.
  const std::string state_text = read_file(save_dir + "/step-20/state.json");
  EXPECT_NE(state_text.find("\n  \""), std::string::npos) << "state.json is not pretty-printed";
  const auto state = nlohmann::json::parse(state_text);
  EXPECT_EQ(state["format"], "fathom-checkpoint");
  EXPECT_EQ(state["version"], 1);
  EXPECT_EQ(state["step"], 20);
  EXPECT_EQ(state["tokens"], 20 * 4096);
  EXPECT_EQ(state["data_cursor"]["offset"], 20 * 17);
  // model.safetensors carries the metadata Hugging Face loaders look for.
  EXPECT_EQ(SafetensorsFile::read_header_only(save_dir + "/step-20/model.safetensors").metadata.at("format"), "pt");

  EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{10, 20, 30}));
  const auto latest = m.latest_valid();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 30);
  EXPECT_TRUE(latest->verified);
  EXPECT_EQ(latest->path, save_dir + "/step-30");
  ASSERT_TRUE(m.latest_path());
  EXPECT_EQ(*m.latest_path(), save_dir + "/step-30");

  const CheckpointPayload back = CheckpointManager::load(save_dir + "/step-20");
  EXPECT_EQ(back.step, 20);
  ASSERT_TRUE(back.val_loss);
  EXPECT_DOUBLE_EQ(*back.val_loss, 0.1);
  EXPECT_EQ(back.state["config_hash"], "cafebabe");
  expect_payload_eq(saved[1], back);
}

TEST(CheckpointManager, RetentionKeepsNewestAndBestAndNeverTheLatest) {
  TempDir dir;
  {
    CheckpointManager m(inline_policy(dir / "a", /*keep_n=*/2, /*keep_best=*/1));
    const double losses[] = {5, 1, 4, 3, 6, 7};
    for (int64_t s = 1; s <= 6; ++s) m.save(make_payload(s, losses[s - 1], 8));
    EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{2, 5, 6}));  // newest two + best (step 2)
    EXPECT_FALSE(any_tmp(dir / "a"));
  }
  {
    CheckpointManager m(inline_policy(dir / "b", /*keep_n=*/2, /*keep_best=*/0));
    for (int64_t s = 1; s <= 5; ++s) m.save(make_payload(s * 100, std::nullopt, 8));
    EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{400, 500}));
  }
  {
    // Resuming from an older checkpoint starts a new branch: the just-written step-50 becomes
    // `latest` and is what resume picks; step-100 (the abandoned branch) is left alone.
    CheckpointManager m(inline_policy(dir / "c", /*keep_n=*/1));
    m.save(make_payload(100, std::nullopt, 8));
    m.save(make_payload(50, std::nullopt, 8));
    EXPECT_EQ(read_file(dir / "c/latest"), "step-50\n");
    EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{50, 100}));
    ASSERT_TRUE(m.latest_valid());
    EXPECT_EQ(m.latest_valid()->step, 50);
  }
}

TEST(CheckpointManager, AsyncSaveHoldsTheValuesAtSaveTime) {
  TempDir dir;
  CheckpointPolicy p = inline_policy(dir / "ck");
  p.async = true;
  CheckpointManager m(p);
  CheckpointPayload payload = make_payload(7, 0.5, /*n=*/1 << 16);  // ~4 MiB per matrix: the write takes a while
  std::map<std::string, torch::Tensor> expected;
  for (auto& [n, t] : payload.model) expected[n] = t.clone();
  for (auto& [n, t] : payload.optimizer) expected[n] = t.clone();
  // Keep handles to the trainer's tensors, as a trainer would.
  NamedTensors live = payload.model;
  live.insert(live.end(), payload.optimizer.begin(), payload.optimizer.end());

  std::atomic<bool> done{false};
  std::thread::id writer_thread;
  CheckpointInfo result;
  double seconds = -1;
  m.save(std::move(payload), [&](const CheckpointInfo& info, double s) {
    result = info;
    seconds = s;
    writer_thread = std::this_thread::get_id();
    done = true;
  });
  // Training continues and mutates its tensors in place right away.
  for (auto& [n, t] : live) t.mul_(0).add_(42);
  m.wait();
  ASSERT_TRUE(done);
  EXPECT_TRUE(result.verified) << result.error;
  EXPECT_GE(seconds, 0.0);
  EXPECT_NE(writer_thread, std::this_thread::get_id());
  EXPECT_GT(result.bytes, 4 << 20);

  const CheckpointPayload back = CheckpointManager::load(dir / "ck/step-7");
  for (const auto* group : {&back.model, &back.optimizer}) {
    for (const auto& [n, t] : *group) {
      ASSERT_TRUE(expected.count(n)) << n;
      EXPECT_TRUE(torch::equal(t, expected[n])) << n << " holds values from after save()";
    }
  }
}

TEST(CheckpointManager, CorruptedAndTruncatedCheckpointsAreSkippedWithAReason) {
  TempDir dir;
  const std::string sd = dir / "ck";
  CheckpointManager m(inline_policy(sd));
  for (int64_t s : {1, 2, 3}) m.save(make_payload(s));

  // Flip one byte inside step-3's tensor data.
  const std::string model3 = sd + "/step-3/model.safetensors";
  flip_byte(model3, fs::file_size(model3) - 100);
  std::vector<std::string> skipped;
  auto latest = m.latest_valid(&skipped);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 2);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find(model3), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find("corrupted"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find("sha256"), std::string::npos) << skipped[0];

  // Truncate step-2's optimizer file.
  const std::string opt2 = sd + "/step-2/optimizer.safetensors";
  fs::resize_file(opt2, fs::file_size(opt2) / 2);
  skipped.clear();
  latest = m.latest_valid(&skipped);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 1);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[1].find(opt2), std::string::npos) << skipped[1];
  EXPECT_NE(skipped[1].find("truncated"), std::string::npos) << skipped[1];

  // A truncated file is not whole (sizes are checked by list), a bit flip needs the hash.
  EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{1, 3}));
  const CheckpointInfo v3 = CheckpointManager::verify(sd + "/step-3");
  EXPECT_FALSE(v3.verified);
  EXPECT_NE(v3.error.find("model.safetensors"), std::string::npos) << v3.error;
  try {
    CheckpointManager::load(sd + "/step-3");
    ADD_FAILURE() << "loaded a corrupted checkpoint";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(model3), std::string::npos) << e.what();
  }

  // A damaged state.json counts too; then nothing is left.
  flip_byte(sd + "/step-1/state.json", 5);
  skipped.clear();
  EXPECT_FALSE(m.latest_valid(&skipped));
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_NE(skipped[2].find("state.json"), std::string::npos) << skipped[2];
}

TEST(CheckpointManager, CrashLeftoversAreCleanedAndNeverTreatedAsWhole) {
  TempDir dir;
  const std::string sd = dir / "ck";
  {
    CheckpointManager m(inline_policy(sd));
    m.save(make_payload(5));
  }
  // What a crash can leave: a half-written tmp dir, a latest.tmp, and (copied by hand) a step
  // dir without MANIFEST.
  fs::create_directories(sd + "/step-7.tmp");
  write_file(sd + "/step-7.tmp/model.safetensors", "partial");
  write_file(sd + "/latest.tmp", "step-7");
  fs::create_directories(sd + "/step-8");
  write_file(sd + "/step-8/model.safetensors", "partial");

  CheckpointManager m(inline_policy(sd));
  EXPECT_FALSE(fs::exists(sd + "/step-7.tmp"));
  EXPECT_FALSE(fs::exists(sd + "/latest.tmp"));
  EXPECT_TRUE(fs::exists(sd + "/step-8"));  // not ours to delete
  EXPECT_EQ(steps_of(m.list()), (std::vector<int64_t>{5}));
  EXPECT_EQ(read_file(sd + "/latest"), "step-5\n");
  ASSERT_TRUE(m.latest_valid());
  EXPECT_EQ(m.latest_valid()->step, 5);

  // Without `latest`, every step dir is a candidate from the highest; step-8 is skipped.
  fs::remove(sd + "/latest");
  std::vector<std::string> skipped;
  const auto v = m.latest_valid(&skipped);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->step, 5);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step-8/MANIFEST.json is missing"), std::string::npos) << skipped[0];

  // A `latest` naming a directory that is gone is reported and older ones are used.
  write_file(sd + "/latest", "step-6\n");
  skipped.clear();
  ASSERT_TRUE(m.latest_valid(&skipped));
  ASSERT_FALSE(skipped.empty());
  EXPECT_NE(skipped[0].find("names step-6, which does not exist"), std::string::npos) << skipped[0];
}

TEST(CheckpointManager, WriteFailureLeavesThePreviousCheckpointWhole) {
  TempDir dir;
  const std::string sd = dir / "ck";
  CheckpointManager m(inline_policy(sd));
  m.save(make_payload(1, std::nullopt, 8));
  {
    FileSizeLimit limit(16 << 10);  // the next model file is ~64 KiB
    try {
      m.save(make_payload(2, std::nullopt, 1024));
      ADD_FAILURE() << "save succeeded past the file size limit";
    } catch (const CheckpointError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("step-2"), std::string::npos) << msg;
      EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
      EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
      EXPECT_NE(msg.find("step-1 is unchanged"), std::string::npos) << msg;
    }
    // Reported through on_done instead when one is given.
    std::string reported;
    m.save(make_payload(3, std::nullopt, 1024), [&](const CheckpointInfo& info, double) {
      EXPECT_FALSE(info.verified);
      reported = info.error;
    });
    EXPECT_NE(reported.find("File too large"), std::string::npos) << reported;
  }
  EXPECT_FALSE(fs::exists(sd + "/step-2"));
  EXPECT_FALSE(fs::exists(sd + "/step-3"));
  EXPECT_FALSE(any_tmp(sd));
  EXPECT_EQ(read_file(sd + "/latest"), "step-1\n");
  ASSERT_TRUE(m.latest_valid());
  EXPECT_EQ(m.latest_valid()->step, 1);

  // Async without on_done: the failure surfaces from wait().
  CheckpointPolicy p = inline_policy(dir / "async");
  p.async = true;
  CheckpointManager a(p);
  {
    FileSizeLimit limit(16 << 10);
    a.save(make_payload(1, std::nullopt, 1024));
    EXPECT_THROW(a.wait(), CheckpointError);
  }
  a.wait();  // reported once
  EXPECT_TRUE(a.list().empty());
}

TEST(CheckpointManager, SavingAStepAgainReplacesItWhole) {
  TempDir dir;
  CheckpointManager m(inline_policy(dir / "ck"));
  m.save(make_payload(5));
  CheckpointPayload second = make_payload(6);
  second.step = 5;
  m.save(second);
  EXPECT_FALSE(any_tmp(dir / "ck"));
  const CheckpointPayload back = CheckpointManager::load(dir / "ck/step-5");
  expect_payload_eq(second, back);
}

TEST(CheckpointManager, OneWriterPerDirectory) {
  TempDir dir;
  CheckpointManager first(inline_policy(dir / "ck"));
  first.save(make_payload(1, std::nullopt, 8));
  fs::create_directories(dir / "ck/step-2.tmp");  // as if `first` were writing it now
  CheckpointManager second(inline_policy(dir / "ck"));
  EXPECT_FALSE(second.can_write());
  EXPECT_TRUE(fs::exists(dir / "ck/step-2.tmp")) << "a reader removed the writer's tmp dir";
  EXPECT_EQ(steps_of(second.list()), (std::vector<int64_t>{1}));  // reading still works
  try {
    second.save(make_payload(3, std::nullopt, 8));
    ADD_FAILURE() << "two writers on one directory";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos) << e.what();
  }
}

TEST(CheckpointManager, DueOnStepMultiplesAndElapsedTime) {
  TempDir dir;
  CheckpointPolicy p = inline_policy(dir / "ck");
  p.save_every_steps = 100;
  p.save_interval_s = 3600;
  const auto t0 = std::chrono::steady_clock::now();
  {
    CheckpointManager m(p);
    EXPECT_FALSE(m.due(0, t0));
    EXPECT_FALSE(m.due(50, t0));
    EXPECT_TRUE(m.due(100, t0));
    EXPECT_TRUE(m.due(150, t0 + std::chrono::seconds(3601)));
    m.save(make_payload(100, std::nullopt, 8));
    EXPECT_FALSE(m.due(100, t0));  // never twice for one step
    EXPECT_FALSE(m.due(150, std::chrono::steady_clock::now() + std::chrono::seconds(10)));
    EXPECT_TRUE(m.due(150, std::chrono::steady_clock::now() + std::chrono::seconds(3601)));
  }
  CheckpointManager resumed(p);  // picks up the last saved step from `latest`
  EXPECT_FALSE(resumed.due(100, t0));
  EXPECT_TRUE(resumed.due(200, t0));
  p.save_every_steps = 0;
  p.save_interval_s = 0;
  CheckpointManager never(p);
  EXPECT_FALSE(never.due(1000, t0 + std::chrono::hours(100)));
}

TEST(CheckpointManager, RejectsBadInputEarly) {
  TempDir dir;
  CheckpointManager m(inline_policy(dir / "ck"));
  CheckpointPayload p = make_payload(1);
  p.state = nlohmann::json::array({1, 2});
  EXPECT_THROW(m.save(p), CheckpointError);
  p = make_payload(1);
  p.model.emplace_back("undefined", torch::Tensor());
  EXPECT_THROW(m.save(p), CheckpointError);
  p = make_payload(-1);
  EXPECT_THROW(m.save(p), CheckpointError);
  CheckpointPolicy bad = inline_policy(dir / "ck2");
  bad.keep_n_latest = -1;
  EXPECT_THROW(CheckpointManager{bad}, CheckpointError);
  write_file(dir / "file", "x");
  EXPECT_THROW(CheckpointManager{inline_policy(dir / "file")}, CheckpointError);
  EXPECT_TRUE(m.list().empty());
  EXPECT_FALSE(m.latest_valid());
}

TEST(CheckpointManager, AsyncSaveOfCudaTensorsHoldsTheValuesAtSaveTime) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  CheckpointPolicy p = inline_policy(dir / "ck");
  p.async = true;
  CheckpointManager m(p);
  CheckpointPayload payload = make_payload(3, std::nullopt, 1 << 14);
  std::map<std::string, torch::Tensor> expected;
  NamedTensors live;
  for (auto* group : {&payload.model, &payload.optimizer}) {
    for (auto& [n, t] : *group) {
      t = t.to(torch::kCUDA);
      expected[n] = t.cpu();
      live.emplace_back(n, t);
    }
  }
  m.save(std::move(payload));
  for (auto& [n, t] : live) t.zero_();
  m.wait();
  const CheckpointPayload back = CheckpointManager::load(dir / "ck/step-3");
  for (const auto* group : {&back.model, &back.optimizer}) {
    for (const auto& [n, t] : *group) EXPECT_TRUE(torch::equal(t, expected.at(n))) << n;
  }
}
