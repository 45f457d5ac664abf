// CheckpointManager: when to save, atomic step-<N> directories with a MANIFEST, asynchronous
// writes from a CPU snapshot, retention, and finding the newest whole checkpoint to resume from.
// One writing process per save_dir (rank 0); enforced with a lock file.
#pragma once
#include <torch/types.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/checkpoint/manifest.h"
#include "engine/checkpoint/tensor_io.h"

namespace fathom::ckpt {

// The brief's CheckpointManager(save_dir="./checkpoints", save_interval=3600, keep_n_latest=5).
struct CheckpointPolicy {
  std::string save_dir = "./checkpoints";
  int64_t save_interval_s = 3600;  // due when this many seconds passed since the last save; 0 = off
  int64_t save_every_steps = 500;  // due at every multiple of this step; 0 = off
  int keep_n_latest = 5;           // newest checkpoints kept by step; 0 = keep all
  int keep_best = 0;               // plus this many with the lowest val_loss
  bool async = true;               // write on a background thread after a CPU snapshot
};

struct CheckpointPayload {
  int64_t step = 0;
  NamedTensors model, optimizer;  // Hugging Face tensor names for the model, so exports load elsewhere
  nlohmann::json state;           // object: tokens, data cursor, RNG state, loss scaler, config hash, parent...
  std::optional<double> val_loss;
  // Also written and listed in the manifest: small text files (name, contents), and the model
  // tensors again under another file name with a prefix on every name — a LoRA fine-tune's
  // adapter_model.safetensors (prefix "base_model.model.") + adapter_config.json, so PEFT loads
  // the checkpoint directory as it is.
  std::vector<std::pair<std::string, std::string>> extra_text_files;
  std::string model_copy_file, model_copy_prefix;
};

class CheckpointManager {
 public:
  // Creates save_dir if needed. Takes <save_dir>/.lock; if another process holds it the manager
  // can still list/verify/load but save() throws. With the lock, stale "*.tmp" directories left by
  // a crash are removed.
  explicit CheckpointManager(CheckpointPolicy policy);
  // Waits for a pending write; its errors are printed to stderr (call wait() to handle them).
  ~CheckpointManager();
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // True at every multiple of save_every_steps, or when save_interval_s passed since the last
  // save (or since construction), never twice for one step. All ranks must agree: distributed
  // trainers should broadcast rank 0's answer since clocks differ.
  bool due(int64_t step, std::chrono::steady_clock::time_point now) const;

  // Snapshots the tensors to CPU (so training may continue and mutate its own), then writes on a
  // background thread (or inline when !async). Returns when the snapshot is done; if the previous
  // write is still running it waits for it first, so at most one snapshot is held in memory.
  // on_done runs on the writing thread with the result and the write's duration; a failed write
  // has info.verified == false and info.error set, leaves the previous checkpoints untouched and
  // removes its partial files. Without on_done, a failure is thrown (inline: from save(); async:
  // from the next save() or wait()).
  void save(CheckpointPayload payload, std::function<void(const CheckpointInfo&, double seconds)> on_done = {});
  // All pending writes finished (call before exit); rethrows an unreported write failure.
  void wait();

  // Whole checkpoints only (manifest present, every file there with its recorded size; sha256 is
  // not checked, so verified is false), sorted by step.
  std::vector<CheckpointInfo> list() const;
  // The newest checkpoint whose manifest verifies (sizes + sha256). Starts with the one named by
  // <save_dir>/latest and falls back to older steps; each one skipped adds a message naming the
  // file and what is wrong. Without a readable `latest`, tries every step from the highest.
  std::optional<CheckpointInfo> latest_valid(std::vector<std::string>* skipped_messages = nullptr) const;
  // The directory named by <save_dir>/latest, if that file exists and names a step directory.
  std::optional<std::string> latest_path() const;

  static CheckpointInfo verify(const std::string& checkpoint_dir);
  // Verifies first; throws CheckpointError naming the damaged file. The tensors are owning CPU
  // tensors; state is state.json as written (with "format", "version", "step").
  static CheckpointPayload load(const std::string& checkpoint_dir);

  const CheckpointPolicy& policy() const { return policy_; }
  bool can_write() const { return lock_fd_ >= 0; }

 private:
  struct Job;
  CheckpointInfo write_checkpoint(const Job& job);
  void publish(const std::string& tmp_dir, const std::string& final_dir, int64_t step);
  void apply_retention(int64_t written_step);
  void remove_checkpoint_dir(const std::string& name);
  std::optional<int64_t> latest_step_locked() const;
  void finish_pending();

  CheckpointPolicy policy_;
  int lock_fd_ = -1;
  std::string lock_error_;
  int64_t last_save_step_ = 0;
  std::chrono::steady_clock::time_point last_save_time_;
  std::thread worker_;
  std::mutex error_mu_;
  std::exception_ptr pending_error_;
  mutable std::mutex dir_mu_;  // renames, `latest`, retention vs list()/latest_valid()
};

}  // namespace fathom::ckpt
