// Issue #12 (faults): the disk fills up while a checkpoint is being written. The checkpoints go to
// a tmpfs sized to hold one checkpoint and a half; the second save hits ENOSPC. The run must say so
// clearly (the error names the disk being full, the checkpoint's path and what to do), leave no
// half-written directory behind, keep `latest` on the previous checkpoint, which must still verify
// (sizes and sha256 in its MANIFEST), and — once space is back — resume from it and end
// bit-identical to a run that never saw a full disk.
//
// The tmpfs is mounted in a private mount namespace of this test process (so nothing leaks to the
// machine and no cleanup is needed): unshare(CLONE_NEWNS) as root, else a user namespace
// (unshare -rm). Where neither is allowed (a container without user namespaces) and the test runs
// as root, a plain mount is used and removed at the end; otherwise the test is skipped, saying why.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <map>

#include "checkpoint_compare.h"
#include "engine/engine_process.h"

namespace fs = std::filesystem;
using namespace fathom::testing;

namespace {

std::string g_namespace;       // how the mount namespace was obtained ("" = none)
std::string g_namespace_error;  // why not

bool write_proc(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

// Must run before any thread exists (a user namespace needs a single-threaded process).
void enter_private_mount_namespace() {
  if (::unshare(CLONE_NEWNS) == 0) {
    g_namespace = "mount namespace (root)";
  } else {
    const std::string e1 = std::strerror(errno);
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      g_namespace_error = "unshare(CLONE_NEWNS): " + e1 + "; unshare(CLONE_NEWUSER|CLONE_NEWNS): " + std::strerror(errno);
      return;
    }
    write_proc("/proc/self/setgroups", "deny");
    if (!write_proc("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1\n") ||
        !write_proc("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1\n")) {
      g_namespace_error = "user namespace: cannot write uid_map/gid_map";
      return;
    }
    g_namespace = "user + mount namespace (unshare -rm)";
  }
  // Mounts made here must not propagate back to the machine's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    g_namespace_error = std::string("mount --make-rprivate /: ") + std::strerror(errno);
    g_namespace.clear();
  }
}

std::string tiny_config(const std::string& dir, const std::string& save_dir) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: diskfull, seed: 7, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data, validation_fraction: 0.25}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
    << "train: {micro_batch_size: 8, max_steps: 20, log_interval: 1, eval_interval: 0, sample_interval: 0, precision: fp32}\n"
    << "optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 5, schedule: cosine}\n"
    << "checkpoint: {save_dir: " << save_dir << ", save_every_steps: 5, save_interval: 0, keep_n_latest: 0, async: true}\n";
  const std::string path = dir + "/" + fs::path(save_dir).filename().string() + ".yaml";
  write_text(path, y.str());
  return path;
}

// Bytes a directory's files take on a tmpfs (whole pages).
uint64_t pages_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) total += (e.file_size() + 4095) / 4096 * 4096;
  return total;
}

struct TmpfsMount {
  std::string path;
  bool global = false;  // a plain mount in the machine's namespace: unmount at the end
  ~TmpfsMount() {
    if (global && !path.empty()) ::umount2(path.c_str(), MNT_DETACH);
  }
};

}  // namespace

