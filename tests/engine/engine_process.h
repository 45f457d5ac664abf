// Test helpers that run the real fathom-engine binary as a child process and read what it leaves
// in its run directory. Header-only; no torch.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace fathom::testing {

inline std::string engine_bin() {
  const char* e = std::getenv("FATHOM_ENGINE_BIN");
  return e ? e : std::string(FATHOM_BINARY_DIR) + "/bin/fathom-engine";
}

// The folders make_temp_dir made, removed when the test program exits, unless a test failed (they
// stay for a post-mortem, and the program prints where) or FATHOM_KEEP_TEST_DIRS is set. Built on
// first use, after gtest's UnitTest: destroyed before it, so it can still ask whether a test failed.
class TempDirRegistry {
 public:
  static TempDirRegistry& get() {
    static TempDirRegistry registry;
    return registry;
  }
  void add(const std::string& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(dir);
  }
  ~TempDirRegistry() {
    const bool keep = std::getenv("FATHOM_KEEP_TEST_DIRS") != nullptr || ::testing::UnitTest::GetInstance()->Failed();
    for (const auto& d : dirs_) {
      if (keep) {
        std::fprintf(stderr, "test folder kept: %s\n", d.c_str());
      } else {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      }
    }
  }

 private:
  TempDirRegistry() = default;
  std::mutex mu_;
  std::vector<std::string> dirs_;
};

inline std::string make_temp_dir(const std::string& tag) {
  std::string tmpl = (std::filesystem::temp_directory_path() / ("fathom-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  TempDirRegistry::get().add(tmpl);
  return tmpl;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child process with stdout/stderr redirected to files.
struct Child {
  pid_t pid = -1;
  int status = -1;

  static Child spawn(const std::vector<std::string>& args, const std::string& stdout_path,
                     const std::string& stderr_path) {
    Child c;
    c.pid = fork();
    if (c.pid == 0) {
      int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int in = ::open("/dev/null", O_RDONLY);
      dup2(out, 1);
      dup2(err, 2);
      dup2(in, 0);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return c;
  }
  // Waits up to `timeout_s`; returns the exit code, or -signal, or -1000 on timeout (child killed).
  int wait(double timeout_s = 120) {
    auto t0 = std::chrono::steady_clock::now();
    while (true) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1000;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return -1;
  }
};

// Runs the engine to completion; returns its exit code.
inline int run_engine(const std::vector<std::string>& args, const std::string& dir, double timeout_s = 120) {
  std::vector<std::string> full{engine_bin()};
  full.insert(full.end(), args.begin(), args.end());
  auto c = Child::spawn(full, dir + "/stdout.txt", dir + "/stderr.txt");
  return c.wait(timeout_s);
}

inline std::vector<nlohmann::json> read_records(const std::string& events_path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(events_path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

inline std::vector<nlohmann::json> records_of(const std::vector<nlohmann::json>& all, const std::string& type,
                                              const std::string& event_name = "") {
  std::vector<nlohmann::json> out;
  for (const auto& r : all) {
    if (r.value("type", "") != type) continue;
    if (!event_name.empty() && r["data"].value("name", "") != event_name) continue;
    out.push_back(r);
  }
  return out;
}

#ifdef FATHOM_FIXTURES_DIR
// A tiny model trained 20 steps on the fixture corpus (a real tokenizer and real weights) for the
// serving tests: DIR/base.yaml, run DIR/base, checkpoint DIR/base/checkpoints/step-20. Returns the
// engine's exit code.
inline int train_tiny_serving_base(const std::string& dir, const std::string& run_name) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: " << run_name << ", seed: 3, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64}\n"
    << "train: {micro_batch_size: 8, max_steps: 20, eval_interval: 0}\n"
    << "checkpoint: {save_every_steps: 20, save_interval: 0}\n";
  write_text(dir + "/base.yaml", y.str());
  return run_engine({"train", dir + "/base.yaml", "--run-dir", dir + "/base"}, dir);
}
#endif

}  // namespace fathom::testing
