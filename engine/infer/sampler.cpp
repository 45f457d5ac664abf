// Next-token sampling (see sampler.h).
#include "engine/infer/sampler.h"

#include <cmath>
#include <map>
#include <sstream>

namespace fathom::infer {

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {}

torch::Tensor Sampler::distribution(const torch::Tensor& logits_in, const std::vector<int64_t>& history) const {
  auto logits = logits_in.detach().to(torch::kCPU, torch::kFloat32).contiguous().clone();
  float* l = logits.data_ptr<float>();
  const int64_t V = logits.size(0);
  if (p_.repetition_penalty != 1.0 || p_.presence_penalty != 0.0 || p_.frequency_penalty != 0.0) {
    std::map<int64_t, int64_t> counts;
    for (auto t : history)
      if (t >= 0 && t < V) ++counts[t];
    for (const auto& [t, c] : counts) {
      if (p_.repetition_penalty != 1.0)
        l[t] = l[t] > 0 ? static_cast<float>(l[t] / p_.repetition_penalty) : static_cast<float>(l[t] * p_.repetition_penalty);
      l[t] -= static_cast<float>(p_.presence_penalty + p_.frequency_penalty * static_cast<double>(c));
    }
  }
  if (p_.temperature == 0.0) {
    auto probs = torch::zeros({V});
    probs[logits.argmax().item<int64_t>()] = 1.0;
    return probs;
  }
  auto probs = torch::softmax(logits / p_.temperature, 0);
  if (p_.top_k > 0 && p_.top_k < V) {
    auto kth = std::get<0>(probs.topk(p_.top_k)).min();
    probs = probs.masked_fill(probs < kth, 0.0);
  }
  if (p_.top_p < 1.0) {
    auto [sorted, idx] = probs.sort(0, /*descending=*/true);
    auto cum = sorted.cumsum(0);
    // Keep the smallest prefix whose mass reaches top_p (the token that crosses it included).
    auto drop_sorted = (cum - sorted) >= p_.top_p;
    probs = probs.scatter(0, idx, sorted.masked_fill(drop_sorted, 0.0));
  }
  if (p_.min_p > 0.0) probs = probs.masked_fill(probs < probs.max() * p_.min_p, 0.0);
  return probs / probs.sum();
}

Choice Sampler::sample(const torch::Tensor& logits, const std::vector<int64_t>& history) {
  auto probs = distribution(logits, history);
  const float* p = probs.data_ptr<float>();
  const int64_t V = probs.size(0);
  Choice c;
  if (p_.temperature == 0.0) {
    c.token = probs.argmax().item<int64_t>();
  } else {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const double r = u(rng_);
    double acc = 0;
    c.token = -1;
    int64_t last_nonzero = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (p[v] <= 0) continue;
      last_nonzero = v;
      acc += p[v];
      if (r < acc) {
        c.token = v;
        break;
      }
    }
    if (c.token < 0) c.token = last_nonzero;  // rounding: the mass summed to just under r
  }
  c.logprob = std::log(std::max(1e-45, static_cast<double>(p[c.token])));
  if (p_.logprobs > 0) {
    auto [vals, idx] = probs.topk(std::min<int64_t>(p_.logprobs, V));
    for (int64_t i = 0; i < vals.size(0); ++i)
      c.top.emplace_back(idx[i].item<int64_t>(), std::log(std::max(1e-45, static_cast<double>(vals[i].item<float>()))));
  }
  return c;
}

}  // namespace fathom::infer
