// CheckpointManager; see manager.h. Write order (ARCHITECTURE.md §4): step-<N>.tmp/ gets the
// tensors, state.json and finally MANIFEST.json, each fsynced; the directory is fsynced and
// renamed to step-<N>; the parent is fsynced; then `latest` is replaced atomically. A crash at
// any point leaves either no step-<N> or a whole one, plus at most a *.tmp removed at next start.
#include "engine/checkpoint/manager.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/checkpoint/sha256.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)  // linux/fs.h; not always exposed by libc headers
#endif

namespace fathom::ckpt {

struct CheckpointManager::Job {
  int64_t step = 0;
  NamedTensors model, optimizer;
  std::string state_json;
  std::optional<double> val_loss;
  std::vector<std::pair<std::string, std::string>> extra_text_files;
  std::string model_copy_file, model_copy_prefix;
};

namespace {

const char* kLockFile = ".lock";

std::string join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checkpoint directories (step-<N>) present in save_dir, whole or not, by ascending step.
std::vector<std::pair<int64_t, std::string>> step_dirs(const std::string& save_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (const std::string& name : posix::list_directory(save_dir)) {
    int64_t step;
    if (parse_checkpoint_dir_name(name, &step) && posix::is_directory(join(save_dir, name))) out.emplace_back(step, name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Whole checkpoints: manifest present and every file there with its recorded size.
std::vector<CheckpointInfo> scan_whole(const std::string& save_dir) {
  std::vector<CheckpointInfo> out;
  for (const auto& [step, name] : step_dirs(save_dir)) {
    CheckpointInfo info = verify_checkpoint(join(save_dir, name), VerifyLevel::VERIFY_LEVEL_SIZES);
    if (!info.verified) continue;
    info.verified = false;  // sizes only; sha256 not checked
    out.push_back(std::move(info));
  }
  return out;
}

std::optional<std::string> read_latest_name(const std::string& save_dir) {
  std::ifstream in(join(save_dir, kLatestFile));
  if (!in) return std::nullopt;
  std::string name;
  std::getline(in, name);
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ' || name.back() == '\t')) name.pop_back();
  int64_t step;
  if (!parse_checkpoint_dir_name(name, &step)) return std::nullopt;
  return name;
}

NamedTensors snapshot(const NamedTensors& in, bool copy, const char* what) {
  NamedTensors out;
  out.reserve(in.size());
  for (const auto& [name, t] : in) {
    if (!t.defined()) throw CheckpointError(std::string("checkpoint ") + what + " tensor '" + name + "' is undefined.");
    if (t.layout() != c10::kStrided) {
      throw CheckpointError(std::string("checkpoint ") + what + " tensor '" + name +
                            "' is not dense; call .to_dense() before checkpointing.");
    }
    torch::Tensor d = t.detach();
    if (copy) {
      // The snapshot must own its memory: training mutates the originals in place right after.
      d = d.is_cpu() ? d.clone(at::MemoryFormat::Contiguous)
                     : d.to(d.options().device(c10::kCPU), /*non_blocking=*/false, /*copy=*/true,
                            at::MemoryFormat::Contiguous);
    }
    out.emplace_back(name, std::move(d));
  }
  return out;
}

void log_warning(const std::string& msg) { std::cerr << "fathom: checkpoint: " << msg << "\n"; }

}  // namespace

CheckpointManager::CheckpointManager(CheckpointPolicy policy) : policy_(std::move(policy)) {
  if (policy_.save_dir.empty()) throw CheckpointError("checkpoint.save_dir is empty; set a directory.");
  if (policy_.keep_n_latest < 0 || policy_.keep_best < 0 || policy_.save_interval_s < 0 ||
      policy_.save_every_steps < 0) {
    throw CheckpointError("checkpoint policy for " + policy_.save_dir +
                          ": keep_n_latest, keep_best, save_interval and save_every_steps must be >= 0.");
  }
  while (policy_.save_dir.size() > 1 && policy_.save_dir.back() == '/') policy_.save_dir.pop_back();
  try {
    posix::make_directories(policy_.save_dir);
  } catch (const std::exception& e) {
    throw CheckpointError(std::string(e.what()) + "; checkpoints cannot be saved (check checkpoint.save_dir).");
  }

  // One writer per directory: two trainers sharing one would delete each other's checkpoints.
  const std::string lock_path = join(policy_.save_dir, kLockFile);
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    lock_error_ = "cannot open " + lock_path + ": " + std::strerror(errno) + "; checkpoints cannot be written there.";
  } else if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    lock_error_ = "checkpoint directory " + policy_.save_dir + " is in use by another process (pid " + holder +
                  " holds " + lock_path + "); only one process (rank 0 of one run) may write checkpoints there. "
                  "Give this run its own save_dir.";
    ::close(fd);
  } else {
    lock_fd_ = fd;
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
    // Leftovers of an interrupted save or deletion; never whole by construction.
    for (const std::string& name : posix::list_directory(policy_.save_dir)) {
      if ((name.rfind("step-", 0) == 0 && ends_with(name, ".tmp")) || name == std::string(kLatestFile) + ".tmp") {
        const std::string path = join(policy_.save_dir, name);
        std::string err;
        if (!posix::remove_tree(path, &err)) {
          log_warning("could not remove stale " + path + ": " + err);
        } else {
          log_warning("removed " + path + ", left by an interrupted save");
        }
      }
    }
  }

  std::lock_guard<std::mutex> g(dir_mu_);
  if (auto s = latest_step_locked()) last_save_step_ = *s;
  last_save_time_ = std::chrono::steady_clock::now();
}

CheckpointManager::~CheckpointManager() {
  try {
    finish_pending();
  } catch (const std::exception& e) {
    log_warning(e.what());
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

bool CheckpointManager::due(int64_t step, std::chrono::steady_clock::time_point now) const {
  if (step <= last_save_step_) return false;
  if (policy_.save_every_steps > 0 && step % policy_.save_every_steps == 0) return true;
  return policy_.save_interval_s > 0 && now - last_save_time_ >= std::chrono::seconds(policy_.save_interval_s);
}

void CheckpointManager::finish_pending() {
  if (worker_.joinable()) worker_.join();
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> g(error_mu_);
    std::swap(e, pending_error_);
  }
  if (e) std::rethrow_exception(e);
}

void CheckpointManager::wait() { finish_pending(); }

void CheckpointManager::save(CheckpointPayload payload,
                             std::function<void(const CheckpointInfo&, double seconds)> on_done) {
  if (!can_write()) throw CheckpointError(lock_error_);
  if (payload.step < 0) throw CheckpointError("checkpoint step must be >= 0, got " + std::to_string(payload.step));
  if (!payload.state.is_null() && !payload.state.is_object()) {
    throw CheckpointError(std::string("checkpoint state must be a JSON object, got ") + payload.state.type_name() + ".");
  }
  finish_pending();

  auto job = std::make_shared<Job>();
  job->step = payload.step;
  // JSON has no NaN/inf; a diverged run's loss is simply not ranked as "best".
  if (payload.val_loss && std::isfinite(*payload.val_loss)) job->val_loss = payload.val_loss;
  nlohmann::json state = payload.state.is_null() ? nlohmann::json::object() : std::move(payload.state);
  state["format"] = kStateFormat;
  state["version"] = kCheckpointVersion;
  state["step"] = payload.step;
  if (job->val_loss) state["val_loss"] = *job->val_loss;
  try {
    job->state_json = state.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(std::string("checkpoint state cannot be written as JSON: ") + e.what());
  }
  // Inline writes finish before save() returns, so CPU tensors need no copy then.
  job->model = snapshot(payload.model, policy_.async, "model");
  job->optimizer = snapshot(payload.optimizer, policy_.async, "optimizer");
  job->extra_text_files = std::move(payload.extra_text_files);
  job->model_copy_file = std::move(payload.model_copy_file);
  job->model_copy_prefix = std::move(payload.model_copy_prefix);
  last_save_step_ = payload.step;
  last_save_time_ = std::chrono::steady_clock::now();

  auto run = [this, job, on_done = std::move(on_done)] {
    const auto t0 = std::chrono::steady_clock::now();
    const CheckpointInfo info = write_checkpoint(*job);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::exception_ptr err;
    if (on_done) {
      try {
        on_done(info, seconds);
      } catch (...) {
        err = std::current_exception();
      }
    } else if (!info.verified) {
      err = std::make_exception_ptr(CheckpointError(info.error));
    }
    if (err) {
      std::lock_guard<std::mutex> g(error_mu_);
      pending_error_ = err;
    }
  };
  if (policy_.async) {
    worker_ = std::thread(std::move(run));
  } else {
    run();
    finish_pending();
  }
}

CheckpointInfo CheckpointManager::write_checkpoint(const Job& job) {
  const std::string name = checkpoint_dir_name(job.step);
  const std::string tmp = join(policy_.save_dir, name + ".tmp");
  const std::string final_dir = join(policy_.save_dir, name);
  CheckpointInfo info;
  info.path = final_dir;
  info.step = job.step;
  info.val_loss = job.val_loss;
  bool published = false;
  try {
    std::string err;
    if (!posix::remove_tree(tmp, &err)) throw CheckpointError(err + ".");
    if (!posix::make_directory(tmp, &err)) throw CheckpointError(err + ".");
    Manifest m;
    m.step = job.step;
    m.val_loss = job.val_loss;
    m.created_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const WriteOptions durable{/*fsync=*/true, /*compute_sha256=*/true};
    const std::string step_s = std::to_string(job.step);
    // "format": "pt" is what Hugging Face loaders expect in a PyTorch-produced file.
    const WriteResult model = save_tensors(join(tmp, kModelFile), job.model, {{"format", "pt"}, {"fathom.step", step_s}},
                                           durable);
    m.files.push_back({kModelFile, model.bytes, model.sha256});
    const WriteResult opt = save_tensors(join(tmp, kOptimizerFile), job.optimizer,
                                         {{"fathom.content", "optimizer"}, {"fathom.step", step_s}}, durable);
    m.files.push_back({kOptimizerFile, opt.bytes, opt.sha256});
    if (!job.model_copy_file.empty()) {
      NamedTensors renamed;
      for (const auto& [n, t] : job.model) renamed.emplace_back(job.model_copy_prefix + n, t);
      const WriteResult copy = save_tensors(join(tmp, job.model_copy_file), renamed, {{"format", "pt"}}, durable);
      m.files.push_back({job.model_copy_file, copy.bytes, copy.sha256});
    }
    for (const auto& [name, text] : job.extra_text_files) {
      write_file_durable(join(tmp, name), text);
      m.files.push_back({name, text.size(), sha256_hex(text.data(), text.size())});
    }
    write_file_durable(join(tmp, kStateFile), job.state_json);
    m.files.push_back({kStateFile, job.state_json.size(), sha256_hex(job.state_json.data(), job.state_json.size())});
    // Last: its presence is what makes the directory a checkpoint.
    write_file_durable(join(tmp, kManifestFile), manifest_to_json(m).dump(2) + "\n");
    fsync_directory(tmp);

    std::lock_guard<std::mutex> g(dir_mu_);
    publish(tmp, final_dir, job.step);
    published = true;
    info.bytes = static_cast<int64_t>(m.total_bytes());
    info.verified = true;
    apply_retention(job.step);
  } catch (const std::exception& e) {
    info.verified = false;
    if (published) {
      info.error = "checkpoint " + final_dir + " was written but " + std::string(kLatestFile) + " was not updated: " +
                   e.what();
    } else {
      posix::remove_tree(tmp);
      const auto prev = read_latest_name(policy_.save_dir);
      info.error = "could not write checkpoint " + final_dir + ": " + e.what() +
                   (prev ? " The previous checkpoint " + join(policy_.save_dir, *prev) + " is unchanged."
                         : std::string(" No checkpoint has been written yet."));
    }
    log_warning(info.error);  // a terminal shows it too, not only the protocol's error record
  }
  return info;
}

// Called with dir_mu_ held.
void CheckpointManager::publish(const std::string& tmp, const std::string& final_dir, int64_t step) {
  if (posix::exists(final_dir)) {
    // Saving a step again (e.g. a stop request at a scheduled step): swap atomically so that
    // step-<N> is whole at every instant, then delete the old one.
    bool swapped = false;
#ifdef SYS_renameat2
    swapped = ::syscall(SYS_renameat2, AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0;
#endif
    if (swapped) {
      posix::remove_tree(tmp);  // the old step-<N>; a leftover is cleaned at next start
    } else {  // filesystems without RENAME_EXCHANGE: a short window with no step-<N>
      const std::string old = final_dir + ".replaced.tmp";
      posix::remove_tree(old);
      if (::rename(final_dir.c_str(), old.c_str()) != 0) {
        throw CheckpointError("cannot move the existing " + final_dir + " aside: " + std::strerror(errno) + ".");
      }
      if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
        const int err = errno;
        (void)::rename(old.c_str(), final_dir.c_str());
        throw CheckpointError("cannot rename " + tmp + " to " + final_dir + ": " + std::strerror(err) + ".");
      }
      posix::remove_tree(old);
    }
  } else if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    throw CheckpointError("cannot rename " + tmp + " to " + final_dir + ": " + std::strerror(errno) + ".");
  }
  fsync_directory(policy_.save_dir);
  write_file_atomic(join(policy_.save_dir, kLatestFile), checkpoint_dir_name(step) + "\n");
}

// Called with dir_mu_ held. Failures to delete are logged, never fatal: the save succeeded.
void CheckpointManager::apply_retention(int64_t written_step) {
  std::vector<CheckpointInfo> all = scan_whole(policy_.save_dir);
  // Steps above the one just written belong to an abandoned branch (the run was resumed from an
  // older checkpoint); they are neither counted nor deleted here.
  std::vector<const CheckpointInfo*> ranked;
  for (const auto& c : all)
    if (c.step <= written_step) ranked.push_back(&c);
  std::set<int64_t> keep = {written_step};
  if (auto s = latest_step_locked()) keep.insert(*s);
  std::sort(ranked.begin(), ranked.end(), [](auto* a, auto* b) { return a->step > b->step; });
  if (policy_.keep_n_latest == 0) return;  // keep everything
  for (size_t i = 0; i < ranked.size() && i < static_cast<size_t>(policy_.keep_n_latest); ++i) keep.insert(ranked[i]->step);
  if (policy_.keep_best > 0) {
    std::vector<const CheckpointInfo*> scored;
    for (auto* c : ranked)
      if (c->val_loss) scored.push_back(c);
    std::stable_sort(scored.begin(), scored.end(), [](auto* a, auto* b) { return *a->val_loss < *b->val_loss; });
    for (size_t i = 0; i < scored.size() && i < static_cast<size_t>(policy_.keep_best); ++i) keep.insert(scored[i]->step);
  }
  for (auto* c : ranked)
    if (!keep.count(c->step)) remove_checkpoint_dir(checkpoint_dir_name(c->step));
}

void CheckpointManager::remove_checkpoint_dir(const std::string& name) {
  // Rename first: a crash mid-delete then leaves a *.tmp (cleaned at start), never a step-<N>
  // that lost some files.
  const std::string dir = join(policy_.save_dir, name);
  const std::string doomed = dir + ".deleting.tmp";
  posix::remove_tree(doomed);
  if (::rename(dir.c_str(), doomed.c_str()) != 0) {
    log_warning("could not remove old checkpoint " + dir + ": " + std::strerror(errno));
    return;
  }
  std::string err;
  if (!posix::remove_tree(doomed, &err)) log_warning("could not finish removing " + doomed + ": " + err);
}

std::optional<int64_t> CheckpointManager::latest_step_locked() const {
  if (auto name = read_latest_name(policy_.save_dir)) {
    int64_t step;
    if (parse_checkpoint_dir_name(*name, &step) && posix::is_directory(join(policy_.save_dir, *name))) return step;
  }
  const auto whole = scan_whole(policy_.save_dir);
  if (!whole.empty()) return whole.back().step;
  return std::nullopt;
}

std::vector<CheckpointInfo> CheckpointManager::list() const {
  std::lock_guard<std::mutex> g(dir_mu_);
  return scan_whole(policy_.save_dir);
}

std::optional<std::string> CheckpointManager::latest_path() const {
  std::lock_guard<std::mutex> g(dir_mu_);
  if (auto name = read_latest_name(policy_.save_dir)) return join(policy_.save_dir, *name);
  return std::nullopt;
}

std::optional<CheckpointInfo> CheckpointManager::latest_valid(std::vector<std::string>* skipped) const {
  std::lock_guard<std::mutex> g(dir_mu_);
  auto note = [&](const std::string& msg) {
    if (skipped) skipped->push_back(msg);
  };
  const auto dirs = step_dirs(policy_.save_dir);  // ascending
  std::vector<std::string> order;
  const auto latest = read_latest_name(policy_.save_dir);
  int64_t latest_step = -1;
  if (latest) {
    parse_checkpoint_dir_name(*latest, &latest_step);
    const bool exists = std::any_of(dirs.begin(), dirs.end(), [&](auto& d) { return d.second == *latest; });
    if (exists) {
      order.push_back(*latest);
    } else {
      note("skipped " + join(policy_.save_dir, kLatestFile) + ": it names " + *latest +
           ", which does not exist (deleted by hand?); trying older checkpoints.");
    }
  }
  // Fall back to older steps only: a higher step not named by `latest` is either from an
  // abandoned branch or was published a moment before a crash, and resuming from it would mix
  // timelines.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    if (latest && it->first >= latest_step) continue;
    order.push_back(it->second);
  }
  for (const auto& name : order) {
    CheckpointInfo info = verify_checkpoint(join(policy_.save_dir, name), VerifyLevel::VERIFY_LEVEL_SHA256);
    if (info.verified) return info;
    note("skipped checkpoint " + info.path + ": " + info.error);
  }
  return std::nullopt;
}

CheckpointInfo CheckpointManager::verify(const std::string& checkpoint_dir) {
  return verify_checkpoint(checkpoint_dir, VerifyLevel::VERIFY_LEVEL_SHA256);
}

CheckpointPayload CheckpointManager::load(const std::string& checkpoint_dir) {
  const CheckpointInfo info = verify(checkpoint_dir);
  if (!info.verified) {
    const std::string parent = posix::parent_directory(checkpoint_dir);
    throw CheckpointError("cannot load checkpoint " + checkpoint_dir + ": " + info.error +
                          " Resume from an older checkpoint (`fathom-engine inspect " + parent + "` lists them).");
  }
  const Manifest m = read_manifest(checkpoint_dir);
  CheckpointPayload p;
  p.step = m.step;
  p.val_loss = m.val_loss;
  p.model = load_tensors(join(checkpoint_dir, kModelFile));
  if (m.find(kOptimizerFile)) p.optimizer = load_tensors(join(checkpoint_dir, kOptimizerFile));
  const std::string state_path = join(checkpoint_dir, kStateFile);
  std::ifstream in(state_path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    p.state = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(state_path + ": not valid JSON (" + e.what() + ").");
  }
  if (p.state.value("format", std::string()) != kStateFormat) {
    throw CheckpointError(state_path + ": \"format\" is not \"" + kStateFormat + "\"; not a Fathom checkpoint.");
  }
  return p;
}

}  // namespace fathom::ckpt
