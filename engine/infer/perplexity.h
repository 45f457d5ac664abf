// Perplexity of a model on held-out text: the quality side of a quantisation's trade-off.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "engine/model/transformer.h"

namespace fathom::infer {

struct PerplexityResult {
  double mean_nll = 0;   // nats per predicted token
  double perplexity = 0; // exp(mean_nll)
  int64_t tokens = 0;    // tokens predicted
};

// Non-overlapping windows of the model's context over `ids` (at most max_tokens of them), each
// token predicted from the ones before it in its window; fp32 log-softmax.
PerplexityResult perplexity(model::Transformer& net, const std::vector<int64_t>& ids, int64_t max_tokens, int64_t window = 0);

}  // namespace fathom::infer
