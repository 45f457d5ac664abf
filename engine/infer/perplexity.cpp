// Perplexity on held-out text (see perplexity.h).
#include "engine/infer/perplexity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace fathom::infer {

PerplexityResult perplexity(model::Transformer& net, const std::vector<int64_t>& ids, int64_t max_tokens, int64_t window) {
  torch::NoGradGuard ng;
  net->eval();
  const auto device = net->model->embed_tokens->weight.device();
  if (window <= 0) window = net->args().max_seq_len;
  window = std::min<int64_t>(window, net->args().max_seq_len);
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(ids.size()), max_tokens + 1);
  if (n < 2) throw std::invalid_argument("perplexity needs at least 2 tokens of text");
  double nll = 0;
  int64_t count = 0;
  for (int64_t start = 0; start + 1 < n; start += window) {
    const int64_t len = std::min(window + 1, n - start);
    if (len < 2) break;
    auto chunk = torch::tensor(std::vector<int64_t>(ids.begin() + start, ids.begin() + start + len), torch::kInt64).to(device);
    auto logits = net->forward(chunk.narrow(0, 0, len - 1).unsqueeze(0)).squeeze(0).to(torch::kFloat32);
    auto lp = torch::log_softmax(logits, -1).gather(1, chunk.narrow(0, 1, len - 1).unsqueeze(1));
    nll -= lp.sum().item<double>();
    count += len - 1;
  }
  PerplexityResult r;
  r.tokens = count;
  r.mean_nll = nll / static_cast<double>(count);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace fathom::infer
