// CUDA-graph decode steps (see graph_decode.h).
#include "engine/infer/graph_decode.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include "engine/model/linear.h"

#if defined(FATHOM_HAVE_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fathom::infer {

bool cuda_graphs_enabled() {
  const char* v = std::getenv("FATHOM_CUDA_GRAPHS");
  return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0));
}

#if defined(FATHOM_HAVE_CUDA)

struct GraphDecoder::Impl {
  model::Transformer net{nullptr};
  model::KvCache* cache = nullptr;
  int64_t rows = 1;
  torch::Tensor token, pos, arange;  // static inputs (rows, 1), (rows); key positions 0..capacity-1
  struct Captured {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    torch::Tensor logits;  // (rows, V), in the graphs' memory pool
  };
  std::map<int64_t, Captured> graphs;  // span → graph
  std::map<int64_t, Captured> greedy_graphs;  // span → graph that also picks and feeds the next token
  decltype(at::cuda::graph_pool_handle()) pool;

  // Greedy pipeline: tokens come back through pinned host slots, each with its event.
  static constexpr int kSlots = 4;
  int64_t greedy_vocab = -1;
  int64_t greedy_pos = 0;  // position of the input the next enqueue feeds
  torch::Tensor host_tokens;  // (kSlots) int64, pinned
  std::vector<at::cuda::CUDAEvent> events;
  std::deque<int> in_flight;  // slots, oldest first
  int next_slot = 0;

  // The greedy step: the decode step, then argmax → next input, position + 1 (all on the device).
  torch::Tensor run_greedy(int64_t span) {
    auto logits = run(span);
    auto next = logits.narrow(-1, 0, greedy_vocab).argmax(-1);  // (1)
    token.view({1}).copy_(next);
    pos.add_(1);
    return logits;
  }

  torch::Tensor run(int64_t span) {
    model::DecodeStep st;
    st.positions = pos;
    st.span = span;
    st.mask = (arange.narrow(0, 0, span).view({1, span}) <= pos.view({rows, 1})).view({rows, 1, 1, span});
    return net->forward_decode(token, *cache, st);
  }

  int64_t bucket(int64_t keys) const {
    int64_t s = 64;
    while (s < keys) s *= 2;
    return std::min(s, cache->capacity);
  }

  Captured& capture(int64_t span, bool greedy = false) {
    // Capture happens on a side stream, after everything queued on the current one (the inputs).
    auto current = c10::cuda::getCurrentCUDAStream();
    current.synchronize();
    auto side = c10::cuda::getStreamFromPool();
    Captured c;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      // Warm-up: cuBLAS handles and workspaces for this stream, attention back-end choice, the
      // allocator's blocks. It runs the real step, so its cache writes are the replay's. The greedy
      // step's warm-up also moves token and position on: put them back before the capture.
      auto token0 = token.clone(), pos0 = pos.clone();
      for (int i = 0; i < 2; ++i) {
        greedy ? run_greedy(span) : run(span);
        token.copy_(token0);
        pos.copy_(pos0);
      }
      side.synchronize();
      c.graph = std::make_unique<at::cuda::CUDAGraph>();
      c.graph->capture_begin(pool);
      try {
        c.logits = greedy ? run_greedy(span) : run(span);
      } catch (...) {
        // End the stream capture (and the allocator's capture state) before the error goes on:
        // left open, the stream and the caching allocator would stay in capture mode.
        try {
          c.graph->capture_end();
        } catch (...) {
        }
        throw;
      }
      c.graph->capture_end();
    }
    side.synchronize();
    return (greedy ? greedy_graphs : graphs).emplace(span, std::move(c)).first->second;
  }

  // Replays the graph of this span (capturing it the first time) and returns it.
  Captured& replay(int64_t span, bool greedy = false) {
    auto& all = greedy ? greedy_graphs : graphs;
    auto it = all.find(span);
    Captured& c = it != all.end() ? it->second : capture(span, greedy);
    c.graph->replay();
    return c;
  }
};

GraphDecoder::GraphDecoder() : impl_(std::make_unique<Impl>()) {}
GraphDecoder::~GraphDecoder() = default;

