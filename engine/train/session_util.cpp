// Helpers of a training session (see session_util.h).
#include "engine/train/session_util.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "engine/telemetry/nvml.h"
#include "engine/train/trainer.h"

namespace fs = std::filesystem;

namespace fathom::train {

std::string default_workspace() { return config::default_workspace(); }

std::string utc_stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
  return buf;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp + " (disk full?)");
  }
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, path);
}

namespace {

// The tee's copier thread and what waits for it. Leaked on purpose: used from exit handlers.
struct StderrTee {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int tty_fd = -1;
};
std::atomic<StderrTee*> g_tee{nullptr};  // stays set: the tee is reachable to the end (LeakSanitizer)
std::atomic<bool> g_tee_drained{false};

// Lines written just before the process ends (the error that ends a rank, "done: …") are still in
// the pipe: hand fd 2 back to the original stderr, which closes the pipe's write end, and wait
// (bounded) until the copier has drained it into the terminal and the log. Found in CI: a rank's
// "rank 1 is gone" reached events.jsonl but neither its stderr nor stderr.log.
void drain_stderr_tee() {
  StderrTee* t = g_tee.load();
  if (!t || g_tee_drained.exchange(true)) return;
  std::cerr.flush();
  std::fflush(stderr);
  ::dup2(t->tty_fd, 2);
  std::unique_lock<std::mutex> lock(t->mu);
  t->cv.wait_for(lock, std::chrono::seconds(2), [t] { return t->done; });
}

}  // namespace

void tee_stderr_to(const std::string& path) {
  if (g_tee.load()) return;
  int log_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return;
  }
  auto* tee = new StderrTee;
  tee->tty_fd = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
  ::dup2(pipe_fds[1], 2);  // fd 2 itself is not close-on-exec: children still write through it
  ::close(pipe_fds[1]);
  std::thread([r = pipe_fds[0], tee, log_fd] {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(r, buf, sizeof(buf))) > 0) {
      (void)!::write(tee->tty_fd, buf, static_cast<size_t>(n));
      (void)!::write(log_fd, buf, static_cast<size_t>(n));
    }
    std::lock_guard<std::mutex> lock(tee->mu);
    tee->done = true;
    tee->cv.notify_all();
  }).detach();
  g_tee = tee;
  // Normal exit and std::quick_exit (how a failed rank leaves at once) both drain it first.
  std::atexit(drain_stderr_tee);
  std::at_quick_exit(drain_stderr_tee);
}

