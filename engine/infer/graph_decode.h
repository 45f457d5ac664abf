// Batch-1 decode steps replayed from CUDA graphs (issue #10).
//
// Decoding one token of a small model is launch-bound: ~15 kernels a layer, each a few microseconds
// of work behind a few microseconds of host launch. A CUDA graph records the whole step once and
// replays it with one launch. What changes between steps lives on the device: the input token and
// its position are static tensors that are overwritten before each replay, the KV cache is the
// static, preallocated one, and the attention mask is computed from the position inside the graph.
// The keys attended to are a fixed span per graph (a power-of-two bucket ≥ position + 1, masked),
// so a handful of graphs covers the whole context.
//
//   auto g = GraphDecoder::create(net, cache);           // null where graphs do not apply
//   logits = g ? g->step(token, cache.length) : ...;     // then cache.length += 1
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/transformer.h"

namespace fathom::infer {

class GraphDecoder {
 public:
  // A decoder for rows 0..rows-1 of `cache`, or null (with the reason in *why) where graphs do not
  // apply: not a CUDA model, a LibTorch without CUDA, MoE layers (their routing reads expert counts
  // on the host), adapter banks, fewer cache rows than `rows`, or FATHOM_CUDA_GRAPHS=0.
  static std::unique_ptr<GraphDecoder> create(model::Transformer& net, model::KvCache& cache, std::string* why = nullptr,
                                              int64_t rows = 1);
  ~GraphDecoder();
  GraphDecoder(const GraphDecoder&) = delete;
  GraphDecoder& operator=(const GraphDecoder&) = delete;

  // Feeds `token` at position `pos` (the cache holds positions 0..pos-1) and returns the next-token
  // logits (V,), a view of the graph's output valid until the next step. The first step of each
  // span bucket warms up and captures its graph.
  torch::Tensor step(int64_t token, int64_t pos);
  // A step of several sequences at once (the continuous batcher): row i feeds tokens[i] at
  // positions[i] (its cache row holds 0..positions[i]-1); n = tokens.size() ≤ rows. Rows n..rows-1
  // are padding: they feed token 0 at position 0 of their cache rows, which must be free (the
  // batcher's rows past its running ones). Returns the logits (rows, V), a view valid until the
  // next step; rows ≥ n are meaningless. One graph per key-span bucket, as step().
  torch::Tensor step_rows(const std::vector<int64_t>& tokens, const std::vector<int64_t>& positions);
  int graphs() const;  // captured so far

  // Greedy decoding with the choice made on the device. Each replay also takes the argmax of the
  // logits' first `vocab` entries, writes it as the next input and advances the position, so the
  // next step can be queued before the host has read this one's token: the GPU does not wait for
  // the host between tokens.
  //   g->greedy_start(token, pos, vocab);  // the first input, at position pos
  //   g->greedy_enqueue();                 // queue the step at the next position (≤ 4 in flight)
  //   int64_t t = g->greedy_wait();        // the oldest queued step's token, in order
  // A step queued past the end of a sequence only writes the cache past it. step() may be used
  // again after greedy_start() (it sets token and position itself).
  void greedy_start(int64_t token, int64_t pos, int64_t vocab);
  void greedy_enqueue();
  int64_t greedy_wait();
  int greedy_in_flight() const;
  int64_t greedy_position() const;  // the position the next greedy_enqueue() feeds

 private:
  GraphDecoder();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Device time of `body` (CUDA work on the current device) in milliseconds: captured once in a CUDA
// graph, then the median over `repeats` of `iters` back-to-back replays, so that host launch cost is
// out of the figure. For benchmarks that split a decode step into its parts; -1 without CUDA.
double time_in_graph(const std::function<void()>& body, int iters = 20, int repeats = 5);

// False when FATHOM_CUDA_GRAPHS=0 (for A/B measurements and as a safety switch).
bool cuda_graphs_enabled();

}  // namespace fathom::infer
