// What a request asks of the sampler (see sampler.h). Torch-free: the serve request parser
// (engine/serve/request.h) fills it and is fuzzed without LibTorch.
#pragma once
#include <cstdint>
#include <optional>
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

}  // namespace fathom::infer