TEST(DiskFull, CheckpointOnFullDiskFailsClearlyAndKeepsThePreviousOne) {
  const auto dir = make_temp_dir("diskfull");
  // The reference run, on a disk with room: also gives the size of one checkpoint.
  const auto cfg_a = tiny_config(dir, dir + "/a-ckpt");
  ASSERT_EQ(run_engine({"train", cfg_a, "--run-dir", dir + "/a"}, dir), 0) << read_text(dir + "/stderr.txt");
  const uint64_t one = pages_bytes(dir + "/a-ckpt/step-5");
  ASSERT_GT(one, 0u);

  TmpfsMount mnt;
  mnt.path = dir + "/full";
  fs::create_directories(mnt.path);
  const uint64_t size = one * 3 / 2 + 8192;  // one checkpoint, the lock file, `latest`; not two
  const std::string opts = "size=" + std::to_string(size / 1024) + "k,mode=0755";
  if (g_namespace.empty()) {
    if (::geteuid() != 0) GTEST_SKIP() << "no mount namespace (" << g_namespace_error << ") and not root: cannot mount a small tmpfs";
    mnt.global = true;
  }
  if (::mount("tmpfs", mnt.path.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    mnt.global = false;
    GTEST_SKIP() << "cannot mount a tmpfs (" << why << "; namespace: " << (g_namespace.empty() ? g_namespace_error : g_namespace)
                 << "): the full-disk case is not tested here";
  }
  std::printf("tmpfs of %llu KiB at %s (%s); one checkpoint takes %llu KiB\n", static_cast<unsigned long long>(size / 1024),
              mnt.path.c_str(), mnt.global ? "plain mount" : g_namespace.c_str(), static_cast<unsigned long long>(one / 1024));

  // The run whose checkpoints fill the disk.
  const std::string save_dir = mnt.path + "/ckpt";
  const auto cfg_b = tiny_config(dir, save_dir);
  const int rc = run_engine({"train", cfg_b, "--run-dir", dir + "/b"}, dir);
  const std::string err = read_text(dir + "/stderr.txt");
  EXPECT_NE(rc, 0) << "a run whose final checkpoint could not be written must not exit 0\n" << err;
  auto recs = read_records(dir + "/b/events.jsonl");
  auto failures = records_of(recs, "error");
  ASSERT_FALSE(failures.empty()) << err;
  std::string first_failure;
  for (const auto& f : failures)
    if (f["data"].value("code", "") == "checkpoint_failed" && first_failure.empty()) first_failure = f["data"].value("message", "");
  ASSERT_FALSE(first_failure.empty()) << "no checkpoint_failed record:\n" << err;
  std::printf("the error: %s\n", first_failure.c_str());
  EXPECT_NE(first_failure.find("No space left on device"), std::string::npos) << first_failure;
  EXPECT_NE(first_failure.find(save_dir + "/step-10"), std::string::npos) << "names the checkpoint it could not write";
  EXPECT_NE(first_failure.find("previous checkpoint " + save_dir + "/step-5 is unchanged"), std::string::npos) << first_failure;
  std::string lower = first_failure;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
  EXPECT_NE(lower.find("free"), std::string::npos) << "says what to do (free space): " << first_failure;
  // ... on stderr too, for someone watching a terminal.
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_EQ(records_of(recs, "exit").at(0)["data"]["status"], "failed");

  // The previous checkpoint is whole and still the one `latest` names; nothing half-written stays.
  EXPECT_EQ(read_text(save_dir + "/latest"), "step-5\n");
  for (const auto& e : fs::directory_iterator(save_dir)) {
    const auto n = e.path().filename().string();
    EXPECT_TRUE(n == "step-5" || n == "latest" || n == ".lock") << "left behind: " << n;
  }
  // Verified by sha256 against its MANIFEST, and the same bytes as the run that had room.
  nlohmann::json report;
  expect_identical_checkpoints(dir + "/a-ckpt/step-5", save_dir + "/step-5", dir, &report);
  if (report.is_object()) EXPECT_EQ(report.value("verify_level", ""), "sha256");
  struct statvfs sv{};
  ASSERT_EQ(::statvfs(save_dir.c_str(), &sv), 0);
  EXPECT_GT(static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize, one / 4) << "the failed save's partial files were not removed";

  // Space comes back: resume from step 5 and finish, bit-identical to the run that had room.
  ASSERT_EQ(::mount(nullptr, mnt.path.c_str(), nullptr, MS_REMOUNT, "size=65536k"), 0) << std::strerror(errno);
  ASSERT_EQ(run_engine({"train", cfg_b, "--run-dir", dir + "/b", "--resume", "auto"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto resumed = records_of(read_records(dir + "/b/events.jsonl"), "event", "resumed");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0]["data"]["step"].get<int64_t>(), 5);
  expect_identical_checkpoints(dir + "/a-ckpt/step-20", save_dir + "/step-20", dir, &report);
  if (report.is_object()) EXPECT_EQ(report.value("verify_level", ""), "sha256");
}

int main(int argc, char** argv) {
  enter_private_mount_namespace();  // before gtest or torch start any thread
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const auto* unit = ::testing::UnitTest::GetInstance();
  // Skipped (no way to mount a small file system here): ctest's SKIP_RETURN_CODE.
  if (rc == 0 && unit->skipped_test_count() > 0 && unit->successful_test_count() == 0) return 77;
  return rc;
}
