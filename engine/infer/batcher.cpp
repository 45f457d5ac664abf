// Continuous batching scheduler (see batcher.h).
#include "engine/infer/batcher.h"

#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <iostream>

#include "engine/model/linear.h"

namespace fathom::infer {

void Batcher::Request::push(TokenEvent ev) {
  {
    std::lock_guard<std::mutex> g(mu);
    events.push_back(std::move(ev));
  }
  cv.notify_all();
}

void Batcher::Request::close(const std::string& err) {
  {
    std::lock_guard<std::mutex> g(mu);
    closed = true;
    error = err;
  }
  cv.notify_all();
}

Batcher::Batcher(model::Transformer net, const tok::Tokenizer& tokenizer, BatcherOptions options)
    : net_(std::move(net)), tokenizer_(tokenizer), opt_(options), device_(net_->model->embed_tokens->weight.device()) {
  if (opt_.max_batch < 1) throw std::invalid_argument("max_batch must be at least 1");
  context_ = net_->args().max_seq_len;
  seq_dim_ = net_->args().attention == "mla" ? 1 : 2;
  if (opt_.max_kv_tokens <= 0) opt_.max_kv_tokens = opt_.max_batch * context_;
  counters_.kv_tokens_budget = opt_.max_kv_tokens;
  counters_.batch_size_counts.assign(static_cast<size_t>(opt_.max_batch + 1), 0);
  net_->eval();
  thread_ = std::thread([this] { loop(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& h : waiting_) {
    h->seq.finish("cancelled");
    h->close("the server is shutting down");
  }
}

Batcher::Handle Batcher::submit(std::vector<int64_t> prompt, const SamplingParams& params, int adapter) {
  auto h = std::make_shared<Request>(tokenizer_, std::move(prompt), params, context_, adapter);
  const int64_t need = h->seq.reserved_tokens();
  if (need > opt_.max_kv_tokens)
    throw std::invalid_argument("the request needs " + std::to_string(need) + " KV-cache tokens (prompt + max_tokens); the server's budget is " +
                                std::to_string(opt_.max_kv_tokens) + " — lower max_tokens");
  {
    std::lock_guard<std::mutex> g(mu_);
    // Requests not admitted yet fill the free batch slots first; max_queue counts those beyond.
    const int64_t free_slots = std::max<int64_t>(0, opt_.max_batch - static_cast<int64_t>(running_.size()));
    if (static_cast<int64_t>(waiting_.size()) >= opt_.max_queue + free_slots)
      throw QueueFull("the server is busy: " + std::to_string(waiting_.size()) + " requests are waiting (the limit); retry later");
    waiting_.push_back(h);
  }
  cv_.notify_all();
  return h;
}

bool Batcher::next(const Handle& h, TokenEvent* event) {
  std::unique_lock<std::mutex> g(h->mu);
  h->cv.wait(g, [&] { return !h->events.empty() || h->closed; });
  if (h->events.empty()) return false;
  *event = std::move(h->events.front());
  h->events.pop_front();
  return true;
}

void Batcher::cancel(const Handle& h) {
  h->cancelled = true;
  cv_.notify_all();
}

GenerateResult Batcher::wait(const Handle& h) {
  std::unique_lock<std::mutex> g(h->mu);
  h->cv.wait(g, [&] { return h->closed; });
  h->events.clear();
  return h->seq.result();
}

std::string Batcher::error(const Handle& h) const {
  std::lock_guard<std::mutex> g(h->mu);
  return h->error;
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  BatcherStats s = counters_;
  s.running = static_cast<int64_t>(running_.size());
  s.queued = static_cast<int64_t>(waiting_.size());
  s.kv_tokens_reserved = reserved_;
  return s;
}

void Batcher::loop() {
  torch::NoGradGuard ng;
  // This thread's current device is the model's: its streams (and the CUDA graphs' capture and
  // replay) are that device's, not device 0's.
  c10::OptionalDeviceGuard on_device;
  if (device_.is_cuda()) on_device.reset_device(device_);
  for (;;) {
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [&] { return stop_ || !waiting_.empty() || !running_.empty(); });
      if (stop_) break;
    }
    try {
      admit();
      if (!running_.empty()) decode_step();
    } catch (const std::exception& e) {
      fail_all(e.what());
    }
  }
  std::lock_guard<std::mutex> g(mu_);
  while (!running_.empty()) retire(running_.size() - 1, "cancelled");
}

void Batcher::admit() {
  for (;;) {
    Handle h;
    {
      std::lock_guard<std::mutex> g(mu_);
      // Cancelled while queued: finish without running.
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if ((*it)->cancelled) {
          (*it)->seq.finish("cancelled");
          (*it)->close();
          it = waiting_.erase(it);
        } else {
          ++it;
        }
      }
      if (waiting_.empty() || static_cast<int64_t>(running_.size()) >= opt_.max_batch) return;
      // First come, first served: the head waits for room rather than being overtaken.
      const int64_t need = waiting_.front()->seq.reserved_tokens();
      if (reserved_ + need > opt_.max_kv_tokens) return;
      h = waiting_.front();
      waiting_.pop_front();
      reserved_ += need;
      running_.push_back(h);
    }
    prefill(h);
  }
}

