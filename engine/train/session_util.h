// Small pieces of a training session that are not training: run ids, atomic files, the terminal
// progress line, device descriptions, peak FLOPs, tensor-name matching.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "engine/config/config.h"
#include "engine/data/batch_loader.h"
#include "engine/data/prepare.h"
#include "engine/data/token_shards.h"
#include "engine/protocol/payloads.h"

namespace fathom::train {

std::string utc_stamp();  // 20261129-231405
void write_file_atomic(const std::string& path, const std::string& content);
// Duplicate stderr into `path` (append) while still printing it; for interactive runs. What is
// still in the tee when the process leaves by exit() or std::quick_exit() is drained first (leave
// with std::quick_exit, not std::_Exit, to keep the last lines).
void tee_stderr_to(const std::string& path);
// True when descriptor `fd` is the file at `path` (same device and inode).
bool same_file(int fd, const std::string& path);
// Stable name of the prepared-data directory for a config's data + tokenizer settings.
std::string dataset_key(const config::RunConfig& cfg);
data::TokenSource shard_source(const data::TokenShard& shard);
// The data preparation a config asks for: inputs, split, tokenizer; shards under
// <workspace>/data/<dataset_key> unless data.shards_dir is set; a trained BPE beside them unless
// tokenizer.path is set. Shared by `train` and `prepare` so both find the same shards.
data::PrepareOptions prepare_options(const config::RunConfig& cfg, const std::string& workspace);
std::vector<protocol::DeviceInfo> describe_devices(const torch::Device& used);
// Dense peak FLOP/s of the device for the compute dtype (datasheet), 0 when unknown (CPU).
double peak_flops(const torch::Device& device, torch::ScalarType dtype);
int64_t peak_rss_bytes();
// Copies tensors by name into `dst`; every dst name must be present with the same shape.
void load_named(std::vector<std::pair<std::string, torch::Tensor>>& dst,
                const std::vector<std::pair<std::string, torch::Tensor>>& src, const std::string& where);

// "\r[train] step 120/1000  loss 3.2104  lr 3.0e-04  1.2K tok/s  eta 4m10s" on a terminal only.
class ProgressLine {
 public:
  explicit ProgressLine(std::string label);
  void update(double fraction, const std::string& stage);
  void update_step(int64_t step, int64_t max_steps, double loss, double lr, double tokens_per_s);
  void done();

 private:
  std::string label_;
  bool tty_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

std::string human_count(double v);     // 1.2K, 3.4M
std::string human_duration(double s);  // 4m10s

}  // namespace fathom::train
