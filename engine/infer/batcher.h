// Continuous batching (Orca, Yu et al. 2022): one scheduler thread owns the model and a KV cache of
// `max_batch` slots. Between decode steps it admits queued requests (prefilling each into a free
// slot) while the batch and the KV budget allow; every decode step advances all running sequences
// by one token together (one weight read for the whole batch); a sequence that finishes (or whose
// client went away) leaves at once and its slot is reused. Slots are padded and masked, not paged:
// the cache holds max_batch × S positions, S growing (doubling) to the longest reservation, and the
// budget counts each request's prompt + max_tokens.
//
// Each request may pick a LoRA adapter of the model's adapter bank (model::AdapterRows); rows with
// different adapters share the batch.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/infer/generator.h"
#include "engine/infer/graph_decode.h"

namespace fathom::infer {

struct BatcherOptions {
  int64_t max_batch = 8;       // sequences decoded together
  int64_t max_kv_tokens = 0;   // KV budget over running requests (prompt + max_tokens each); 0 = max_batch × context
  int64_t max_queue = 256;     // requests waiting beyond the batch; more are refused (QueueFull)
};

// submit() when the queue is at its cap (the server answers 503 / 429).
struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct BatcherStats {
  int64_t running = 0, queued = 0;
  int64_t kv_tokens_used = 0;      // positions filled over running sequences
  int64_t kv_tokens_reserved = 0;  // their prompt + max_tokens
  int64_t kv_tokens_budget = 0;
  int64_t kv_slot_capacity = 0;    // positions per slot allocated now
  int64_t kv_bytes = 0;            // cache memory allocated
  int64_t decode_steps = 0, prefills = 0, generated_tokens = 0;
  int64_t graph_steps = 0;  // decode steps replayed from CUDA graphs
  std::vector<int64_t> batch_size_counts;  // [b] = decode steps that ran with b sequences
};

class Batcher {
 public:
  class Request;
  using Handle = std::shared_ptr<Request>;

  // `net` in eval mode on its device; the tokenizer must outlive the batcher.
  Batcher(model::Transformer net, const tok::Tokenizer& tokenizer, BatcherOptions options);
  ~Batcher();  // stops the scheduler; unfinished requests end "cancelled"
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request. adapter: index into the model's adapter bank, -1 = the base model.
  // Throws std::invalid_argument (prompt empty or too long, or more KV than the whole budget) and
  // QueueFull.
  Handle submit(std::vector<int64_t> prompt, const SamplingParams& params, int adapter = -1);
  // Next event of a request (blocking). false = finished: no more events, result() is final.
  bool next(const Handle& h, TokenEvent* event);
  // Ends a request early (a client that went away); it finishes "cancelled" before the next step.
  void cancel(const Handle& h);
  // Blocks until the request finished; its result (events are dropped).
  GenerateResult wait(const Handle& h);
  // Empty, or why the request failed (e.g. an exception in the model).
  std::string error(const Handle& h) const;

  BatcherStats stats() const;
  const BatcherOptions& options() const { return opt_; }

 private:
  struct Slot;
  void loop();
  void admit();
  void prefill(const Handle& h);
  void decode_step();
  void retire(size_t row, const std::string& reason);
  void ensure_capacity(int64_t positions);
  void copy_row(int64_t from, int64_t to, int64_t length);
  void fail_all(const std::string& what);
  // The decode step replayed from a CUDA graph of `rows` ≥ B rows (a power of two, padded): the
  // logits (rows, V), or undefined where graphs do not apply (CPU, MoE, adapter banks,
  // FATHOM_CUDA_GRAPHS=0), after which the batcher stays eager.
  torch::Tensor graph_step(const std::vector<int64_t>& inputs, const std::vector<int64_t>& positions);

  model::Transformer net_;
  const tok::Tokenizer& tokenizer_;
  BatcherOptions opt_;
  torch::Device device_;
  int64_t context_ = 0;
  int seq_dim_ = 2;  // position dimension of the cache tensors (2 for mha, 1 for mla)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Handle> waiting_;
  std::vector<Handle> running_;  // row i of the cache belongs to running_[i]
  model::KvCache cache_;
  std::map<int64_t, std::unique_ptr<GraphDecoder>> graphs_;  // rows → decoder over cache_ (dropped when it grows)
  bool graphs_off_ = false;
  int64_t reserved_ = 0;
  BatcherStats counters_;
  bool stop_ = false;
  std::thread thread_;
};

class Batcher::Request {
 public:
  Request(const tok::Tokenizer& tk, std::vector<int64_t> prompt, const SamplingParams& p, int64_t context, int adapter)
      : seq(tk, std::move(prompt), p, context), adapter(adapter) {}
  void push(TokenEvent ev);
  void close(const std::string& error = "");

  Sequence seq;  // touched by the scheduler thread only (until closed)
  const int adapter;
  std::atomic<bool> cancelled{false};

  std::mutex mu;
  std::condition_variable cv;
  std::deque<TokenEvent> events;
  bool closed = false;
  std::string error;
};

}  // namespace fathom::infer
