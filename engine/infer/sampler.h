// Next-token sampling: penalties, temperature, top-k, top-p (nucleus), min-p, a seeded RNG.
// Order (as Hugging Face's logits processors apply them): repetition penalty (CTRL, Keskar et al.
// 2019: positive logits of seen tokens divided, negative multiplied), OpenAI presence/frequency
// penalties (logit -= presence·[count > 0] + frequency·count), temperature, then the filters on the
// probabilities — top-k, top-p, min-p (keep p ≥ min_p · p_max) — renormalised, and one draw.
// temperature 0 is greedy (argmax after the penalties).
#pragma once
#include <torch/torch.h>

#include "engine/infer/sampling_params.h"

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fathom::infer {

struct Choice {
  int64_t token = 0;
  double logprob = 0;  // log-probability of the token under the final (filtered) distribution
  std::vector<std::pair<int64_t, double>> top;  // top alternatives (token, logprob), when asked
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: (V) any float dtype/device; history: prompt + generated ids (for the penalties).
  Choice sample(const torch::Tensor& logits, const std::vector<int64_t>& history);
  // The filtered distribution before the draw (V, fp32, CPU): for tests and logprobs.
  torch::Tensor distribution(const torch::Tensor& logits, const std::vector<int64_t>& history) const;

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace fathom::infer