std::unique_ptr<GraphDecoder> GraphDecoder::create(model::Transformer& net, model::KvCache& cache, std::string* why,
                                                   int64_t rows) {
  auto no = [why](const std::string& reason) {
    if (why) *why = reason;
    return std::unique_ptr<GraphDecoder>();
  };
  if (!cuda_graphs_enabled()) return no("FATHOM_CUDA_GRAPHS=0");
  const auto& w = net->model->embed_tokens->weight;
  if (!w.is_cuda()) return no("the model is not on a CUDA device");
  if (net->args().moe.n_routed_experts > 0) return no("MoE routing reads expert counts on the host");
  if (cache.layers.empty() || cache.layers[0].first.size(0) < 1) return no("the KV cache is empty");
  if (rows < 1 || cache.layers[0].first.size(0) < rows)
    return no("the KV cache has " + std::to_string(cache.layers[0].first.size(0)) + " rows, not " + std::to_string(rows));
  for (const auto& m : net->modules(/*include_self=*/false))
    if (auto lin = std::dynamic_pointer_cast<model::LinearImpl>(m); lin && lin->has_adapter_bank())
      return no("per-request adapter banks pick rows on the host");
  std::unique_ptr<GraphDecoder> g(new GraphDecoder());
  auto& I = *g->impl_;
  I.net = net;
  I.cache = &cache;
  const auto ints = torch::TensorOptions().dtype(torch::kInt64).device(w.device());
  I.rows = rows;
  I.token = torch::zeros({rows, 1}, ints);
  I.pos = torch::zeros({rows}, ints);
  I.arange = torch::arange(cache.capacity, ints);
  I.pool = at::cuda::graph_pool_handle();
  return g;
}

torch::Tensor GraphDecoder::step(int64_t token, int64_t pos) {
  auto& I = *impl_;
  TORCH_CHECK(I.rows == 1, "GraphDecoder::step is for a one-row decoder; this one has ", I.rows, " rows (step_rows)");
  TORCH_CHECK(pos >= 0 && pos < I.cache->capacity, "KV cache full: position ", pos, " exceeds its capacity ", I.cache->capacity);
  torch::NoGradGuard ng;
  const int64_t span = I.bucket(pos + 1);
  I.token.fill_(token);
  I.pos.fill_(pos);
  return I.replay(span).logits.select(0, 0);
}

torch::Tensor GraphDecoder::step_rows(const std::vector<int64_t>& tokens, const std::vector<int64_t>& positions) {
  auto& I = *impl_;
  const auto n = static_cast<int64_t>(tokens.size());
  TORCH_CHECK(n >= 1 && n <= I.rows && positions.size() == tokens.size(), "step_rows: ", n, " tokens and ", positions.size(),
              " positions for a ", I.rows, "-row decoder");
  int64_t top = 0;
  for (auto p : positions) {
    TORCH_CHECK(p >= 0 && p < I.cache->capacity, "KV cache full: position ", p, " exceeds its capacity ", I.cache->capacity);
    top = std::max(top, p);
  }
  torch::NoGradGuard ng;
  std::vector<int64_t> host(static_cast<size_t>(2 * I.rows), 0);  // tokens, then positions; padding rows 0, 0
  std::copy(tokens.begin(), tokens.end(), host.begin());
  std::copy(positions.begin(), positions.end(), host.begin() + I.rows);
  auto staged = torch::tensor(host, torch::kInt64).to(I.token.device());
  I.token.view({I.rows}).copy_(staged.narrow(0, 0, I.rows));
  I.pos.copy_(staged.narrow(0, I.rows, I.rows));
  return I.replay(I.bucket(top + 1)).logits;
}

int GraphDecoder::graphs() const { return static_cast<int>(impl_->graphs.size() + impl_->greedy_graphs.size()); }

void GraphDecoder::greedy_start(int64_t token, int64_t pos, int64_t vocab) {
  auto& I = *impl_;
  TORCH_CHECK(I.rows == 1, "the greedy pipeline is for a one-row decoder");
  TORCH_CHECK(I.in_flight.empty(), "greedy_start with steps still in flight");
  TORCH_CHECK(vocab > 0, "greedy decoding needs a vocabulary size");
  if (vocab != I.greedy_vocab) I.greedy_graphs.clear();  // captured with another argmax width
  I.greedy_vocab = vocab;
  if (!I.host_tokens.defined()) {
    I.host_tokens = torch::zeros({Impl::kSlots}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(true));
    I.events.resize(Impl::kSlots);
  }
  torch::NoGradGuard ng;
  I.token.fill_(token);
  I.pos.fill_(pos);
  I.greedy_pos = pos;
}

