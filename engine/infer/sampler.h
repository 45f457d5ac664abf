// Next-token sampling: penalties, temperature, top-k, top-p (nucleus), min-p, a seeded RNG.
// Order (as Hugging Face's logits processors apply them): repetition penalty (CTRL, Keskar et al.
// 2019: positive logits of seen tokens divided, negative multiplied), OpenAI presence/frequency
// penalties (logit -= presence·[count > 0] + frequency·count), temperature, then the filters on the
// probabilities — top-k, top-p, min-p (keep p ≥ min_p · p_max) — renormalised, and one draw.
// temperature 0 is greedy (argmax after the penalties).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fathom::infer {

struct SamplingParams {
  double temperature = 1.0;
  int64_t top_k = 0;       // 0 = off
  double top_p = 1.0;      // 1 = off
  double min_p = 0.0;      // 0 = off
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::optional<uint64_t> seed;  // none = from std::random_device
  int64_t max_tokens = 128;
  std::vector<std::string> stop;         // stop strings (not included in the output)
  std::vector<int64_t> stop_token_ids;   // besides the tokenizer's end-of-text
  bool ignore_eos = false;               // keep going past the tokenizer's end-of-text (vLLM's ignore_eos; benchmarks)
  int logprobs = 0;                      // report this many top alternatives per token (0 = only the chosen)

  // Empty when valid; else what is wrong and the allowed range (for a 400 error or a CLI message).
  std::string validate() const;
};

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