void Batcher::ensure_capacity(int64_t positions) {
  positions = std::min(positions, context_);
  if (!cache_.layers.empty() && cache_.capacity >= positions) return;
  int64_t capacity = cache_.layers.empty() ? std::min<int64_t>(context_, 256) : cache_.capacity;
  while (capacity < positions) capacity = std::min(context_, capacity * 2);
  graphs_.clear();  // captured over the old cache's memory; their pools go before the new cache comes
  auto grown = net_->new_cache(opt_.max_batch, capacity);
  if (!cache_.layers.empty()) {
    for (size_t l = 0; l < cache_.layers.size(); ++l) {
      grown.layers[l].first.narrow(seq_dim_, 0, cache_.capacity).copy_(cache_.layers[l].first);
      grown.layers[l].second.narrow(seq_dim_, 0, cache_.capacity).copy_(cache_.layers[l].second);
    }
  }
  cache_ = std::move(grown);
  std::lock_guard<std::mutex> g(mu_);
  counters_.kv_slot_capacity = cache_.capacity;
  counters_.kv_bytes = cache_.bytes();
}

void Batcher::prefill(const Handle& h) {
  ensure_capacity(h->seq.reserved_tokens());
  const int64_t row = static_cast<int64_t>(running_.size()) - 1;  // admit() appended it
  const auto& prompt = h->seq.prompt();
  const auto P = static_cast<int64_t>(prompt.size());
  model::KvCache view;
  view.capacity = cache_.capacity;
  for (auto& [a, b] : cache_.layers) view.layers.emplace_back(a.narrow(0, row, 1), b.narrow(0, row, 1));
  std::unique_ptr<model::AdapterRows> rows;
  if (h->adapter >= 0) rows = std::make_unique<model::AdapterRows>(torch::tensor({int64_t{h->adapter}}, torch::kInt64).to(device_));
  auto logits = net_->forward_cached(torch::tensor(prompt, torch::kInt64).unsqueeze(0).to(device_), view).select(1, P - 1).squeeze(0);
  rows.reset();
  const int64_t V = h->seq.vocab_limit();
  const auto step = h->seq.greedy_only()
                        ? h->seq.advance_greedy((V > 0 && logits.size(0) > V ? logits.narrow(0, 0, V) : logits).argmax().item<int64_t>())
                        : h->seq.advance(logits);
  if (step.has_event) h->push(step.event);
  std::lock_guard<std::mutex> g(mu_);
  ++counters_.prefills;
  if (step.has_event) ++counters_.generated_tokens;
  if (h->seq.done()) retire(static_cast<size_t>(row), "length");
}