void GraphDecoder::greedy_enqueue() {
  auto& I = *impl_;
  TORCH_CHECK(I.greedy_vocab > 0, "greedy_enqueue before greedy_start");
  TORCH_CHECK(static_cast<int>(I.in_flight.size()) < Impl::kSlots, "greedy_enqueue: ", Impl::kSlots, " steps already in flight");
  TORCH_CHECK(I.greedy_pos < I.cache->capacity, "KV cache full: position ", I.greedy_pos, " exceeds its capacity ",
              I.cache->capacity);
  torch::NoGradGuard ng;
  I.replay(I.bucket(I.greedy_pos + 1), /*greedy=*/true);
  // The chosen token (now the next input) to its pinned slot, behind the replay on this stream;
  // the next replay, queued after this copy, overwrites the input only once it is read.
  const int slot = I.next_slot;
  I.next_slot = (I.next_slot + 1) % Impl::kSlots;
  // (Not token.view({}): the braces pick view(ScalarType) — a reinterpretation as bytes, (1, 8).)
  I.host_tokens.narrow(0, slot, 1).copy_(I.token.flatten(), /*non_blocking=*/true);
  I.events[slot].record(c10::cuda::getCurrentCUDAStream());
  I.in_flight.push_back(slot);
  I.greedy_pos += 1;
}

int64_t GraphDecoder::greedy_wait() {
  auto& I = *impl_;
  TORCH_CHECK(!I.in_flight.empty(), "greedy_wait with no step in flight");
  const int slot = I.in_flight.front();
  I.in_flight.pop_front();
  I.events[slot].synchronize();
  return I.host_tokens.data_ptr<int64_t>()[slot];
}

int GraphDecoder::greedy_in_flight() const { return static_cast<int>(impl_->in_flight.size()); }
int64_t GraphDecoder::greedy_position() const { return impl_->greedy_pos; }

double time_in_graph(const std::function<void()>& body, int iters, int repeats) {
  torch::NoGradGuard ng;
  auto current = c10::cuda::getCurrentCUDAStream();
  current.synchronize();
  auto side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAGraph graph;
  {
    c10::cuda::CUDAStreamGuard guard(side);
    body();
    body();
    side.synchronize();
    graph.capture_begin();
    body();
    graph.capture_end();
    side.synchronize();
  }
  std::vector<double> ms;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    graph.replay();  // warm
    current.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) graph.replay();
    current.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

#else  // a LibTorch without CUDA

struct GraphDecoder::Impl {};
GraphDecoder::GraphDecoder() : impl_(std::make_unique<Impl>()) {}
GraphDecoder::~GraphDecoder() = default;
std::unique_ptr<GraphDecoder> GraphDecoder::create(model::Transformer&, model::KvCache&, std::string* why, int64_t) {
  if (why) *why = "this engine was built without CUDA";
  return nullptr;
}
torch::Tensor GraphDecoder::step(int64_t, int64_t) { TORCH_CHECK(false, "CUDA graphs need a CUDA build"); }
torch::Tensor GraphDecoder::step_rows(const std::vector<int64_t>&, const std::vector<int64_t>&) {
  TORCH_CHECK(false, "CUDA graphs need a CUDA build");
}
int GraphDecoder::graphs() const { return 0; }
void GraphDecoder::greedy_start(int64_t, int64_t, int64_t) { TORCH_CHECK(false, "CUDA graphs need a CUDA build"); }
void GraphDecoder::greedy_enqueue() { TORCH_CHECK(false, "CUDA graphs need a CUDA build"); }
int64_t GraphDecoder::greedy_wait() { TORCH_CHECK(false, "CUDA graphs need a CUDA build"); }
int GraphDecoder::greedy_in_flight() const { return 0; }
int64_t GraphDecoder::greedy_position() const { return 0; }
double time_in_graph(const std::function<void()>&, int, int) { return -1.0; }

#endif

}  // namespace fathom::infer