bool same_file(int fd, const std::string& path) {
  struct stat a {}, b {};
  if (::fstat(fd, &a) != 0 || ::stat(path.c_str(), &b) != 0) return false;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string dataset_key(const config::RunConfig& cfg) {
  std::ostringstream key;
  for (const auto& t : cfg.data.train) key << t << '\n';
  key << cfg.data.format << '|' << cfg.data.text_field << '|' << cfg.data.validation_fraction << '|' << cfg.tokenizer.kind
      << '|' << cfg.tokenizer.path << '|' << cfg.tokenizer.vocab_size << '|' << cfg.tokenizer.train_bytes << '|'
      << cfg.run.seed;
  std::ostringstream name;
  name << cfg.tokenizer.kind << "-" << std::hex << std::setw(16) << std::setfill('0') << fnv1a(key.str());
  return name.str();
}

data::PrepareOptions prepare_options(const config::RunConfig& cfg, const std::string& workspace) {
  data::PrepareOptions prep;
  prep.inputs = cfg.data.train;
  prep.format = cfg.data.format;
  prep.text_field = cfg.data.text_field;
  prep.validation_fraction = cfg.data.validation_fraction;
  prep.tokenizer_kind = cfg.tokenizer.kind;
  prep.vocab_size = static_cast<size_t>(cfg.tokenizer.vocab_size);
  prep.train_bytes = static_cast<size_t>(cfg.tokenizer.train_bytes);
  prep.seed = static_cast<uint64_t>(cfg.run.seed);
  prep.out_dir = cfg.data.shards_dir.empty() ? (fs::path(workspace) / "data" / dataset_key(cfg)).string() : cfg.data.shards_dir;
  prep.tokenizer_path = cfg.tokenizer.path.empty() ? (fs::path(prep.out_dir) / "tokenizer.json").string() : cfg.tokenizer.path;
  return prep;
}

data::TokenSource shard_source(const data::TokenShard& shard) {
  data::TokenSource src;
  src.size = shard.size();
  const data::TokenShard* s = &shard;
  src.copy = [s](size_t begin, size_t n, int64_t* out) { s->copy(begin, n, out); };
  return src;
}

std::vector<protocol::DeviceInfo> describe_devices(const torch::Device& used) {
  std::vector<protocol::DeviceInfo> out;
  if (used.is_cpu()) {
    protocol::DeviceInfo d;
    d.index = 0;
    d.kind = "cpu";
    d.name = "CPU (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
    d.memory_total = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    out.push_back(d);
    return out;
  }
  auto& nvml = telemetry::Nvml::instance();
  protocol::DeviceInfo d;
  d.index = used.index();
  d.kind = "cuda";
  if (nvml.available()) {
    auto s = nvml.sample(used.index());
    d.name = s.name;
    d.uuid = s.uuid;
    d.memory_total = s.mem_total.value_or(0);
  }
  if (d.name.empty()) d.name = "CUDA device " + std::to_string(used.index());
  out.push_back(d);
  return out;
}

double peak_flops(const torch::Device& device, torch::ScalarType dtype) {
  if (!device.is_cuda()) return 0.0;
  std::string name;
  auto& nvml = telemetry::Nvml::instance();
  if (nvml.available()) name = nvml.sample(device.index()).name;
  const bool half = dtype == torch::kBFloat16 || dtype == torch::kFloat16;
  // Dense (no sparsity) tensor-core peaks from the datasheets; fp32 runs use TF32 where enabled.
  struct Peak { const char* key; double half_flops, fp32_flops; };
  static const Peak table[] = {
      {"H200", 989e12, 67e12}, {"H100", 989e12, 67e12}, {"A100", 312e12, 19.5e12}, {"L40S", 362e12, 91.6e12},
      {"A10", 125e12, 31.2e12}, {"V100", 125e12, 15.7e12}, {"4090", 165e12, 82.6e12}, {"3090", 71e12, 35.6e12},
  };
  for (const auto& p : table)
    if (name.find(p.key) != std::string::npos) return half ? p.half_flops : p.fp32_flops;
  return 0.0;
}

int64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

void load_named(std::vector<std::pair<std::string, torch::Tensor>>& dst,
                const std::vector<std::pair<std::string, torch::Tensor>>& src, const std::string& where) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [n, t] : src) by_name[n] = &t;
  torch::NoGradGuard ng;
  for (auto& [name, t] : dst) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::runtime_error(where + " has no tensor '" + name + "' that the model needs");
    if (it->second->sizes() != t.sizes())
      throw std::runtime_error(where + ": tensor '" + name + "' has shape " + c10::str(it->second->sizes()) +
                               " but the model expects " + c10::str(t.sizes()));
    t.copy_(*it->second);
  }
}

std::string human_count(double v) {
  const char* units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (std::fabs(v) >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(v < 10 && u > 0 ? 2 : 1) << v << units[u];
  return s.str();
}

std::string human_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s);
  std::ostringstream o;
  if (t >= 3600) o << t / 3600 << "h" << (t % 3600) / 60 << "m";
  else if (t >= 60) o << t / 60 << "m" << t % 60 << "s";
  else o << t << "s";
  return o.str();
}

ProgressLine::ProgressLine(std::string label)
    : label_(std::move(label)), tty_(isatty(2) != 0), t0_(std::chrono::steady_clock::now()), last_(t0_) {}

void ProgressLine::update(double fraction, const std::string& stage) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (fraction < 1.0 && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const int width = 30;
  const int filled = static_cast<int>(std::clamp(fraction, 0.0, 1.0) * width);
  std::cerr << "\r[" << label_ << "] " << std::string(filled, '#') << std::string(width - filled, '.') << " "
            << std::fixed << std::setprecision(1) << 100.0 * fraction << "% " << stage << "\033[K" << std::flush;
  dirty_ = true;
}

void ProgressLine::update_step(int64_t step, int64_t max_steps, double loss, double lr, double tokens_per_s) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (step < max_steps && now - last_ < std::chrono::milliseconds(200)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  const double eta = step > 0 ? elapsed / static_cast<double>(step) * static_cast<double>(max_steps - step) : NAN;
  std::cerr << "\r[" << label_ << "] step " << step << "/" << max_steps << "  loss " << std::fixed << std::setprecision(4)
            << loss << "  lr " << std::scientific << std::setprecision(1) << lr << std::defaultfloat << "  "
            << human_count(tokens_per_s) << " tok/s  eta " << human_duration(eta) << "\033[K" << std::flush;
  dirty_ = true;
}

void ProgressLine::done() {
  if (tty_ && dirty_) std::cerr << "\n";
  dirty_ = false;
}

}  // namespace fathom::train