void Batcher::decode_step() {
  // Requests whose client went away leave before the step.
  {
    std::lock_guard<std::mutex> g(mu_);
    for (size_t i = running_.size(); i-- > 0;)
      if (running_[i]->cancelled) retire(i, "cancelled");
    if (running_.empty()) return;
  }
  const auto B = static_cast<int64_t>(running_.size());
  std::vector<int64_t> inputs, positions, adapters;
  bool any_adapter = false;
  for (const auto& h : running_) {
    inputs.push_back(h->seq.next_input());
    positions.push_back(h->seq.position());
    adapters.push_back(h->adapter);
    any_adapter = any_adapter || h->adapter >= 0;
  }
  // On CUDA the step is a graph replay (one launch for the whole step, rows padded to a power of
  // two); eager where graphs do not apply.
  torch::Tensor logits = any_adapter ? torch::Tensor() : graph_step(inputs, positions);
  const bool graphed = logits.defined();
  if (graphed) {
    logits = logits.narrow(0, 0, B);
  } else {
    const auto step = model::DecodeStep::make(positions, device_);
    std::unique_ptr<model::AdapterRows> rows;
    if (any_adapter) rows = std::make_unique<model::AdapterRows>(torch::tensor(adapters, torch::kInt64).to(device_));
    logits = net_->forward_decode(torch::tensor(inputs, torch::kInt64).view({B, 1}).to(device_), cache_, step);
  }
  // Greedy rows: one argmax over the batch on the device, B ids to the host. The other rows are
  // sampled on the host from their own logits (penalties, filters, logprobs).
  const int64_t V = running_.front()->seq.vocab_limit();
  std::vector<int64_t> sampled_rows;
  for (int64_t b = 0; b < B; ++b)
    if (!running_[static_cast<size_t>(b)]->seq.greedy_only()) sampled_rows.push_back(b);
  torch::Tensor argmax, host_rows;
  if (static_cast<int64_t>(sampled_rows.size()) < B)
    argmax = (V > 0 && logits.size(1) > V ? logits.narrow(1, 0, V) : logits).argmax(1).to(torch::kCPU);
  if (!sampled_rows.empty())
    host_rows = logits.index_select(0, torch::tensor(sampled_rows, torch::kInt64).to(logits.device())).to(torch::kCPU);
  int64_t produced = 0;
  size_t next_sampled = 0;
  for (int64_t b = 0; b < B; ++b) {
    auto& seq = running_[static_cast<size_t>(b)]->seq;
    const bool host = next_sampled < sampled_rows.size() && sampled_rows[next_sampled] == b;
    const auto s = host ? seq.advance(host_rows[static_cast<int64_t>(next_sampled++)]) : seq.advance_greedy(argmax[b].item<int64_t>());
    if (s.has_event) {
      running_[static_cast<size_t>(b)]->push(s.event);
      ++produced;
    }
  }
  std::lock_guard<std::mutex> g(mu_);
  ++counters_.decode_steps;
  if (graphed) ++counters_.graph_steps;
  counters_.generated_tokens += produced;
  ++counters_.batch_size_counts[static_cast<size_t>(B)];
  int64_t used = 0;
  for (size_t i = running_.size(); i-- > 0;)
    if (running_[i]->seq.done()) retire(i, "length");
  for (const auto& h : running_) used += h->seq.position() + 1;
  counters_.kv_tokens_used = used;
}

torch::Tensor Batcher::graph_step(const std::vector<int64_t>& inputs, const std::vector<int64_t>& positions) {
  if (graphs_off_ || !device_.is_cuda()) return {};
  const auto B = static_cast<int64_t>(inputs.size());
  int64_t rows = 1;
  while (rows < B) rows *= 2;
  rows = std::min(rows, opt_.max_batch);
  try {
    auto& g = graphs_[rows];
    if (!g) g = GraphDecoder::create(net_, cache_, nullptr, rows);
    if (g) return g->step_rows(inputs, positions);
  } catch (const std::exception& e) {
    // A step that cannot be captured: serve on, eagerly (the eager step rewrites the same cache
    // entries the graph's warm-up may have written).
    std::cerr << "warning: CUDA-graph decoding of " << rows << " rows failed (" << e.what()
              << "); the batcher continues without graphs\n";
  }
  graphs_off_ = true;  // graphs do not apply to this model, or one failed: eager from now on
  graphs_.clear();
  return {};
}

// With mu_ held. Moves the last row into `row` so the running rows stay 0..n-1.
void Batcher::retire(size_t row, const std::string& reason) {
  Handle h = running_[row];
  const size_t last = running_.size() - 1;
  if (row != last) {
    copy_row(static_cast<int64_t>(last), static_cast<int64_t>(row), running_[last]->seq.position() + 1);
    running_[row] = running_[last];
  }
  running_.pop_back();
  reserved_ -= h->seq.reserved_tokens();
  const auto tail = h->seq.finish(reason);
  if (tail.has_event) h->push(tail.event);
  h->close();
}

void Batcher::copy_row(int64_t from, int64_t to, int64_t length) {
  length = std::min(length, cache_.capacity);
  if (length <= 0) return;
  for (auto& [a, b] : cache_.layers) {
    a.select(0, to).narrow(seq_dim_ - 1, 0, length).copy_(a.select(0, from).narrow(seq_dim_ - 1, 0, length));
    b.select(0, to).narrow(seq_dim_ - 1, 0, length).copy_(b.select(0, from).narrow(seq_dim_ - 1, 0, length));
  }
}

void Batcher::fail_all(const std::string& what) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto& h : running_) {
    reserved_ -= h->seq.reserved_tokens();
    h->seq.finish("error");
    h->close(what);
  }
  running_.clear();
}

}  // namespace fathom::infer
