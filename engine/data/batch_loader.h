// Training batches: random windows of seq_len+1 tokens from a token stream. The window of every
// (step, micro-step, rank, row) is a pure function of the seed, so the loader's position in a
// checkpoint is just the step, resume is exact, and ranks never need to coordinate. A background
// thread prepares batches ahead (into pinned memory when the target is CUDA).
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace fathom::data {

// A read-only token stream: size() tokens, copy(begin, n, out) widens them to int64.
struct TokenSource {
  size_t size = 0;
  std::function<void(size_t begin, size_t n, int64_t* out)> copy;
};

struct Batch {
  torch::Tensor inputs;   // (B, T) int64
  torch::Tensor targets;  // (B, T) int64, inputs shifted left by one
  // Packed instruction data only (see data/instruct.h): document id per token (−1 = padding) and
  // positions restarting at 0 in each document. Undefined for plain text.
  torch::Tensor segments, positions;
  int64_t step = 0;
  int micro = 0;
};

struct BatchLoaderOptions {
  int64_t seq_len = 0;
  int64_t micro_batch_size = 0;
  int gradient_accumulation_steps = 1;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  int prefetch = 4;  // batches prepared ahead
  torch::Device device = torch::kCPU;
};

class BatchLoader {
 public:
  BatchLoader(TokenSource source, BatchLoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Start (or restart) the stream at optimizer step `step`; batches then come in the order
  // (step, micro 0..accum-1), (step+1, 0..), ...
  void start(int64_t step);
  Batch next();

  // The same batch next() would give for (step, micro), computed synchronously (eval, tests).
  Batch make(int64_t step, int micro) const;
  // Start offset of row `row` of (step, micro) for this rank.
  size_t window_offset(int64_t step, int micro, int64_t row) const;

 private:
  void stop_worker();
  void worker(int64_t first_step);

  TokenSource source_;
  BatchLoaderOptions opt_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace fathom::data
