// Deterministic random-window batches with a prefetch thread (see batch_loader.h).
#include "engine/data/batch_loader.h"

#include <stdexcept>

namespace fathom::data {
namespace {

// SplitMix64 (Steele et al. 2014): a fast, well-mixed 64-bit hash used as a counter-based RNG.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

BatchLoader::BatchLoader(TokenSource source, BatchLoaderOptions options)
    : source_(std::move(source)), opt_(options) {
  if (opt_.seq_len <= 0 || opt_.micro_batch_size <= 0) throw std::invalid_argument("seq_len and micro_batch_size must be positive");
  if (source_.size < static_cast<size_t>(opt_.seq_len) + 2)
    throw std::runtime_error("the training split has " + std::to_string(source_.size) + " tokens, fewer than seq_len+2 = " +
                             std::to_string(opt_.seq_len + 2) + "; add data or lower data.seq_len");
}

BatchLoader::~BatchLoader() { stop_worker(); }

size_t BatchLoader::window_offset(int64_t step, int micro, int64_t row) const {
  // Global row index across ranks and micro-steps, so that 2 ranks × B rows see the same windows as
  // 1 rank × 2B rows of the same step (data-parallel equivalence).
  const uint64_t rows_per_micro = static_cast<uint64_t>(opt_.micro_batch_size) * opt_.world_size;
  const uint64_t global_row = (static_cast<uint64_t>(step) * opt_.gradient_accumulation_steps + micro) * rows_per_micro +
                              static_cast<uint64_t>(opt_.rank) * opt_.micro_batch_size + row;
  const uint64_t h = splitmix64(splitmix64(opt_.seed) ^ global_row);
  const uint64_t span = source_.size - static_cast<uint64_t>(opt_.seq_len) - 1;
  return static_cast<size_t>(h % span);
}

Batch BatchLoader::make(int64_t step, int micro) const {
  const int64_t B = opt_.micro_batch_size, T = opt_.seq_len;
  auto buf = torch::empty({B, T + 1}, torch::kInt64);
  auto* p = buf.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) source_.copy(window_offset(step, micro, b), T + 1, p + b * (T + 1));
  Batch batch;
  batch.step = step;
  batch.micro = micro;
  if (opt_.device.is_cuda()) buf = buf.pin_memory();
  batch.inputs = buf.narrow(1, 0, T);
  batch.targets = buf.narrow(1, 1, T);
  return batch;
}

void BatchLoader::start(int64_t step) {
  stop_worker();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.clear();
    stopping_ = false;
    error_ = nullptr;
  }
  thread_ = std::thread([this, step] { worker(step); });
}

void BatchLoader::worker(int64_t first_step) {
  try {
    for (int64_t step = first_step;; ++step) {
      for (int micro = 0; micro < opt_.gradient_accumulation_steps; ++micro) {
        Batch b = make(step, micro);
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || static_cast<int>(queue_.size()) < opt_.prefetch; });
        if (stopping_) return;
        queue_.push_back(std::move(b));
        cv_.notify_all();
      }
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch BatchLoader::next() {
  Batch b;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty() || error_ != nullptr; });
    if (queue_.empty() && error_) std::rethrow_exception(error_);
    b = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
  }
  if (opt_.device.is_cuda()) {
    b.inputs = b.inputs.to(opt_.device, /*non_blocking=*/true);
    b.targets = b.targets.to(opt_.device, /*non_blocking=*/true);
  }
  return b;
}

void BatchLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace fathom::data
